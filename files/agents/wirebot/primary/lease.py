"""The primary's serving lease (docs/fencing.md): kept alive by the standby, enforced by the kernel.

The host firewall (table ``inet wirebot``) passes the primary's serving traffic - the tunnel, the public
inbound ports, whatever the serving users send - only while the set ``lease`` holds an element. Each
heartbeat or lease beat the standby acknowledges with ``"lease": {"granted": true}`` renews it: the element is
replaced (one nft transaction) with a timeout of ``seconds - (now - sent)``, counted from when the
heartbeat was SENT, so the lease ends no later than ``seconds`` after the standby received it. The
kernel removes the element when the timeout runs out, whether or not this process still runs (frozen,
paused, cut off). The standby never grants while it is ACTIVATING or ACTIVE and only detects after
``interval * miss_threshold`` > ``seconds``: when it acts, the primary's kernel has already stopped
serving.

Self-demotion (this process, when it runs):

* a heartbeat answer shows the standby ACTIVATING/ACTIVE or at a newer epoch: the full fence at once
  (wirebot.hosttools.fence_command.fence_units: fence record, lease revoked, units stopped and masked);
* the lease lapsed (no grant for ``seconds``): the kernel already drops the serving traffic; logged and
  alerted. Lapsed for another ``seconds``: the units are stopped (not masked); they are started again on
  the next grant unless a fence record exists. A short freeze or a restart does not bounce them.

Config (section ``fencing:`` of replicator.yml): ``lease_enabled`` (bool, default false; the deploy
sets it from fencing_lease_enabled),
``lease_seconds`` (number, required when enabled), ``lease_renew_seconds`` (number, default 2: a lease
beat this often between heartbeats, wirebot.primary.heartbeat), ``units`` (list: connector first),
``fenced_file`` (default /var/lib/wirebot/fenced.json), ``nft`` (default nft), ``systemctl``
(default /bin/systemctl), ``ready_url`` (the connector's readiness URL, cloudflared's /ready: the
heartbeat's ``serving``). Needs CAP_NET_ADMIN (nft) and the right to stop/mask/start the units.
"""

import os
import subprocess
import threading
import time
import urllib.error
import urllib.request

from wirebot.common import config, layout
from wirebot.common.log import log
from wirebot.hosttools import fence_command

COMPONENT = "lease"
SERVING = layout.SERVING_STATES


def load_settings(cfg, path):
    enabled = config.get(cfg, "fencing.lease_enabled", bool, path, default=False)
    return {
        "enabled": enabled,
        "seconds": config.get(cfg, "fencing.lease_seconds", float, path,
                              default=config.REQUIRED if enabled else 0.0),
        "renew_seconds": config.get(cfg, "fencing.lease_renew_seconds", float, path, default=2.0),
        "units": config.get(cfg, "fencing.units", list, path, default=list(fence_command.DEFAULT_UNITS)),
        "fenced_file": config.get(cfg, "fencing.fenced_file", str, path, default=layout.fenced_file()),
        "nft": config.get(cfg, "fencing.nft", str, path, default="nft"),
        "systemctl": config.get(cfg, "fencing.systemctl", str, path, default="/bin/systemctl"),
        "ready_url": config.get(cfg, "fencing.ready_url", str, path, default=None),
    }


def _nft(nft, script):
    try:
        proc = subprocess.run([nft, "-f", "-"], input=script, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    return proc.returncode == 0, proc.stderr.strip()[:300]


class Keeper:
    """Renews the lease on granted heartbeats and demotes this primary; the heartbeat thread calls it."""

    def __init__(self, settings, epoch_of, alerter=None, clock=time.monotonic, nft=_nft, fence=None):
        self.s = settings
        self.epoch_of = epoch_of  # () -> our epoch
        self.alerter = alerter
        self.clock = clock
        self.nft = nft
        # the lease is gone when this runs: a connector draining towards the edge cannot reach it anyway
        self.fence = fence or (lambda reason: fence_command.fence_units(
            self.s["units"], self.s["fenced_file"], self.s["systemctl"], self.s["nft"], "self", reason,
            stop_seconds=2.0))
        self.expires_at = None  # monotonic
        self.enforced = False
        self.state = "none"  # none | held | lapsed | stopped (units stopped after a long lapse) | demoted
        self.last_error = None
        self._lock = threading.Lock()

    def payload(self):
        """What the heartbeat tells the standby: the lease, and whether this primary serves."""
        return {"lease": {"enforced": bool(self.s["enabled"] and self.enforced),
                          "seconds": self.s["seconds"] if self.s["enabled"] else 0},
                "serving": self.serving()}

    def serving(self):
        """True: the connector is ready at the edge; False: it runs but cannot reach the edge (this
        primary is cut from the edge: the standby may take over); None: not meant to serve now (stopped,
        fenced, lapsed) or no ready_url configured."""
        units = self.s["units"]
        if not self.s.get("ready_url") or not units or os.path.exists(self.s["fenced_file"]):
            return None
        try:
            state = subprocess.run([self.s["systemctl"], "is-active", units[0]], capture_output=True, text=True,
                                   timeout=5).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return None
        if state != "active":
            return None
        try:
            with urllib.request.urlopen(self.s["ready_url"], timeout=1.0) as response:
                return 200 <= response.status < 300
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def check_table(self):
        """Is the lease set there (the firewall loaded)? Sets ``enforced``."""
        if not self.s["enabled"]:
            return False
        ok, error = self.nft(self.s["nft"], "list set inet wirebot lease\n")
        self.enforced, self.last_error = ok, (None if ok else error)
        return ok

    def renew(self, sent_at):
        remaining = self.s["seconds"] - (self.clock() - sent_at)
        if remaining <= 0.05:
            return False
        ms = int(remaining * 1000)
        script = ("add element inet wirebot lease { ipv4, ipv6 }\n"
                  "delete element inet wirebot lease { ipv4, ipv6 }\n"
                  f"add element inet wirebot lease {{ ipv4 timeout {ms}ms, ipv6 timeout {ms}ms }}\n")
        ok, error = self.nft(self.s["nft"], script)
        self.enforced, self.last_error = ok, (None if ok else error)
        if ok:
            self.expires_at = sent_at + self.s["seconds"]
        else:
            log(COMPONENT, "renew-failed", level="error", error=error)
        return ok

    def on_answer(self, result, sent_at):
        """After each heartbeat: demote, renew, or nothing (a failed send lets the lease run out)."""
        if not result.get("ok"):
            return
        answer = result.get("response") or {}
        theirs, ours = answer.get("epoch"), self.epoch_of()
        with self._lock:
            if answer.get("state") in SERVING or (isinstance(theirs, int) and theirs > ours):
                self._demote(f"the standby is {answer.get('state')} at epoch {theirs} (ours {ours})")
                return
            if not self.s["enabled"] or not (answer.get("lease") or {}).get("granted"):
                return
            if self.renew(sent_at):
                if self.state in ("stopped", "demoted") and not os.path.exists(self.s["fenced_file"]):
                    self._start_units()
                if self.state != "held":
                    log(COMPONENT, "held", seconds=self.s["seconds"], previous=self.state)
                self.state = "held"

    def tick(self):
        """Called about once a second. The kernel already drops the serving traffic when the lease runs
        out; this notes the lapse (log, alert) and, once it has lasted another lease length without a
        grant (the standby may be taking over by then), stops the serving units without waiting. A
        short freeze or a restart of this process does not bounce the units."""
        with self._lock:
            if self.expires_at is None or self.clock() < self.expires_at:
                return
            if self.state == "held":
                self.state = "lapsed"
                log(COMPONENT, "lapsed", level="warning",
                    reason="no heartbeat acknowledged by the standby for the lease's length: the kernel drops "
                           "serving traffic")
                self._alert("lease-lapsed", "the primary's serving lease lapsed: its kernel stopped its serving "
                                            "traffic")
                return
            if self.state != "lapsed" or self.clock() < self.expires_at + self.s["seconds"]:
                return
            self.state = "stopped"
        log(COMPONENT, "units-stopped", units=self.s["units"], reason="the lease stayed lapsed")
        for unit in self.s["units"]:
            subprocess.run([self.s["systemctl"], "stop", unit, "--no-block"], capture_output=True, timeout=60,
                           check=False)

    def _alert(self, kind, message):
        """Alerts go out from their own thread: a webhook behind a lapsed lease must not hold the beat."""
        if self.alerter:
            threading.Thread(target=self.alerter.send, args=(kind, message), daemon=True).start()

    def _demote(self, why):
        if self.state == "demoted" and os.path.exists(self.s["fenced_file"]):
            return
        code, reply = self.fence("self-demotion: " + why)
        self.state = "demoted"
        self.expires_at = None
        log(COMPONENT, "demoted", level="warning", reason=why, fenced=reply.get("fenced"),
            problems=reply.get("problems"), errors=reply.get("errors"))
        self._alert("self-demoted", f"the primary fenced itself: {why}")

    def _start_units(self):
        for unit in reversed(self.s["units"]):  # the connector (first) last
            subprocess.run([self.s["systemctl"], "start", unit, "--no-block"], capture_output=True,
                           timeout=60, check=False)
        log(COMPONENT, "units-started", units=self.s["units"], reason="lease granted again")

    def status(self):
        left = None if self.expires_at is None else round(self.expires_at - self.clock(), 3)
        return {"state": self.state, "enforced": self.enforced, "seconds": self.s["seconds"],
                "remaining_seconds": left, "error": self.last_error}

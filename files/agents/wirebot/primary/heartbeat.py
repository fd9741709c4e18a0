"""Signed heartbeats from the primary to the standby agent.

Every ``heartbeat.interval_seconds`` the primary POSTs to ``{standby.agent_url}/heartbeat`` (mutual TLS):
``{"node", "sent_at", "sequence", "epoch", "services": {unit: systemctl is-active state},
"litestream": {db: lag record}, "file_sync": {path: lag record}}``, signed (wirebot.common.signing) with the
heartbeat key for "heartbeat primary -> standby, POST /heartbeat".
The sequence comes from ``signing.next_sequence`` over the last one persisted in the primary's state
file ({"epoch", "sequence"}), so it keeps increasing across restarts; the epoch is read from the same
file on every beat (the recovery task may raise it).

Lease beats: with the serving lease enabled (wirebot.primary.lease), the same thread sends a small beat every
``fencing.lease_renew_seconds`` between the full heartbeats: ``{"node", "sent_at", "sequence", "epoch",
"kind": "lease", "lease", "serving"}``, signed and sent exactly like a heartbeat (same path, key and
sequence, one sender so sequences never cross), answered with the lease grant. The full heartbeat (status
for replication) stays every ``interval_seconds``; the lease no longer depends on it (docs/fencing.md).
A failed send is logged with its reason and
counted; it never stops the loop.
"""

import subprocess
import threading
import time

from wirebot.common import httpapi, layout, signing, statefile
from wirebot.common.log import log

COMPONENT = "heartbeat"
DEFAULT_STATE = {"epoch": 1, "sequence": 0}


class StateStore:
    """The primary's state file, shared by threads: load-modify-save under one lock."""

    def __init__(self, path):
        self.path = path
        self._lock = threading.Lock()

    def read(self):
        with self._lock:
            return statefile.load(self.path, DEFAULT_STATE)

    def update(self, **changes):
        """Apply ``changes`` to the file's current content and save it; return the new content."""
        with self._lock:
            data = statefile.load(self.path, DEFAULT_STATE)
            data.update(changes)
            statefile.save(self.path, data)
            return data

    def raise_epoch(self, epoch):
        """Raise the persisted epoch to ``epoch`` (never lower it); return (epoch before, epoch after)."""
        with self._lock:
            data = statefile.load(self.path, DEFAULT_STATE)
            before = int(data.get("epoch") or 1)
            if epoch > before:
                data["epoch"] = int(epoch)
                statefile.save(self.path, data)
            return before, max(before, int(epoch))

    def next_sequence(self, now=None):
        """Allocate and persist the next heartbeat sequence; return (sequence, epoch)."""
        with self._lock:
            data = statefile.load(self.path, DEFAULT_STATE)
            sequence = signing.next_sequence(int(data.get("sequence") or 0), now)
            data["sequence"] = sequence
            statefile.save(self.path, data)
            return sequence, int(data.get("epoch") or 1)


def unit_state(unit, systemctl="systemctl", timeout=5.0):
    """``systemctl is-active UNIT`` output ("active", "inactive", "failed", ...); "unknown" on error."""
    try:
        proc = subprocess.run([systemctl, "is-active", unit], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return proc.stdout.decode("utf-8", "replace").strip() or "unknown"


def unit_states(units, systemctl="systemctl", timeout=5.0):
    """{unit: ``systemctl is-active`` state} for all ``units`` with ONE systemctl call (it prints one line
    per unit, in order; a heartbeat every second must not fork a systemctl per unit); "unknown" on error."""
    units = list(units)
    if not units:
        return {}
    try:
        proc = subprocess.run([systemctl, "is-active"] + units, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, timeout=timeout, check=False)
        lines = proc.stdout.decode("utf-8", "replace").splitlines()
    except (OSError, subprocess.TimeoutExpired):
        lines = []
    if len(lines) != len(units):
        lines = ["unknown"] * len(units)
    return {unit: line.strip() or "unknown" for unit, line in zip(units, lines)}


def service_states(units, probe=None, systemctl="systemctl"):
    """{unit: state} for each configured unit: ``probe(unit)`` when given (tests), else unit_states."""
    if probe is None:
        return unit_states(units, systemctl)
    return {unit: probe(unit) for unit in units}


def build_payload(node, sequence, epoch, services, litestream, file_sync, now):
    """The heartbeat body (pure)."""
    return {
        "node": node,
        "sent_at": round(float(now), 3),
        "sequence": int(sequence),
        "epoch": int(epoch),
        "services": dict(services),
        "litestream": {db: {k: rec.get(k) for k in ("txid", "replicated_txid", "lag_txids",
                                                    "lag_seconds", "last_sync_at", "stalled", "error")}
                       for db, rec in litestream.items()},
        "file_sync": {path: {k: rec.get(k) for k in ("lag_seconds", "last_success_at",
                                                     "consecutive_failures", "last_error")}
                      for path, rec in file_sync.items()},
    }


class Sender:
    """Builds and sends heartbeats to ``target`` (an httpapi.Target, or the replicator's httpapi.Session:
    one kept-alive connection, a beat is one round trip); ``collect()`` returns (services, litestream,
    file_sync); ``binding`` is the heartbeat's signing.Binding."""

    PATH = "/heartbeat"

    def __init__(self, node, target, key, binding, store, collect, timeout=10.0, post=httpapi.post_signed):
        self.node = node
        self.target = target
        self.url = f"{target}{self.PATH}"
        self.key = key
        self.binding = binding
        self.store = store
        self.collect = collect
        self.timeout = timeout
        self.post = post
        self.sent_total = 0
        self.failures_total = 0
        self.consecutive_failures = 0
        self.last = None   # {"sent_at", "sequence", "epoch", "ok", "status", "reason", "response"}
        self._standby_ahead = None  # (standby state, standby epoch, our epoch) last warned about
        self.lease = None  # wirebot.primary.lease.Keeper: adds "lease" to each beat, hears each answer
        self._lock = threading.Lock()

    def send_once(self, now=None, light=False, timeout=None):
        """Send one heartbeat (``light``: a lease beat, no status); return the result record (also kept in
        ``last``)."""
        now = time.time() if now is None else now
        if light:
            sequence, epoch = self.store.next_sequence(now)
            payload = {"node": self.node, "sent_at": round(float(now), 3), "sequence": int(sequence),
                       "epoch": int(epoch), "kind": "lease"}
        else:
            services, litestream, file_sync = self.collect()
            sequence, epoch = self.store.next_sequence(now)
            payload = build_payload(self.node, sequence, epoch, services, litestream, file_sync, now)
        if self.lease is not None:
            payload.update(self.lease.payload())
        sent_at = time.monotonic()  # the lease counts from the send: it ends before the standby's view of it
        status, answer = self.post(self.target, self.PATH, self.key, self.binding, payload, sequence,
                                   timeout or self.timeout)
        ok = 200 <= status < 300
        reason = "accepted" if ok else (
            "unreachable: {}".format(answer.get("error")) if status == 0
            else "HTTP {}: {}".format(status, answer.get("error", answer)))
        result = {"sent_at": payload["sent_at"], "sequence": sequence, "epoch": epoch, "ok": ok,
                  "status": status, "reason": reason, "response": answer}
        with self._lock:
            if ok:
                self.sent_total += 1
                self.consecutive_failures = 0
            else:
                self.failures_total += 1
                self.consecutive_failures += 1
            self.last = result
        if ok:
            if not light:
                log(COMPONENT, "sent", sequence=sequence, epoch=epoch, status=status)
            self._note_standby(answer, epoch)
        if self.lease is not None:
            self.lease.on_answer(result, sent_at)
        if not ok:
            log(COMPONENT, "send-failed", level="warning", sequence=sequence, epoch=epoch,
                status=status, reason=reason, consecutive_failures=self.consecutive_failures)
        return result

    def _note_standby(self, answer, epoch):
        """Warn once when the standby starts serving or holds a newer epoch; note once when that ends."""
        theirs = answer.get("epoch")
        ahead = layout.serving(answer.get("state")) or (isinstance(theirs, int) and theirs > epoch)
        seen = (answer.get("state"), theirs, epoch) if ahead else None
        if seen == self._standby_ahead:
            return
        self._standby_ahead = seen
        if ahead:
            log(COMPONENT, "standby-ahead", level="warning", standby_state=answer.get("state"),
                standby_epoch=theirs, epoch=epoch,
                reason="the standby serves or holds a newer epoch: this primary must stay fenced")
        else:
            log(COMPONENT, "standby-caught-up", standby_state=answer.get("state"), standby_epoch=theirs,
                epoch=epoch)

    def status(self):
        """Counters and the last result; ``connections_opened``: connections the kept-alive session has opened
        (None for a plain Target): a count that climbs with the beats means each beat pays a handshake."""
        with self._lock:
            return {"url": self.url, "sent_total": self.sent_total, "failures_total": self.failures_total,
                    "consecutive_failures": self.consecutive_failures, "last": self.last,
                    "connections_opened": getattr(self.target, "opened_total", None)}

    def run(self, stop, interval, renew=None):
        """Send a heartbeat every ``interval`` seconds until ``stop`` (threading.Event) is set, and, when
        ``renew`` is shorter, a lease beat every ``renew`` seconds between them. With lease beats, every beat
        - the full heartbeat too - waits at most max(1, 2 x renew) for its answer: a late grant is worth
        nothing, and the thread sends nothing else meanwhile (soak, lab 5, a starved primary behind 100 ms
        of latency: one full heartbeat hung 10 s in its TLS handshake, the default timeout, and the lease -
        2 s - lapsed for 10 s; the next beat would have gone out a second later)."""
        period = renew if renew and renew < interval else interval
        bounded = max(1.0, 2 * period) if renew and renew < interval else None
        full_at = 0.0
        while not stop.is_set():
            started = time.monotonic()
            light = started < full_at
            if not light:
                full_at = started + interval - period / 2  # the full beat falls on the period's grid
            try:
                self.send_once(light=light, timeout=bounded)
            except Exception as exc:  # noqa: BLE001 - a heartbeat failure is never fatal
                with self._lock:
                    self.failures_total += 1
                    self.consecutive_failures += 1
                log(COMPONENT, "send-failed", level="error", reason=f"{type(exc).__name__}: {exc}")
            stop.wait(max(0.0, period - (time.monotonic() - started)))

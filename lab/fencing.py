"""Fencing scenarios on the lab, measured from the edge's own history (test equipment: issue 10).

Each scenario runs against a lab where the primary serves and the standby watches (the caller makes sure),
with a client sending one scoreboard write (POST /v1/events) every 1/RATE s through the edge. What is
reported comes from the edge's request log and its two-origin windows (``/lab/requests``,
``/lab/overlaps``), the standby's ACTIVE time from its agent, and the old primary's own database:

* ``overlap_s`` - seconds during which the edge had connectors from two origins (two-origin windows);
* ``old_acks`` - requests the edge got a 2xx for from the old primary after the standby's ACTIVE;
* ``old_writes`` - events first sent after the standby's ACTIVE that are committed in the old primary's
  database (acknowledged or not: a write only the old side has);
* ``outage_s`` - the longest stretch without a 2xx at the edge (client-visible);
* ``activated`` - whether the standby went ACTIVE; ``active_after_s`` - from the fault to ACTIVE;
  ``detection_s`` - from the fault to ACTIVATING; ``activation_s`` - ACTIVATING until the standby can serve
  (its tunnel ready, which comes after ACTIVE).

The scenarios' durations and waits are derived from the timings the lab runs with (``Timings``, read from
the deployed agents' configuration), so they hold at the lab's 1 s x 3 and at the defaults' 30 s x 3 alike.
"""

import os
import threading
import time
import uuid
from dataclasses import dataclass

import yaml

from lab import agents, client, commands, freezer, machines, network, settings
from lab.group_data import group_settings
from tasks.core.wait import WaitTimeout, wait_for

RATE = 10.0  # client writes per second
# How long a scenario waits for the standby's ACTIVE beyond detection (Timings.active_timeout): an activation
# that starts the real OpenClaw gateway and waits for its /readyz (10-30 s on a loaded 2-core lab), with room;
# 120 s in all at the lab's timings.
ACTIVATION_ROOM = 117.0
PRIMARY = settings.address("primary")


def _http(url, method="GET", body=None, headers=None, timeout=5.0):
    status, answer = client.request(url, method, body, headers, timeout)
    return status, (answer if status else None)


def edge(path):
    """The edge's answer to GET `path` on its control port, or None when it does not answer."""
    status, answer = client.edge(path)
    return answer if status else None


def standby_status():
    """The standby agent's /status over its local control socket (as the operator reads it), or {}."""
    return agents.standby_status(timeout=3) or {}


class Load:
    """Scoreboard writes through the edge at RATE per second: [(sent_at, id, status)] in ``sent``.

    Open loop, as the public is (many clients): a write starts every 1/RATE s whatever the earlier ones do,
    each in its own thread with a 3 s timeout. A closed loop (the next write after the previous answer)
    measured itself after a crash: one write the edge sent to the dead origin hung for its whole timeout
    (the kernel resolving the dead address), no write went out meanwhile, and the first 2xx from the
    standby came up to a second after its connector was serving (rto_bench, lab 5, 2026-12-02)."""

    TIMEOUT = 3.0

    def __init__(self):
        self.sent = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.writers = []

    def _write(self, started):
        event = {"id": str(uuid.uuid4()), "type": "intent", "payload": {"lab": "fencing"}}
        status, _ = _http(f"{settings.EDGE_PUBLIC_URL}/v1/events", "POST", event,
                          {"Host": "api.wirebot.chat"}, timeout=self.TIMEOUT)
        self.sent.append((started, event["id"], status))  # list.append is atomic

    def _run(self):
        due = time.time()
        while not self.stop.is_set():
            writer = threading.Thread(target=self._write, args=(time.time(),), daemon=True)
            writer.start()
            self.writers = [w for w in self.writers if w.is_alive()] + [writer]
            due += 1.0 / RATE
            self.stop.wait(max(0.0, due - time.time()))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        self.thread.join(timeout=10)
        deadline = time.monotonic() + self.TIMEOUT + 2
        for writer in list(self.writers):  # every write started has its answer (or its timeout) on record
            writer.join(timeout=max(0.0, deadline - time.monotonic()))


def wait_active(timeout):
    """The standby's ACTIVE time (unix seconds) once it is ACTIVE, or None after `timeout` seconds."""
    try:
        return wait_for(lambda: (s := standby_status()).get("state") == "ACTIVE" and s["since"], timeout,
                        interval=0.1, what="the standby ACTIVE")
    except WaitTimeout:
        return None


def primary_ids():
    result = machines.ssh("primary", "sqlite3 -readonly /data/wirebot/scoreboard/events.db 'select id from events'",
                          check=False, timeout=30)
    return set(result.stdout.split())


def measure(name, fault_at, active_at, load, since):
    """One row of the table for scenario `name`."""
    requests = edge(f"/lab/requests?since={since}") or []
    overlaps = edge(f"/lab/overlaps?since={since}") or []
    now = time.time()
    overlap = sum((o["end"] or now) - o["start"] for o in overlaps)
    ok_times = sorted(r["ts"] for r in requests if 200 <= r["status"] < 300)
    bounds = [since] + ok_times + [requests[-1]["ts"] if requests else now]
    outage = max((b - a for a, b in zip(bounds, bounds[1:])), default=0.0)
    old_acks = [r for r in requests if active_at and r["ts"] >= active_at and r["origin_ip"] == PRIMARY
                and 200 <= r["status"] < 300]
    late_ids = {event_id for sent, event_id, _ in load.sent if active_at and sent >= active_at}
    old_writes = late_ids & primary_ids() if late_ids else set()
    activation_s = detection_s = None
    if active_at:
        activation = standby_status().get("activation") or {}
        if activation.get("started_at"):
            # until the standby can serve: its tunnel ready (after ACTIVE, which is recorded before it starts)
            tunnel = (activation.get("steps") or {}).get("tunnel") or {}
            serving_at = (tunnel["started_at"] + tunnel["seconds"] if tunnel.get("status") == "done"
                          else active_at)
            activation_s = round(serving_at - activation["started_at"], 2)
            detection_s = round(activation["started_at"] - fault_at, 2)
    return {"scenario": name, "activated": active_at is not None, "activation_s": activation_s,
            "detection_s": detection_s,
            "active_after_s": round(active_at - fault_at, 2) if active_at else None,
            "overlap_s": round(overlap, 2), "overlaps": len(overlaps), "old_acks": len(old_acks),
            "old_writes": len(old_writes), "outage_s": round(outage, 2), "requests": len(requests)}


@dataclass(frozen=True)
class Timings:
    """The heartbeat and fencing timings a lab runs with (group_data keys heartbeat_interval_seconds,
    heartbeat_miss_threshold, fencing_lease_seconds, fencing_watch_seconds) and the scenario durations and
    waits that follow from them. At the lab's 1 s x 3, lease 2 s, watch 1 s every value is the one the
    scenarios always used (freeze 1.5 s and 2.6 s, waits of 120, 6, 120, 4 and 2 s)."""

    interval: float
    miss: int
    lease: float
    watch: float
    probe: float = 2.0  # edge_probe_interval_seconds
    failures: int = 3  # edge_probe_failures

    @property
    def detection(self) -> float:
        """The standby declares the primary missing after this many seconds without a heartbeat."""
        return self.interval * self.miss

    @property
    def edge_detection(self) -> float:
        """After a crash or freeze the edge drops the connector (settings.CONNECTOR_EXPIRY_SECONDS), then the
        public endpoint fails on `failures` probes: the edge detector's bound."""
        return settings.CONNECTOR_EXPIRY_SECONDS + self.failures * self.probe

    @property
    def short_freeze(self) -> float:
        """A freeze shorter than the lease and than either detector: nothing may happen."""
        return 0.75 * min(self.lease, self.edge_detection)

    @property
    def long_freeze(self) -> float:
        """A freeze longer than the lease: shorter than both detectors when they leave room (the lab's
        timings: the lease lapses, no failover); else 1.3 leases (the defaults: the edge detector takes over)."""
        bound = min(self.detection, self.edge_detection)
        return self.lease + 0.6 * (bound - self.lease) if bound > self.lease else 1.3 * self.lease

    def detection_bound(self, key: str) -> float:
        """The longest the standby should take from fault `key` to ACTIVATING (docs/fencing.md "Timing
        relations"), one probe interval of phase included; the lease ends at most L + 0.25 s after the last
        grant. Freeze: the edge drops the connector at E (a probe to a frozen origin is unknown until then),
        then k probes; the heartbeat detector at D waits for the edge's expiry too. Loss between the hosts: no
        grant, the connector loses the edge at L, is dropped at L + E. Cut from the edge: E + k probes, then
        the SSH fence or the lease, and the primary's own readiness lag (its beats say serving until its
        connector notices), which is not bounded here: None."""
        expiry = settings.CONNECTOR_EXPIRY_SECONDS
        if key.startswith("freeze"):
            detect = min(max(self.detection, expiry), expiry + self.failures * self.probe)
            return max(detect + self.probe, self.lease + 0.25)
        if key in ("drop-p2s", "drop-s2p", "cut-standby"):
            gone = self.lease + 0.25 + expiry
            return min(max(self.detection, gone), gone + self.failures * self.probe) + self.probe
        return None

    @property
    def active_timeout(self) -> float:
        """How long to wait for ACTIVE after a fault that should end in one (detection + fence + activation)."""
        return self.detection + ACTIVATION_ROOM

    @property
    def hold(self) -> float:
        """How long a network fault is held at most while waiting for ACTIVE."""
        return self.active_timeout

    @property
    def after_thaw(self) -> float:
        """Watching after a fault ends: a heartbeat (self-demotion) and three witness watches (fencing)."""
        return self.interval + 3 * self.watch

    @property
    def hold_after_active(self) -> float:
        """A network fault is kept this long after the standby's ACTIVE (two witness watches)."""
        return 2 * self.watch


def timings_from(values: dict) -> Timings:
    """Timings from settings keys (group_data names)."""
    return Timings(interval=float(values["heartbeat_interval_seconds"]), miss=int(values["heartbeat_miss_threshold"]),
                   lease=float(values["fencing_lease_seconds"]), watch=float(values["fencing_watch_seconds"]),
                   probe=float(values["edge_probe_interval_seconds"]), failures=int(values["edge_probe_failures"]))


def deployed_timings() -> Timings:
    """The timings in the deployed agents' configuration (standby.yml: heartbeat, watch; replicator.yml:
    lease), so the scenarios follow whatever the lab was deployed with."""
    def read(host, path):
        return yaml.safe_load(machines.ssh(host, f"cat {path}", timeout=30).stdout) or {}
    standby = read("standby", "/etc/wirebot/standby.yml")
    replicator = read("primary", "/etc/wirebot/replicator.yml")
    return timings_from({"heartbeat_interval_seconds": standby["heartbeat"]["interval_seconds"],
                         "heartbeat_miss_threshold": standby["heartbeat"]["miss_threshold"],
                         "fencing_lease_seconds": replicator["fencing"]["lease_seconds"],
                         "fencing_watch_seconds": standby["fencing"]["watch_seconds"],
                         "edge_probe_interval_seconds": (standby.get("edge") or {}).get("probe_interval_seconds", 2.0),
                         "edge_probe_failures": (standby.get("edge") or {}).get("probe_failures", 3)})


def freeze_then_thaw(after_active, t: Timings):
    """Freeze the primary whole; thaw it `after_active` s after the standby's ACTIVE."""
    def run():
        fault = freezer.freeze("primary")
        active = wait_active(t.active_timeout)
        time.sleep(after_active)
        freezer.thaw("primary")
        time.sleep(t.after_thaw)
        return fault, active
    return f"freeze, thaw {after_active:g} s after ACTIVE", run


def freeze_for(seconds, name, t: Timings):
    """Freeze the primary for `seconds`, thaw, watch two detection periods more."""
    def run():
        fault = freezer.freeze("primary")
        time.sleep(seconds)
        freezer.thaw("primary")
        active = wait_active(2 * t.detection)
        return fault, active
    return name, run


def partition(name, apply, undo, t: Timings):
    """Apply a network fault; hold it until the standby is ACTIVE (or t.hold s) and t.hold_after_active
    more; undo; watch t.after_thaw s more."""
    def run():
        fault = time.time()
        apply()
        try:
            active = wait_active(t.hold)
            time.sleep(t.hold_after_active)
        finally:
            undo()
        time.sleep(t.after_thaw)
        return fault, active
    return name, run


def _link(name, apply, undo, a, b):
    return lambda t: partition(name, lambda: apply(a, b), lambda: undo(a, b), t)


SCENARIOS = {
    "freeze-0.5": lambda t: freeze_then_thaw(0.5, t),
    "freeze-5": lambda t: freeze_then_thaw(5.0, t),
    "freeze-short": lambda t: freeze_for(t.short_freeze, f"freeze {t.short_freeze:g} s (< lease < detection)", t),
    "freeze-long": lambda t: freeze_for(
        t.long_freeze, f"freeze {t.long_freeze:g} s (> lease {t.lease:g} s)", t),
    "drop-p2s": _link("one-way loss primary -> standby", network.drop, network.undrop, "primary", "standby"),
    "drop-s2p": _link("one-way loss standby -> primary", network.drop, network.undrop, "standby", "primary"),
    "cut-edge": _link("primary cut from the edge only", network.cut, network.heal, "primary", "edge"),
    "cut-standby": _link("primary cut from the standby only", network.cut, network.heal, "primary", "standby"),
}


def run_scenario(key, timings: Timings = None):
    """Run scenario `key` with the client load at `timings` (default: the deployed ones); return its row
    (the lab is left as the fault left it)."""
    name, run = SCENARIOS[key](timings or deployed_timings())
    since = time.time()
    with Load() as load:
        time.sleep(1.0)  # a second of normal service first
        try:
            fault, active = run()
        finally:
            freezer.thaw("primary")
    return measure(name, fault, active, load, since)


# --- Shared by the benches (fencing, RTO, soak): the timings to deploy, settling, playbooks ---------

def wanted_timings(mode: str) -> Timings:
    """The timings `--timings mode` deploys: group_data/all.py's, with lab/inventory.py's LAB_TIMINGS on top
    for "lab" (the inventory is read under WIREBOT_LAB_TIMINGS=mode, as the deploy reads it)."""
    from lab import inventory  # checks the inventory (and the environment switch) on import
    values = group_settings("all")
    if mode == "lab":
        values.update(inventory.LAB_TIMINGS)
    return timings_from(values)


def deploy_timings(mode: str) -> Timings:
    """Make the lab run the `mode` timings ("lab" or "default"; WIREBOT_LAB_TIMINGS is set for this process
    and the playbooks it runs): deploy when the deployed agents run others; returns the deployed timings."""
    os.environ["WIREBOT_LAB_TIMINGS"] = mode
    wanted = wanted_timings(mode)
    if deployed_timings() != wanted:
        print(f"deploying the lab at the {mode} timings ({wanted})", flush=True)
        pyinfra("deploy.py")
    timings = deployed_timings()
    print(f"timings: {timings}; detection {timings.detection:g} s", flush=True)
    return timings


def primary_serves_alone(t: Timings) -> bool:
    status = standby_status()
    connectors = edge("/lab/connectors") or []
    return (status.get("state") == "STANDBY" and (status.get("last_heartbeat_age_seconds") or 1e9) < t.interval + 1
            and {c["origin_ip"] for c in connectors} == {settings.address("primary")})


def settle(t: Timings) -> None:
    """Wait for "primary serves, standby watches" (a fresh heartbeat), then one interval + 1 s more."""
    try:
        wait_for(lambda: primary_serves_alone(t), max(90.0, 3 * t.detection), interval=0.5,
                 what="'primary serves, standby watches'")
    except WaitTimeout as timed_out:
        raise SystemExit(f"{timed_out}: redeploy the lab first") from None
    time.sleep(t.interval + 1)


def pyinfra(playbook: str) -> float:
    """Run `playbook` on the lab (the environment carries WIREBOT_LAB_TIMINGS); the seconds it took."""
    started = time.monotonic()
    result = commands.pyinfra("lab/inventory.py", playbook, timeout=1200)
    if result.returncode != 0:
        raise SystemExit(f"{playbook} failed:\n" + (result.stdout + result.stderr)[-3000:])
    return time.monotonic() - started


def recover() -> float:
    """Put the primary back (tasks/recovery.py; boots a killed primary first); the seconds it took."""
    started = time.monotonic()
    machines.boot("primary")  # a no-op when it runs
    pyinfra("tasks/recovery.py")
    return time.monotonic() - started

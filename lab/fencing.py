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
  ``activation_s`` - ACTIVATING -> ACTIVE.
"""

import json
import subprocess
import threading
import time
import uuid

from lab import client, freezer, machines, network, settings

RATE = 10.0  # client writes per second
# How long a scenario waits for the standby's ACTIVE: detection (3 s at the lab's timings) plus an activation
# that starts the real OpenClaw gateway and waits for its /readyz (10-30 s on a loaded 2-core lab), with room.
ACTIVE_WAIT = 120.0
PRIMARY = settings.address("primary")


def _http(url, method="GET", body=None, headers=None, timeout=5.0):
    status, answer = client.request(url, method, body, headers, timeout)
    return status, (answer if status else None)


def edge(path):
    return _http(f"{settings.EDGE_URL}{path}")[1]


AGENT_SOCKET = "/run/wirebot-agent/control.sock"  # group_data agent_control_socket (root only, on the host)


def standby_status():
    """The standby agent's /status over its local control socket (as the operator reads it), or {}."""
    argv = ["ssh", "-F", str(settings.SSH_CONFIG), "-o", "ControlMaster=auto", "-o", "ControlPersist=60",
            "-o", f"ControlPath={settings.STATE_DIR}/cm-%C", "standby",
            f"curl -s -m 3 --unix-socket {AGENT_SOCKET} http://agent/status"]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        body = json.loads(result.stdout)
    except (subprocess.TimeoutExpired, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


class Load:
    """Scoreboard writes through the edge at RATE per second in a thread: [(sent_at, id, status)]."""

    def __init__(self):
        self.sent = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            started = time.time()
            event = {"id": str(uuid.uuid4()), "type": "intent", "payload": {"lab": "fencing"}}
            status, _ = _http(f"{settings.EDGE_PUBLIC_URL}/v1/events", "POST", event,
                              {"Host": "api.wirebot.chat"}, timeout=3)
            self.sent.append((started, event["id"], status))
            self.stop.wait(max(0.0, 1.0 / RATE - (time.time() - started)))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        self.thread.join(timeout=10)


def wait_active(timeout):
    """The standby's ACTIVE time (unix seconds) once it is ACTIVE, or None after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = standby_status()
        if status.get("state") == "ACTIVE":
            return status["since"]
        time.sleep(0.1)
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
    activation_s = None
    if active_at:
        activation = standby_status().get("activation") or {}
        if activation.get("started_at"):
            activation_s = round(active_at - activation["started_at"], 2)
    return {"scenario": name, "activated": active_at is not None, "activation_s": activation_s,
            "active_after_s": round(active_at - fault_at, 2) if active_at else None,
            "overlap_s": round(overlap, 2), "overlaps": len(overlaps), "old_acks": len(old_acks),
            "old_writes": len(old_writes), "outage_s": round(outage, 2), "requests": len(requests)}


def _settle(seconds):
    time.sleep(seconds)


def freeze_then_thaw(after_active, timeout=ACTIVE_WAIT):
    """Freeze the primary whole; thaw it `after_active` s after the standby's ACTIVE."""
    def run():
        fault = freezer.freeze("primary")
        active = wait_active(timeout)
        time.sleep(after_active)
        freezer.thaw("primary")
        _settle(4.0)
        return fault, active
    return f"freeze, thaw {after_active:g} s after ACTIVE", run


def freeze_for(seconds, name):
    """Freeze the primary for `seconds`, thaw, watch a detection period more."""
    def run():
        fault = freezer.freeze("primary")
        time.sleep(seconds)
        freezer.thaw("primary")
        active = wait_active(6.0)
        return fault, active
    return name, run


def partition(name, apply, undo, hold=ACTIVE_WAIT):
    """Apply a network fault; hold it until the standby is ACTIVE (or `hold` s); undo; watch 4 s more."""
    def run():
        fault = time.time()
        apply()
        try:
            active = wait_active(hold)
            time.sleep(2.0)
        finally:
            undo()
        _settle(4.0)
        return fault, active
    return name, run


SCENARIOS = {
    "freeze-0.5": lambda: freeze_then_thaw(0.5),
    "freeze-5": lambda: freeze_then_thaw(5.0),
    "freeze-short": lambda: freeze_for(1.5, "freeze 1.5 s (< lease < detection)"),
    "freeze-long": lambda: freeze_for(2.6, "freeze 2.6 s (> lease 2 s, < detection 3 s)"),
    "drop-p2s": lambda: partition("one-way loss primary -> standby", lambda: network.drop("primary", "standby"),
                                  lambda: network.undrop("primary", "standby")),
    "drop-s2p": lambda: partition("one-way loss standby -> primary", lambda: network.drop("standby", "primary"),
                                  lambda: network.undrop("standby", "primary")),
    "cut-edge": lambda: partition("primary cut from the edge only", lambda: network.cut("primary", "edge"),
                                  lambda: network.heal("primary", "edge")),
    "cut-standby": lambda: partition("primary cut from the standby only",
                                     lambda: network.cut("primary", "standby"),
                                     lambda: network.heal("primary", "standby")),
}


def run_scenario(key):
    """Run scenario `key` with the client load; return its row (the lab is left as the fault left it)."""
    name, run = SCENARIOS[key]()
    since = time.time()
    with Load() as load:
        time.sleep(1.0)  # a second of normal service first
        try:
            fault, active = run()
        finally:
            freezer.thaw("primary")
    return measure(name, fault, active, load, since)

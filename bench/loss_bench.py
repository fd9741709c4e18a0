"""Loss benchmark at scale on the lab: many surfaces through a failover and a recovery, then a set comparison.

``WIREBOT_LAB_ID=N .venv/bin/python bench/loss_bench.py [--surfaces 14] [--rate 15] [--settle 20]``
(root; the lab must be up and deployed: ``python -m lab up && pyinfra -y lab/inventory.py deploy.py``;
the bench resets it first when it is not clean, and leaves the primary serving).

``--surfaces`` synthetic local-first surfaces (tasks/drills/surface.py: UUID v4 events written to a
local SQLite store with their sync-queue row, POSTed in order to the public endpoint through the lab's
edge, retried with capped backoff until acknowledged) each create ``--rate`` events per second while

1. the primary serves (``--settle`` seconds),
2. ``tasks/failover.py`` runs (fence the primary, activate the standby), then the standby serves
   (``--settle`` seconds),
3. ``tasks/recovery.py`` runs (stop the standby, merge its writes into the primary, re-point the
   tunnel), then the primary serves again (``--settle`` seconds);

then they stop creating and drain. The primary's events table is then compared with the set of ids the
surfaces created (tasks/drills/report.verdict): lost, doubled, unexpected. Per surface it prints the
events created, lost and doubled, the longest time one event waited in its queue (created -> acked), how
long it was offline, and how long its queue took to drain after each outage (the first acknowledgement
after being offline -> the queue empty again). Aim: at least 10 surfaces and 10,000 events. Takes about
as long as the two playbooks plus 3 x settle plus the drain (2-4 minutes).
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from lab import settings
from lab.baseline import ensure_clean_lab
from lab.client import connector_origins
from lab.commands import pyinfra
from lab.machines import ssh
from tasks.core.wait import wait_for
from tasks.drills import report
from tasks.drills.surface import OFFLINE, ONLINE, SYNCING, Backoff, Hub, Surface

EVENTS_DB = "/data/wirebot/scoreboard/events.db"
HUB_HOSTNAME = "api.wirebot.chat"


def playbook(name):
    """Run tasks/<name>.py on the lab; (seconds, exit code). SystemExit on failure."""
    started = time.monotonic()
    result = pyinfra("lab/inventory.py", f"tasks/{name}.py")
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"loss_bench: {name} failed (exit {result.returncode}):\n"
                         f"{(result.stdout + result.stderr)[-3000:]}")
    print(f"  {name}: {seconds:.1f} s", flush=True)
    return seconds


def drains(transitions):
    """(offline seconds, [drain seconds per outage]) from a surface's indicator transitions: an outage
    runs from OFFLINE to the next acknowledgement (SYNCING or ONLINE); its drain from that
    acknowledgement to the next ONLINE (queue empty)."""
    offline, result, down_at, back_at = 0.0, [], None, None
    while transitions and transitions[0]["state"] == OFFLINE:  # "nothing acknowledged yet": no outage
        transitions = transitions[1:]
    for t in transitions:
        if t["state"] == OFFLINE and down_at is None and back_at is None:
            down_at = t["at"]
        elif t["state"] in (SYNCING, ONLINE) and down_at is not None:
            offline += t["at"] - down_at
            down_at, back_at = None, t["at"]
        if t["state"] == ONLINE and back_at is not None:
            result.append(t["at"] - back_at)
            back_at = None
    return offline, result


def waits(surface):
    """Longest and median created -> acknowledged time over the surface's events (seconds)."""
    with surface.lock:
        rows = [r[0] for r in surface.db.execute(
            "SELECT synced_at - created_at FROM events WHERE synced_at IS NOT NULL")]
    return (max(rows), statistics.median(rows)) if rows else (None, None)


def uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.split("load average: ")[-1].strip()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--surfaces", type=int, default=14, help="number of surfaces (default 14)")
    p.add_argument("--rate", type=float, default=15.0, help="events per second per surface (default 15; a "
                   "surface creates less while it drains a long queue: it posts in batches between events)")
    p.add_argument("--settle", type=float, default=20.0, help="seconds of writing before/between/after")
    p.add_argument("--drain-timeout", type=float, default=300.0, help="seconds to wait for the queues")
    a = p.parse_args()
    load = [uptime()]
    if ensure_clean_lab():
        print("lab reset to primary serving", flush=True)
    hub = Hub(settings.EDGE_PUBLIC_URL, HUB_HOSTNAME, timeout=3.0)
    event_type = f"loss-bench-{uuid.uuid4().hex[:12]}"  # this run's events (earlier runs' stay apart)
    primary, standby = settings.address("primary"), settings.address("standby")
    marks = {}
    with tempfile.TemporaryDirectory(prefix="loss-bench-") as tmp:
        surfaces = [Surface(f"{tmp}/surface-{i}.db", hub, tag=f"loss-bench-{i}", rate=a.rate,
                            backoff=Backoff(0.2, 2.0, 0.25), event_type=event_type) for i in range(a.surfaces)]
        try:
            marks["start"] = time.time()
            for s in surfaces:
                s.start()
            time.sleep(a.settle)
            marks["failover"] = time.time()
            t_failover = playbook("failover")
            wait_for(lambda: connector_origins() == {standby}, timeout=30, what="the standby's connector alone")
            time.sleep(a.settle)
            marks["recovery"] = time.time()
            t_recovery = playbook("recovery")
            wait_for(lambda: connector_origins() == {primary}, timeout=30, what="the primary's connector alone")
            time.sleep(a.settle)
            marks["stop"] = time.time()
            for s in surfaces:
                s.generating.clear()
            drained = all(s.wait_for(lambda x: x.queued() == 0, a.drain_timeout) for s in surfaces)
            marks["drained"] = time.time()
            for s in surfaces:
                s.stop()
            found = ssh("primary", f"sqlite3 -cmd '.timeout 10000' {EVENTS_DB} "
                        f"\"SELECT id FROM events WHERE type = '{event_type}'\"", timeout=120).stdout.split()
            rows, totals = [], {"created": 0, "lost": 0, "doubled": 0, "unexpected": 0}
            all_created = []
            for i, s in enumerate(surfaces):
                created = s.event_ids()
                all_created += created
                mine = set(created)
                v = report.verdict(created, [f for f in found if f in mine])
                offline, outage_drains = drains(s.transitions())
                longest, median = waits(s)
                rows.append((i, len(created), v["found"], v["lost"], v["doubled"], s.stats()["posts"], offline,
                             outage_drains, longest, median))
                for k in ("created", "lost", "doubled"):
                    totals[k] += v[k]
            overall = report.verdict(all_created, found)
        finally:
            for s in surfaces:
                s.close()
    load.append(uptime())
    span = marks["drained"] - marks["start"]
    print(f"\n{a.surfaces} surfaces x {a.rate:g} events/s, settle {a.settle:g} s; failover {t_failover:.1f} s, "
          f"recovery {t_recovery:.1f} s; start -> all drained {span:.1f} s (stop creating -> drained "
          f"{marks['drained'] - marks['stop']:.1f} s); load before {load[0]}, after {load[1]}")
    print("| surface | created | on primary | lost | doubled | POSTs | offline s | drain s per outage "
          "| longest wait s | median wait s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    for i, created, on, lost, doubled, posts, offline, outage_drains, longest, median in rows:
        print(f"| {i} | {created:,} | {on:,} | {lost} | {doubled} | {posts:,} | {offline:.1f} | "
              f"{' / '.join(f'{d:.1f}' for d in outage_drains) or '-'} | {longest:.1f} | {median:.2f} |")
    print(f"| all | {overall['created']:,} | {overall['found']:,} | {overall['lost']} | {overall['doubled']} | "
          f"| | | | |")
    print(f"\nset comparison: created {overall['created']:,}, found {overall['found']:,}, lost {overall['lost']}, "
          f"doubled {overall['doubled']}, unexpected {overall['unexpected']}, every queue drained: {drained}; "
          f"exactly once: {overall['exactly_once'] and drained}")
    return 0 if overall["exactly_once"] and drained else 1


if __name__ == "__main__":
    sys.exit(main())

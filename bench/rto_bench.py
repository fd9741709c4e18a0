"""RTO after a hard kill of the primary, measured client side from the lab edge's own request log (issue 14):
`WIREBOT_LAB_ID=N python bench/rto_bench.py [--timings lab|default] [--runs 6]` on a lab that is up.

Each run: wait for "primary serves, standby watches" (lab/fencing.py settle), send scoreboard writes through
the edge at 10/s (lab/fencing.py Load), SIGKILL the primary's whole container (lab/machines.py kill), and
wait for the first 2xx the edge relayed from the standby's origin. Then the primary is booted and the
recovery playbook puts it back (lab/fencing.py recover) for the next run.

RTO = kill -> the first public 2xx from the standby, from the edge's request log (its own timestamps). The
other columns come from the standby agent (its journal's state changes and GET /status): kill -> first
SUSPECT, kill -> ACTIVATING, ACTIVATING -> the recorded ACTIVE and the activation's steps, refusals (a
witness that still saw the dead connector: "refuse, then wait a threshold"), and the reason the standby gave
when it first suspected (which detector fired). --timings as in bench/fencing_bench.py (the lab is deployed
with them when it runs others).
"""

import argparse
import statistics
import sys
import time

from lab import fencing, machines, settings
from lab.agents import iso_ts, journal

STANDBY = settings.address("standby")
PRIMARY = settings.address("primary")


def ok(entry):
    return 200 <= entry["status"] < 300


def state_changes(since):
    """[(unix ts, state, reason, entry)] the standby agent logged since `since`."""
    return [(iso_ts(e["ts"]), e.get("state"), e.get("reason") or "", e)
            for e in journal("standby", "wirebot-standby", since) if e.get("event") == "state-change"]


def detector_of(reason, entry):
    """The detector that fired, from the reason the standby gave for its first SUSPECT: "heartbeat" (missed
    heartbeats), "edge" (the edge lost the primary: wirebot.standby.edgewatch), else the reason's start."""
    if entry.get("detector"):
        return str(entry["detector"])
    if reason.startswith(("no valid heartbeat", "no heartbeat showing the primary serving")):
        return "heartbeat"
    if reason.startswith("the edge lost the primary"):
        return "edge"
    return reason if len(reason) <= 50 else reason[:47] + "..."


def one_run(t: fencing.Timings):
    """Kill the primary under load; the run's row (the lab is left with the standby serving)."""
    fencing.settle(t)
    since = time.time()
    with fencing.Load():
        time.sleep(1.0)  # a second of normal service first
        killed = time.time()
        machines.kill("primary")
        deadline = time.monotonic() + t.active_timeout
        first = None
        while first is None and time.monotonic() < deadline:
            time.sleep(0.2)
            first = next((r for r in fencing.edge(f"/lab/requests?since={killed}") or []
                          if r["origin_ip"] == STANDBY and ok(r)), None)
        time.sleep(0.5)
    requests = fencing.edge(f"/lab/requests?since={since}") or []
    last_primary = max((r["ts"] for r in requests if r["origin_ip"] == PRIMARY and ok(r)), default=None)
    changes = state_changes(killed)
    suspect = next(((ts, reason, e) for ts, state, reason, e in changes if state == "SUSPECT"), None)
    activating = next((ts for ts, state, _, _ in changes if state == "ACTIVATING"), None)
    refusals = sum(1 for _, state, reason, _ in changes if state == "STANDBY" and reason.startswith("not activating"))
    status = fencing.standby_status()
    act = status.get("activation") or {}
    steps = {name: step.get("seconds") for name, step in (act.get("steps") or {}).items()}
    # ACTIVE: when the agent recorded it (it may come before the activation's last steps complete)
    active_at = status.get("since") if status.get("state") == "ACTIVE" else act.get("completed_at")
    return {
        "rto_s": round(first["ts"] - killed, 2) if first else None,
        "last_primary_ok_s": round(last_primary - killed, 2) if last_primary else None,
        "suspect_s": round(suspect[0] - killed, 2) if suspect else None,
        "activating_s": round(activating - killed, 2) if activating else None,
        "activation_s": round(active_at - act["started_at"], 2) if active_at and act.get("started_at") else None,
        "active_to_200_s": round(first["ts"] - active_at, 2) if first and active_at else None,
        "refusals": refusals, "detector": detector_of(suspect[1], suspect[2]) if suspect else "-",
        "steps": steps, "state": status.get("state"),
    }


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join("-" if c is None else str(c) for c in row) + " |" for row in rows])


def main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timings", choices=("lab", "default"), default="lab",
                        help="lab: 1 s x 3, lease 2 s; default: group_data's 30 s x 3, lease 60 s")
    parser.add_argument("--runs", type=int, default=6, help="kills to measure (default %(default)s)")
    parser.add_argument("--no-final-recovery", action="store_true",
                        help="leave the standby serving after the last run (recover later with tasks/recovery.py)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    timings = fencing.deploy_timings(args.timings)
    rows = []
    for index in range(args.runs):
        row = one_run(timings)
        last = index == args.runs - 1
        row["recovery_s"] = None if last and args.no_final_recovery else round(fencing.recover(), 1)
        rows.append(row)
        print(f"run {index + 1}: {row}", flush=True)
    rtos = [r["rto_s"] for r in rows if r["rto_s"] is not None]
    print(f"\nRTO, primary hard-killed ({args.timings} timings: heartbeat {timings.interval:g} s x {timings.miss}, "
          f"lease {timings.lease:g} s, detection {timings.detection:g} s), kill -> first public 2xx from the "
          "standby at the edge, client writes every 0.1 s:\n")
    print(table(("runs", "min s", "median s", "max s", "no 2xx from the standby"),
                [(len(rows), min(rtos, default=None), round(statistics.median(rtos), 2) if rtos else None,
                  max(rtos, default=None), len(rows) - len(rtos))]))
    step_names = sorted({name for r in rows for name in r["steps"]})
    print()
    print(table(("run", "RTO s", "last primary 2xx s", "SUSPECT s", "ACTIVATING s", "activation s",
                 "ACTIVE -> 2xx s", "refusals", "detector (first SUSPECT)", *[f"{n} s" for n in step_names],
                 "recovery s"),
                [(i + 1, r["rto_s"], r["last_primary_ok_s"], r["suspect_s"], r["activating_s"], r["activation_s"],
                  r["active_to_200_s"], r["refusals"], r["detector"],
                  *[r["steps"].get(n) for n in step_names], r["recovery_s"]) for i, r in enumerate(rows)]))
    print("\nTimes from the kill. ACTIVE -> 2xx: from the standby's recorded ACTIVE to the edge's first 2xx "
          "from it (negative when the connector serves before ACTIVE is recorded).")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

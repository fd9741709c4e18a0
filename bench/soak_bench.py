"""Soak: a healthy pair under steady client traffic while faults cycle (issue 14: zero false activations):
`WIREBOT_LAB_ID=N python bench/soak_bench.py [--minutes 30] [--phase-seconds 60] [--timings lab|default]`
on a lab that is up.

The primary is never killed, frozen or cut: every fault is one of lab/chaos.py's (latency + jitter, random
loss in each direction, CPU starvation of a host, and combinations), held for --phase-seconds, then healed,
then --calm-seconds of quiet; the phases cycle until --minutes are up. Client writes go through the edge at
10/s all along (lab/fencing.py Load). Per phase, counted from the system, not assumed:

* false activations: the standby agent leaving STANDBY/SUSPECT for anything else (ACTIVATING, ACTIVE,
  FENCE_BLOCKED), from its journal's state changes and from polling its GET /status every 2 s;
  fences: the primary fenced (its fence record, or its replicator's "demoted" event); and the edge's side:
  a connector registered from the standby's origin;
* two-origin windows the edge recorded (/lab/overlaps);
* SUSPECTs (suspicion that ended without activation: the detectors at work, not a failure);
* lease lapses on the primary (its replicator's "lapsed" events: the kernel stopped serving traffic);
* client errors (writes without a 2xx, as the client saw them) and the longest stretch without a 2xx.

After a phase that left the pair other than "primary serves, standby watches" the recovery playbook puts the
primary back before the next phase (the row says so). Prints a table per phase and the totals.
"""

import argparse
import sys
import time

from wirebot.common import layout

from lab import chaos, fencing, settings
from lab.agents import journal
from lab.machines import ssh

WATCHING = ("STANDBY", "SUSPECT")
STANDBY = settings.address("standby")

# Fault levels (options --delay-ms, --jitter-ms, --loss, --share, --hogs change them), for the lab's 1 s
# heartbeat: latency 100 ms +/- 50 ms each way on every path (a TLS heartbeat on a fresh connection takes about
# three round trips: 0.6 s +/- 0.3 s of its second), loss 10 % (half of it in combinations), a host held to a
# quarter CPU with two busy loops beside its own processes.
DELAY_MS, JITTER_MS = 100.0, 50.0
LOSS = 10.0
SHARE, HOGS = 0.25, 2
PATHS = [("primary", "standby"), ("standby", "primary"), ("primary", "edge"), ("edge", "primary"),
         ("standby", "edge")]


def delay_everywhere():
    for src, dst in PATHS:
        chaos.delay(src, dst, DELAY_MS, JITTER_MS, DELAY_MS)


def loss(pairs, half=False):
    def apply():
        for src, dst in pairs:
            chaos.loss(src, dst, LOSS / 2 if half else LOSS)
    return apply


def starve(*hosts):
    def apply():
        for host in hosts:
            chaos.starve(host, SHARE, HOGS)
    return apply


def both(*steps):
    def apply():
        for step in steps:
            step()
    return apply


def phases():
    """[(name, apply)] with the fault levels in force (module globals, set from the options)."""
    return [
        (f"latency {DELAY_MS:g} +/- {JITTER_MS:g} ms, every path", delay_everywhere),
        (f"loss {LOSS:g} % primary -> standby", loss([("primary", "standby")])),
        (f"loss {LOSS:g} % standby -> primary", loss([("standby", "primary")])),
        (f"loss {LOSS:g} % primary <-> edge", loss([("primary", "edge"), ("edge", "primary")])),
        (f"loss {LOSS:g} % standby <-> edge", loss([("standby", "edge"), ("edge", "standby")])),
        (f"CPU: primary held to {SHARE:g} CPU + {HOGS} hogs", starve("primary")),
        (f"CPU: standby held to {SHARE:g} CPU + {HOGS} hogs", starve("standby")),
        (f"latency + loss {LOSS / 2:g} %, every path", both(delay_everywhere, loss(PATHS, half=True))),
        ("CPU primary + latency", both(starve("primary"), delay_everywhere)),
        (f"CPU both hosts + loss {LOSS / 2:g} %, every path",
         both(starve("primary", "standby"), loss(PATHS, half=True))),
    ]


def primary_fenced():
    result = ssh("primary", f"test -e {layout.fenced_file()}", check=False, timeout=30)
    return result.returncode == 0


def run_phase(name, apply, seconds, calm, t: fencing.Timings):
    """Hold one fault under load, heal, stay calm; the phase's row."""
    start = time.time()
    polled = []
    with fencing.Load() as load:
        try:
            apply()
            while time.time() < start + seconds:
                polled.append(fencing.standby_status().get("state"))
                time.sleep(2.0)
        finally:
            chaos.heal_all()
        end = time.time()
        while time.time() < end + calm:
            polled.append(fencing.standby_status().get("state"))
            time.sleep(2.0)
    changes = [(e.get("previous"), e.get("state"), e.get("reason") or "")
               for e in journal("standby", "wirebot-standby", start) if e.get("event") == "state-change"]
    lease = [e.get("event") for e in journal("primary", "wirebot-replicator", start) if e.get("component") == "lease"]
    overlaps = fencing.edge(f"/lab/overlaps?since={start}") or []
    standby_connectors = [i for i in fencing.edge("/lab/history") or []
                          if i["origin_ip"] == STANDBY and i["opened_at"] >= start]
    requests = fencing.edge(f"/lab/requests?since={start}") or []
    ok_times = sorted(r["ts"] for r in requests if 200 <= r["status"] < 300)
    bounds = [start] + ok_times + [time.time()]
    # a false activation: the standby leaving STANDBY/SUSPECT for anything else (journal), or found so by the
    # polls when the journal missed it; else one when the edge saw a connector of the standby's or the primary
    # was fenced
    false_states = [state for previous, state, _ in changes if previous in WATCHING and state not in WATCHING]
    if not false_states:
        false_states = sorted({s for s in polled if s and s not in WATCHING})[:1]
    fenced = primary_fenced() or "demoted" in lease
    return {
        "phase": name, "seconds": round(time.time() - start),
        "false_activations": len(false_states) or int(bool(standby_connectors) or fenced),
        "false_states": false_states, "fenced": fenced, "standby_connectors": len(standby_connectors),
        "two_origin": len(overlaps), "suspects": sum(1 for _, state, _ in changes if state == "SUSPECT"),
        "suspect_reasons": sorted({reason[:60] for _, state, reason in changes if state == "SUSPECT"}),
        "lease_lapses": lease.count("lapsed"), "units_stopped": lease.count("units-stopped"),
        "writes": len(load.sent),
        "client_errors": sum(1 for _, _, status in load.sent if not 200 <= (status or 0) < 300),
        "longest_gap_s": round(max(b - a for a, b in zip(bounds, bounds[1:])), 2),
    }


def put_back(t: fencing.Timings):
    """After a false activation: let an activation finish (recovery refuses to interrupt one), then the
    recovery playbook, then wait for "primary serves, standby watches"."""
    deadline = time.monotonic() + t.active_timeout
    while fencing.standby_status().get("state") == "ACTIVATING" and time.monotonic() < deadline:
        time.sleep(1.0)
    fencing.recover()
    fencing.settle(t)


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def main(argv) -> int:
    global DELAY_MS, JITTER_MS, LOSS, SHARE, HOGS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="soak length (default %(default)s)")
    parser.add_argument("--phase-seconds", type=float, default=60.0, help="how long each fault is held")
    parser.add_argument("--calm-seconds", type=float, default=10.0, help="quiet after each fault")
    parser.add_argument("--timings", choices=("lab", "default"), default="lab")
    parser.add_argument("--delay-ms", type=float, default=DELAY_MS, help="latency each way (default %(default)s)")
    parser.add_argument("--jitter-ms", type=float, default=JITTER_MS, help="+/- jitter (default %(default)s)")
    parser.add_argument("--loss", type=float, default=LOSS, help="loss %% per direction (default %(default)s)")
    parser.add_argument("--share", type=float, default=SHARE, help="CPUs a starved host gets (default %(default)s)")
    parser.add_argument("--hogs", type=int, default=HOGS, help="busy loops in a starved host (default %(default)s)")
    parser.add_argument("--phase", action="append", type=int, metavar="N",
                        help="run only phase N (1-based; repeatable); default: all, cycling")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.phase_seconds <= 0 or args.calm_seconds < 0:
        parser.error("--minutes and --phase-seconds must be positive, --calm-seconds not negative")
    DELAY_MS, JITTER_MS, LOSS, SHARE, HOGS = args.delay_ms, args.jitter_ms, args.loss, args.share, args.hogs
    cycle = phases()
    if args.phase:
        if not all(1 <= n <= len(cycle) for n in args.phase):
            parser.error(f"--phase takes 1..{len(cycle)}")
        cycle = [cycle[n - 1] for n in args.phase]
    timings = fencing.deploy_timings(args.timings)
    chaos.heal_all()
    fencing.settle(timings)
    ends = time.time() + 60 * args.minutes
    rows, index = [], 0
    while time.time() < ends:
        name, apply = cycle[index % len(cycle)]
        index += 1
        row = run_phase(name, apply, args.phase_seconds, args.calm_seconds, timings)
        row["recovered"] = False
        rows.append(row)
        print(row, flush=True)
        if not fencing.primary_serves_alone(timings) or row["fenced"]:
            row["recovered"] = True
            try:
                put_back(timings)
            except SystemExit as error:
                print(f"recovery failed, the soak stops here: {error}", flush=True)
                break
    total = {key: sum(r[key] for r in rows) for key in ("false_activations", "two_origin", "suspects",
                                                         "lease_lapses", "client_errors", "writes")}
    print(f"\nSoak of {args.minutes:g} min (latency {DELAY_MS:g} +/- {JITTER_MS:g} ms, loss {LOSS:g} %, "
          f"starved host {SHARE:g} CPU + {HOGS} hogs; {len(rows)} phases of {args.phase_seconds:g} s fault + "
          f"{args.calm_seconds:g} s calm; {args.timings} timings: heartbeat {timings.interval:g} s x {timings.miss}, "
          f"lease {timings.lease:g} s), client writes every 0.1 s:\n")
    print(table(("phase", "false activations", "fenced", "2-origin", "SUSPECTs", "lease lapses", "client errors",
                 "writes", "longest gap s", "recovered"),
                [(r["phase"], r["false_activations"] and f"{r['false_activations']} ({', '.join(r['false_states'])})"
                  or 0, "yes" if r["fenced"] else "no", r["two_origin"], r["suspects"], r["lease_lapses"],
                  r["client_errors"], r["writes"], r["longest_gap_s"], "yes" if r["recovered"] else "no")
                 for r in rows]))
    print(f"\ntotal: {total['false_activations']} false activations, {total['two_origin']} two-origin windows, "
          f"{total['suspects']} SUSPECTs, {total['lease_lapses']} lease lapses, {total['client_errors']} client "
          f"errors of {total['writes']} writes")
    reasons = sorted({reason for r in rows for reason in r["suspect_reasons"]})
    if reasons:
        print("SUSPECT reasons: " + "; ".join(reasons))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Fencing without the primary (issue 10), per fault scenario, measured from the lab edge's own history:
`WIREBOT_LAB_ID=N python bench/fencing_bench.py [--timings lab|default] [SCENARIO ...]` on a lab that is up.
Default: every scenario of lab/fencing.py, in order; after a scenario that moved the service, the recovery
playbook puts the primary back before the next one.

--timings lab (the default): heartbeat 1 s x 3, lease 2 s renewed every 0.5 s, watch 1 s, edge probes every
0.5 s x 2 (lab/inventory.py LAB_TIMINGS);
--timings default: group_data's own heartbeat 30 s x 3, lease 10 s renewed every 2 s, watch 5 s, edge probes
every 2 s x 3 (WIREBOT_LAB_TIMINGS=default
for the deploy and the recovery playbook): each scenario then takes minutes. When the deployed agents do not
run the chosen timings, the bench deploys the lab with them first. Detection, the scenarios' freezes and
waits all follow from the deployed timings (lab/fencing.py Timings).

Prints a table per scenario: two-origin windows (count, seconds), requests and writes the old primary
acknowledged / committed after the standby's ACTIVE, the client-visible outage (longest stretch without a
2xx at the edge, a write every 0.1 s), time from the fault to ACTIVE, detection (fault -> ACTIVATING) and the
activation's own length (ACTIVATING -> ACTIVE), their sum, which the outage is held to, and the detection
bound the timings give for the scenario (lab/fencing.py Timings.detection_bound).
"""

import argparse
import sys

from lab import fencing
from lab.fencing import recover, settle


def main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timings", choices=("lab", "default"), default="lab",
                        help="lab: 1 s x 3, lease 2 s; default: group_data's 30 s x 3, lease 10 s (minutes a scenario)")
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                        help=f"any of {', '.join(fencing.SCENARIOS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = [key for key in args.scenarios if key not in fencing.SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}: choose from {', '.join(fencing.SCENARIOS)}")
    keys = args.scenarios or list(fencing.SCENARIOS)
    timings = fencing.deploy_timings(args.timings)
    print(f"timings: {timings}; detection {timings.detection:g} s", flush=True)
    rows = []
    for key in keys:
        settle(timings)
        row = fencing.run_scenario(key, timings)
        row["recovery_s"] = round(recover(), 1) if row["activated"] else None
        rows.append(row)
        print(row, flush=True)
    head = ("scenario", "2-origin", "2-origin s", "old acks", "old writes", "outage s", "fault->ACTIVE s",
            "detection s", "activation s", "detection + activation s", "bound s", "recovery s")
    print("\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for key, r in zip(keys, rows):
        measured = round(r["detection_s"] + r["activation_s"], 2) if r["activation_s"] is not None else "-"
        bound = timings.detection_bound(key)
        cells = (r["scenario"], r["overlaps"], r["overlap_s"], r["old_acks"], r["old_writes"], r["outage_s"],
                 r["active_after_s"] if r["activated"] else "not activated", r["detection_s"] or "-",
                 r["activation_s"] or "-", measured, "-" if bound is None else round(bound, 2),
                 r["recovery_s"] or "-")
        print("| " + " | ".join(str(c) for c in cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

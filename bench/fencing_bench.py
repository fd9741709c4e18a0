"""Fencing without the primary (issue 10), per fault scenario, measured from the lab edge's own history:
`WIREBOT_LAB_ID=N python bench/fencing_bench.py [SCENARIO ...]` on a deployed lab (lab timings: heartbeat
1 s x 3, lease 2 s). Default: every scenario of lab/fencing.py, in order; after a scenario that moved the
service, the recovery playbook puts the primary back before the next one.

Prints a table per scenario: two-origin windows (count, seconds), requests and writes the old primary
acknowledged / committed after the standby's ACTIVE, the client-visible outage (longest stretch without a
2xx at the edge, a write every 0.1 s), time from the fault to ACTIVE, the activation's own length, and the
target "detection + activation" (3 s + activation) the outage is held to.
"""

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab import fencing, settings  # noqa: E402

DETECTION = 3.0  # the lab's heartbeat_interval_seconds x heartbeat_miss_threshold


def primary_serves_alone() -> bool:
    status = fencing.standby_status()
    connectors = fencing.edge("/lab/connectors") or []
    return (status.get("state") == "STANDBY" and (status.get("last_heartbeat_age_seconds") or 9) < 2
            and {c["origin_ip"] for c in connectors} == {settings.address("primary")})


def settle(timeout=90.0) -> None:
    deadline = time.monotonic() + timeout
    while not primary_serves_alone():
        if time.monotonic() > deadline:
            raise SystemExit("the lab is not in 'primary serves, standby watches': redeploy it first")
        time.sleep(0.5)
    time.sleep(2.0)


def recover() -> float:
    started = time.monotonic()
    result = subprocess.run([str(Path(sys.executable).with_name("pyinfra")), "-y", "lab/inventory.py",
                             "tasks/recovery.py"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise SystemExit("recovery failed:\n" + (result.stdout + result.stderr)[-3000:])
    return time.monotonic() - started


def main(argv) -> int:
    keys = argv or list(fencing.SCENARIOS)
    rows = []
    for key in keys:
        settle()
        row = fencing.run_scenario(key)
        row["recovery_s"] = round(recover(), 1) if row["activated"] else None
        rows.append(row)
        print(row, flush=True)
    head = ("scenario", "2-origin", "2-origin s", "old acks", "old writes", "outage s", "fault->ACTIVE s",
            "activation s", "target s", "recovery s")
    print("\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in rows:
        target = round(DETECTION + r["activation_s"], 2) if r["activation_s"] is not None else "-"
        cells = (r["scenario"], r["overlaps"], r["overlap_s"], r["old_acks"], r["old_writes"], r["outage_s"],
                 r["active_after_s"] if r["activated"] else "not activated", r["activation_s"] or "-", target,
                 r["recovery_s"] or "-")
        print("| " + " | ".join(str(c) for c in cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

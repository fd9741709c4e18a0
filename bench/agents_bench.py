"""Benchmark the runtime agents on the lab: footprint, and detection + activation after a crash.

``.venv/bin/python bench/agents_bench.py [--idle-seconds 20] [--fast-only]`` (root; the lab of WIREBOT_LAB_ID must
be up and deployed: ``python -m lab up && pyinfra -y lab/inventory.py deploy.py``). It measures

1. each agent's RSS (``ps -o rss``) and idle CPU (utime+stime of the unit's main process, children
   included, from /proc/PID/stat over ``--idle-seconds``; the lab's own load is in the numbers too);
2. a crash: ``python -m lab kill primary``, then from the standby agent's journal and GET /status the
   detection (kill -> the first SUSPECT, and kill -> ACTIVATING, i.e. witness and fence done) and the
   activation (ACTIVATING -> ACTIVE, with each step's duration);

first at the lab's fast timings (heartbeat 1 s x 3), then, after a reset deployed with
``--data heartbeat_interval_seconds=30`` (and the lease 60 s, watch 5 s: the settings check holds the
relations), at the seed's timings (30 s x 3; pyinfra's --data overrides the
lab inventory's host data). The lab is reset (``lab down``, ``up``, deploy) after each crash and left
deployed at the fast timings. Prints Markdown tables. Takes about 6 minutes (3 with --fast-only).
"""

import argparse
import sys
import time

from lab import settings
from lab.agents import iso_ts, journal, standby_status
from lab.baseline import ensure_clean_lab, fresh_lab
from lab.commands import lab_cli
from lab.machines import ssh
from tasks.core.wait import WaitTimeout, wait_for

AGENTS = [("primary", "wirebot-replicator"), ("standby", "wirebot-standby")]
STEPS = ["restore", "files", "services", "epoch", "tunnel", "ready"]


def wait(condition, timeout, what, interval=0.25):
    """wait_for, ending the bench (SystemExit) when it times out."""
    try:
        return wait_for(condition, timeout, interval, what)
    except WaitTimeout as timed_out:
        raise SystemExit(f"agents_bench: {timed_out}") from None


def cpu_sample(name, unit):
    """(pid, rss KiB, threads, cpu ticks incl. reaped children, ticks per second) of `unit` on `name`."""
    script = (f"pid=$(systemctl show -p MainPID --value {unit}); echo $pid; ps -o rss= -p $pid; "
              "grep ^Threads: /proc/$pid/status | cut -f2; cut -d')' -f2- /proc/$pid/stat; getconf CLK_TCK")
    pid, rss, threads, stat, hz = ssh(name, script, timeout=30).stdout.split("\n")[:5]
    fields = stat.split()  # field 3 (state) is fields[0]; utime, stime, cutime, cstime are fields 14-17
    ticks = sum(int(v) for v in fields[11:15])
    return int(pid), int(rss), int(threads), ticks, int(hz)


def footprint(seconds):
    """{unit: {pid, rss_mib, threads, cpu_percent, cpu_ms_per_min}} over `seconds` of idle watching."""
    first = {unit: cpu_sample(name, unit) for name, unit in AGENTS}
    started = time.monotonic()
    time.sleep(seconds)
    last = {unit: cpu_sample(name, unit) for name, unit in AGENTS}
    wall = time.monotonic() - started
    result = {}
    for _, unit in AGENTS:
        pid, rss, threads, ticks, hz = last[unit]
        if pid != first[unit][0]:
            raise SystemExit(f"agents_bench: {unit} restarted during the measurement")
        cpu = (ticks - first[unit][3]) / hz
        result[unit] = {"pid": pid, "rss_mib": rss / 1024, "threads": threads,
                        "cpu_percent": 100 * cpu / wall, "cpu_ms_per_min": 1000 * cpu * 60 / wall}
    return result


def crash(interval):
    """Kill the primary, wait for ACTIVE; the detection and activation figures from the standby."""
    killed = time.time()
    lab_cli("kill", "primary")
    status = wait(lambda: (s := standby_status()) and s["state"] == "ACTIVE"
                  and (s.get("activation") or {}).get("completed_at") and s,
                  timeout=interval * 3 + 120, what="the standby's activation to complete")
    changes = [(iso_ts(e["ts"]), e["state"], e["reason"])
               for e in journal("standby", "wirebot-standby", killed) if e["event"] == "state-change"]
    suspect = next(ts for ts, state, _ in changes if state == "SUSPECT")
    activating = next(ts for ts, state, _ in changes if state == "ACTIVATING")
    act = status["activation"]
    return {"first_suspect": suspect - killed, "detection": activating - killed,
            "activation": act["active_at"] - act["started_at"], "total": act["active_at"] - killed,
            "refusals": sum(1 for _, state, reason in changes if state == "STANDBY"
                            and reason.startswith("not activating")),
            "steps": {name: act["steps"][name]["seconds"] for name in STEPS}, "epoch": status["epoch"]}


def configured_interval():
    """The heartbeat interval the deploy rendered into both agents' configs (they must agree)."""
    found = set()
    for name, config in (("primary", "replicator.yml"), ("standby", "standby.yml")):
        script = ("import yaml; print(yaml.safe_load(open('/etc/wirebot/" + config + "'))"
                  "['heartbeat']['interval_seconds'])")
        found.add(float(ssh(name, f'python3 -c "{script}"').stdout))
    if len(found) != 1:
        raise SystemExit(f"agents_bench: the agents' heartbeat intervals differ: {sorted(found)}")
    return found.pop()


def run(label, interval, idle_seconds, deploy_args):
    """Footprint and a crash at one timing; the lab is reset afterwards (back to fast timings)."""
    if deploy_args:
        fresh_lab(*deploy_args)
    else:
        ensure_clean_lab()
    actual = configured_interval()
    if actual != interval:
        raise SystemExit(f"agents_bench: the standby's heartbeat interval is {actual} s, not {interval} s")
    print(f"[{label}] measuring idle CPU over {idle_seconds:.0f} s ...", file=sys.stderr, flush=True)
    usage = footprint(idle_seconds)
    print(f"[{label}] killing the primary ...", file=sys.stderr, flush=True)
    result = crash(interval)
    print(f"[{label}] resetting the lab ...", file=sys.stderr, flush=True)
    fresh_lab()
    return usage, result


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python bench/agents_bench.py", description=__doc__.splitlines()[0])
    parser.add_argument("--idle-seconds", type=float, default=20.0,
                        help="CPU measurement window at fast timings (seed timings: at least 2 heartbeats)")
    parser.add_argument("--fast-only", action="store_true", help="skip the run at the seed's 30 s timings")
    args = parser.parse_args(argv)
    print(f"lab {settings.LAB_ID} ({settings.SUBNET_PREFIX}.0/24)", file=sys.stderr)
    runs = [("fast (1 s x 3)", 1.0, args.idle_seconds, ())]
    if not args.fast_only:
        runs.append(("seed (30 s x 3)", 30.0, max(args.idle_seconds, 60.0),
                     ("--data", "heartbeat_interval_seconds=30", "--data", "fencing_lease_seconds=60",
                      "--data", "fencing_watch_seconds=5")))  # the lease follows (settings check)
    results = [(label, idle, *run(label, interval, idle, deploy)) for label, interval, idle, deploy in runs]

    print("\n## Agents' footprint (idle, watching)\n")
    rows = []
    for label, idle, usage, _ in results:
        for unit, u in usage.items():
            rows.append([label, unit, f"{u['rss_mib']:.1f}", u["threads"], f"{u['cpu_percent']:.2f}",
                         f"{u['cpu_ms_per_min']:.0f}", f"{idle:.0f}"])
    print(table(["timings", "agent", "RSS MiB", "threads", "idle CPU %", "CPU ms/min", "window s"], rows))

    print("\n## Crash of the primary (`lab kill primary`) -> standby ACTIVE\n")
    print(table(["timings", "detection s", "activation s", "total s"],
                [[label, f"{r['detection']:.2f}", f"{r['activation']:.2f}", f"{r['total']:.2f}"]
                 for label, _, _, r in results]))
    print("\ndetection = kill -> ACTIVATING (missed heartbeats, witness, fence); activation = ACTIVATING -> "
          "ACTIVE; total = kill -> ACTIVE.\n")
    print(table(["timings", "kill -> first SUSPECT s", "refusals (dead connector not yet expired)", "epoch"],
                [[label, f"{r['first_suspect']:.2f}", r["refusals"], r["epoch"]] for label, _, _, r in results]))

    print("\n## Activation steps (s, from the standby's GET /status)\n")
    print(table(["timings"] + STEPS, [[label] + [f"{r['steps'][s]:.3f}" for s in STEPS]
                                      for label, _, _, r in results]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

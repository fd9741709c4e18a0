"""Lab and deploy timings, printed as tables.

``python bench/deploy_bench.py --noop N [--before REV]`` (the lab of WIREBOT_LAB_ID up and deployed):
the no-change re-deploy of both hosts, "before" (the deploy code of git revision REV, default: where
this branch left main) against "after" (the working tree), interleaved N times each: wall time of
``pyinfra -y`` and of ``pyinfra --dry`` (min/median/max), remote commands per host (``>>>`` lines of a
``-vvv`` run), the 1-minute load average around each run, pyinfra's phases (start-up and connecting,
preparing the operations - the deploy code and its facts -, running them, disconnecting) and the
operations with the most remote commands. Both sides are no-ops: they deploy the same state in
different numbers of round trips.

``python bench/deploy_bench.py --runs N``: each run ``lab down``, ``lab up`` from nothing (warm rootfs
cache), a first deploy of both hosts, then a no-change re-deploy. Leaves the lab up and deployed.
"""

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))
PHASES = ("Connecting to hosts", "Preparing operation files", "Beginning operation run", "Results:",
          "Disconnecting from hosts")


def before_tree(folder: str, revision: str) -> str:
    """The repository at `revision` (git archive) in `folder`, with the shared .venv linked in."""
    archive = Path(folder) / "tree.tar"
    with open(archive, "wb") as out:
        subprocess.run(["git", "-C", str(ROOT), "archive", revision], stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    archive.unlink()
    (Path(folder) / ".venv").symlink_to(ROOT / ".venv")
    return folder


def timed(argv, cwd=ROOT) -> float:
    started = time.monotonic()
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return time.monotonic() - started


def _pyinfra(cwd, *args) -> list:
    """Run pyinfra from `cwd`; [(seconds since start, output line)]; exits on failure."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    started = time.monotonic()
    process = subprocess.Popen([PYINFRA, *args, "lab/inventory.py", "deploy.py"], cwd=cwd, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    lines = [(time.monotonic() - started, line.rstrip("\n")) for line in process.stdout]
    lines.append((time.monotonic() - started, ""))
    if process.wait() != 0:
        sys.exit(f"pyinfra {' '.join(args)} in {cwd} failed:\n" + "\n".join(line for _, line in lines[-40:]))
    return lines


def noop(cwd, dry=False) -> dict:
    """Wall time, load and changed operations (hosts summed) of one no-change run from `cwd` (without
    -vvv: its printing costs time of its own); --dry runs with --json, whose plan names the changes."""
    load = os.getloadavg()[0]
    argv = [PYINFRA, *(["--dry", "--json"] if dry else ["-y"]), "lab/inventory.py", "deploy.py"]
    started = time.monotonic()
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"{' '.join(argv)} in {cwd} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    if dry:
        changed = sum(len(op["hosts_with_change"]) for op in json.loads(result.stdout)["plan"])
    else:  # Grand total | hosts | success (ran a command) | error | no change
        total = [line for line in (result.stdout + result.stderr).splitlines() if "Grand total" in line]
        changed = total[-1].split()[3] if total else "n/a"
    return {"seconds": seconds, "load": max(load, os.getloadavg()[0]), "changed": changed}


def profile(cwd) -> dict:
    """One ``-y -vvv`` run: remote commands per host, the phases' durations, commands per operation."""
    lines = _pyinfra(cwd, "-y", "-vvv")
    per_host, per_op, marks, current = collections.Counter(), collections.Counter(), {}, "(preparing)"
    for seconds, line in lines:
        for phase in PHASES:
            if f"--> {phase}" in line and phase not in marks:
                marks[phase] = seconds
        if "--> Starting operation: " in line:
            current = line.split("--> Starting operation: ", 1)[1].strip()[:90]
        if ">>>" in line:
            per_host[line.split("]", 1)[0].lstrip(" [")] += 1
            per_op[current] += 1
    end = lines[-1][0]
    bounds = [0.0] + [marks.get(p, end) for p in PHASES] + [end]
    names = ["start-up, inventory", "connecting", "preparing (deploy code, its facts)", "running the operations",
             "results", "disconnecting"]
    return {"per_host": dict(per_host), "per_op": per_op, "total": end,
            "phases": {n: bounds[i + 1] - bounds[i] for i, n in enumerate(names)}}


def _stats(values) -> str:
    return f"{min(values):.2f} | {statistics.median(values):.2f} | {max(values):.2f}"


def bench_noop(runs: int, revision: str) -> None:
    with tempfile.TemporaryDirectory(prefix="deploy-bench-") as tmp:
        sides = {f"before ({revision[:12]})": before_tree(tmp, revision), "after (working tree)": str(ROOT)}
        noop(str(ROOT))  # settle: the first run may still apply something
        results = {(side, dry): [] for side in sides for dry in (False, True)}
        for _ in range(runs):
            for side, cwd in sides.items():
                for dry in (False, True):
                    results[side, dry].append(noop(cwd, dry))
        profiles = {side: profile(cwd) for side, cwd in sides.items()}
        noop(str(ROOT))  # leave the lab as the working tree deploys it
    print(f"no-change re-deploy of both hosts, {runs} interleaved runs of each; {os.cpu_count()} cores")
    print("| deploy | mode | min s | median s | max s | load (1 min) min / median / max | changes |")
    print("|---|---|---:|---:|---:|---|---:|")
    for (side, dry), rows in results.items():
        loads = [r["load"] for r in rows]
        print(f"| {side} | {'--dry' if dry else '-y'} | {_stats([r['seconds'] for r in rows])} | "
              f"{min(loads):.1f} / {statistics.median(loads):.1f} / {max(loads):.1f} | {rows[-1]['changed']} |")
    print("\nremote commands and pyinfra's phases, one `-y -vvv` run each (-vvv's printing included)")
    hosts = sorted({h for p in profiles.values() for h in p["per_host"]})
    phases = list(next(iter(profiles.values()))["phases"])
    print("| deploy | " + " | ".join(f"commands {h}" for h in hosts) + " | "
          + " | ".join(f"{p} s" for p in phases) + " | total s |")
    print("|---|" + "---:|" * (len(hosts) + len(phases) + 1))
    for side, p in profiles.items():
        print(f"| {side} | " + " | ".join(str(p["per_host"].get(h, 0)) for h in hosts) + " | "
              + " | ".join(f"{p['phases'][name]:.2f}" for name in phases) + f" | {p['total']:.2f} |")
    for side, p in profiles.items():
        print(f"\n{side}: operations with the most remote commands (both hosts)")
        print("| operation | commands |\n|---|---:|")
        for name, count in p["per_op"].most_common(8):
            print(f"| {name} | {count} |")


def bench_cycle(runs: int) -> None:
    steps = {"lab up (warm cache)": [], "first deploy (both hosts)": [], "no-change re-deploy": []}
    for _ in range(runs):
        timed([sys.executable, "-m", "lab", "down"])
        steps["lab up (warm cache)"].append(timed([sys.executable, "-m", "lab", "up"]))
        steps["first deploy (both hosts)"].append(timed([PYINFRA, "-y", "lab/inventory.py", "deploy.py"]))
        steps["no-change re-deploy"].append(timed([PYINFRA, "-y", "lab/inventory.py", "deploy.py"]))
    print("| step | runs | median s | min s | max s |\n|---|---:|---:|---:|---:|")
    for name, seconds in steps.items():
        print(f"| {name} | {len(seconds)} | {statistics.median(seconds):.1f} | {min(seconds):.1f} | "
              f"{max(seconds):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="how many full cycles (default 2)")
    parser.add_argument("--noop", type=int, metavar="N", help="only the no-change re-deploy, before/after, N times")
    parser.add_argument("--before", metavar="REV", help="git revision of the 'before' deploy (default: where this "
                        "branch left main)")
    a = parser.parse_args()
    if a.noop:
        revision = a.before or subprocess.run(["git", "-C", str(ROOT), "merge-base", "HEAD", "main"], check=True,
                                              capture_output=True, text=True).stdout.strip()
        bench_noop(a.noop, revision)
    else:
        bench_cycle(a.runs)


if __name__ == "__main__":
    main()

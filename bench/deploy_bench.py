"""Lab and deploy timings, printed as a table: `python bench/deploy_bench.py [--runs N]`.

Each run: `lab down`, `lab up` from nothing (warm rootfs cache), a first deploy of both hosts, then a
no-change re-deploy. Uses the lab chosen by WIREBOT_LAB_ID (default 0) and leaves it up and deployed.
"""

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))


def timed(argv) -> float:
    started = time.monotonic()
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="how many full cycles (default 2)")
    runs = parser.parse_args().runs
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


if __name__ == "__main__":
    main()

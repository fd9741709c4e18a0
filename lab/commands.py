"""The commands lab tests and benches run from the repository root: pyinfra against this lab's inventory
(WIREBOT_LAB_ID is inherited) and `python -m lab`."""

import json
import subprocess
import sys
from pathlib import Path

from lab.shell import LabError

ROOT = Path(__file__).resolve().parent.parent  # the checkout the commands run in
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))  # the venv's pyinfra, beside this Python


def pyinfra(*args, timeout=600, confirm=True):
    """Run pyinfra from the repository root; returns the CompletedProcess. confirm=False leaves out -y
    (with --dry that prints the detected changes and diffs instead of skipping change detection)."""
    argv = [PYINFRA, *(["-y"] if confirm else []), *args]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def changes_in_dry_run(deploy="deploy.py", *extra):
    """Operations that a dry run of `deploy` would change, as (name, hosts) pairs. Runs without -y: with
    it, pyinfra skips change detection and every list is empty. Operations conditional on an earlier
    change (`_if=`) are not counted: with no change before them they do not run."""
    result = pyinfra("--dry", "--json", *extra, "lab/inventory.py", deploy, confirm=False)
    if result.returncode != 0:
        raise LabError(f"pyinfra --dry {deploy} failed:\n{result.stderr[-3000:]}")
    plan = json.loads(result.stdout)["plan"]
    return [(op["name"], op["hosts_with_change"]) for op in plan if op["hosts_with_change"]]


def lab_cli(*args, timeout=600):
    """Run `python -m lab ARGS` for this lab; LabError with its output when it fails."""
    result = subprocess.run([sys.executable, "-m", "lab", *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=timeout, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise LabError(f"python -m lab {' '.join(args)} failed: {(result.stdout + result.stderr)[-2000:]}")
    return result

"""`python -m lab down` removes everything the lab made; `up` from nothing then works again (runs last:
it replaces the lab the other tests used, and leaves a freshly deployed one behind)."""

import subprocess
import sys

from lab import lab, settings
from lab.commands import ROOT, pyinfra


def _lab(command: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab", command], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_lab_down_leaves_nothing_behind_and_up_rebuilds_it():
    down = _lab("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert lab.leftovers() == []
    up = _lab("up")
    assert up.returncode == 0, up.stdout + up.stderr
    hosts = lab.status()["hosts"]
    assert all(hosts[name]["running"] for name in settings.PROCESS_HOSTS), hosts
    assert all(entry["namespace"] for entry in hosts.values()), hosts  # the monitor is a namespace alone
    deployed = pyinfra("lab/inventory.py", "deploy.py")
    assert deployed.returncode == 0, deployed.stderr[-3000:]

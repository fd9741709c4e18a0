"""Freezing a lab host whole, as a hypervisor pause or a stuck kernel would look from outside: every
process of the host's PID namespace is moved into a cgroup-v1 freezer group of its own
(/sys/fs/cgroup/freezer/wirebot-lab<id>-<host>) and frozen there; thawing lets them run on. The host's
kernel state (its network namespace, nftables timeouts, TCP stacks) keeps running, as on a paused VM
whose host kernel answers nothing. Needs the freezer controller (cgroup v1 or the hybrid layout)."""

import time
from pathlib import Path

from lab import machines, settings
from lab.shell import LabError
from tasks.core.wait import WaitTimeout, wait_for

FREEZER = Path("/sys/fs/cgroup/freezer")


def group(name: str) -> Path:
    return FREEZER / f"wirebot-lab{settings.LAB_ID}-{name}"


def freeze(name: str) -> float:
    """Freeze host `name`; returns the time it was frozen (unix seconds)."""
    if not (FREEZER / "freezer.state").exists() and not FREEZER.is_dir():
        raise LabError("no cgroup-v1 freezer hierarchy at /sys/fs/cgroup/freezer")
    cg = group(name)
    cg.mkdir(exist_ok=True)
    for _ in range(2):  # a second pass catches what forked during the first
        for pid in machines.pids(name):
            try:
                (cg / "cgroup.procs").write_text(f"{pid}\n")
            except OSError:
                pass  # gone meanwhile
    (cg / "freezer.state").write_text("FROZEN\n")
    try:
        wait_for(lambda: (cg / "freezer.state").read_text().strip() == "FROZEN", 10, 0.01, f"host {name} frozen")
    except WaitTimeout as timed_out:
        raise LabError(str(timed_out)) from None
    return time.time()


def thaw(name: str) -> float:
    """Thaw host `name` (no-op when it is not frozen); returns the time (unix seconds)."""
    cg = group(name)
    if cg.is_dir():
        (cg / "freezer.state").write_text("THAWED\n")
    return time.time()


def remove(name: str) -> None:
    """Thaw and give the processes back to the root freezer group; remove ours (lab down, tests)."""
    cg = group(name)
    if not cg.is_dir():
        return
    thaw(name)
    for pid in (cg / "cgroup.procs").read_text().split():
        try:
            (FREEZER / "cgroup.procs").write_text(f"{pid}\n")
        except OSError:
            pass
    try:
        cg.rmdir()
    except OSError:
        pass

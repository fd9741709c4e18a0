"""Background processes of the lab (the hosts' systemd-nspawn, the edge), tracked by pid files."""

import os
import signal
import subprocess
from pathlib import Path
from typing import List, Optional

from lab import settings
from tasks.core.wait import WaitTimeout, wait_for


def pid_file(name: str) -> Path:
    return settings.RUN_DIR / f"{name}.pid"


def log_file(name: str) -> Path:
    return settings.RUN_DIR / f"{name}.log"


def pid_of(name: str) -> Optional[int]:
    """The pid of lab process `name` when it is alive, else None (a stale pid file is removed)."""
    try:
        pid = int(pid_file(name).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (ProcessLookupError, FileNotFoundError):
        state = "gone"
    if state in ("Z", "X", "gone"):
        pid_file(name).unlink(missing_ok=True)
        return None
    return pid


def start(name: str, argv: List[str], cwd: Optional[Path] = None, env: Optional[dict] = None) -> int:
    """Start `argv` detached from this terminal, output to the process's log; returns its pid."""
    settings.RUN_DIR.mkdir(parents=True, exist_ok=True)
    with open(log_file(name), "ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=cwd, env=env, start_new_session=True,
        )
    pid_file(name).write_text(f"{proc.pid}\n")
    return proc.pid


def stop(name: str, sig: int = signal.SIGTERM, timeout: float = 30.0) -> bool:
    """Send `sig` to process `name` and wait until it is gone (SIGKILL after `timeout`)."""
    pid = pid_of(name)
    if pid is None:
        return False
    os.kill(pid, sig)

    def gone():
        _reap(pid)
        return pid_of(name) is None

    try:
        wait_for(gone, timeout, interval=0.1, what=f"{name} (pid {pid}) to exit")
    except WaitTimeout:
        os.kill(pid, signal.SIGKILL)
        wait_for(gone, 60, interval=0.1, what=f"{name} (pid {pid}) to exit after SIGKILL")
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass

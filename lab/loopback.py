"""Test equipment on this machine's loopback (unit tests, benches): free ports and the stand-in scripts
(lab/standins/*.py) started as subprocesses."""

import socket
import sys
from pathlib import Path

STANDINS = Path(__file__).resolve().parent / "standins"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def standin_argv(script: str, *args) -> list:
    """argv running the stand-in lab/standins/SCRIPT with `args` on this machine's Python."""
    return [sys.executable, str(STANDINS / script), *map(str, args)]

"""Running the edge (Cloudflare stand-in) inside the lab's `edge` namespace."""

import json
import socket
import sys
import time
from pathlib import Path

from lab import processes, secrets, settings
from lab.shell import LabError

REPO = Path(__file__).resolve().parent.parent
CONFIG = settings.STATE_DIR / "edge.json"


def start() -> None:
    """Start the edge when it is not running, and wait until both its ports answer."""
    CONFIG.write_text(json.dumps(secrets.edge_config(), indent=2) + "\n")
    if processes.pid_of("edge") is None:
        processes.start("edge", [
            "ip", "netns", "exec", settings.netns("edge"), sys.executable, "-m", "lab.edge",
            "--listen", settings.address("edge"),
            "--public-port", str(settings.EDGE_PUBLIC_PORT),
            "--control-port", str(settings.EDGE_CONTROL_PORT),
            "--config", str(CONFIG),
            "--log", str(settings.RUN_DIR / "edge-requests.jsonl"),
        ], cwd=REPO)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            for port in (settings.EDGE_PUBLIC_PORT, settings.EDGE_CONTROL_PORT):
                socket.create_connection((settings.address("edge"), port), timeout=1).close()
            return
        except OSError:
            if processes.pid_of("edge") is None:
                raise LabError(f"the edge exited; see {processes.log_file('edge')}") from None
            time.sleep(0.2)
    raise LabError(f"the edge did not answer within 20 s; see {processes.log_file('edge')}")


def stop() -> None:
    processes.stop("edge")

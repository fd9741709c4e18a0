"""Running the edge (Cloudflare stand-in) and the lab's model server inside the lab's `edge` namespace."""

import json
import socket
import sys
import time
from pathlib import Path

from lab import processes, secrets, settings
from lab.shell import LabError

REPO = Path(__file__).resolve().parent.parent
CONFIG = settings.STATE_DIR / "edge.json"
MODEL_LOG = settings.RUN_DIR / "model-requests.jsonl"  # one line per answer: which host's gateway asked


def start() -> None:
    """Start the edge and the model server when they are not running, and wait until their ports answer."""
    CONFIG.write_text(json.dumps(secrets.edge_config(), indent=2) + "\n")
    if processes.pid_of("edge") is None:
        processes.start("edge", [
            "ip", "netns", "exec", settings.netns("edge"), sys.executable, "-m", "lab.edge",
            "--listen", settings.address("edge"),
            "--public-port", str(settings.EDGE_PUBLIC_PORT),
            "--control-port", str(settings.EDGE_CONTROL_PORT),
            "--config", str(CONFIG),
            "--log", str(settings.RUN_DIR / "edge-requests.jsonl"),
            # Cloudflare waits 100 s for an origin's answer; an agent run of the real gateway can take
            # longer than the edge's default 10 s on a busy machine
            "--origin-timeout", str(settings.EDGE_ORIGIN_TIMEOUT_SECONDS),
        ], cwd=REPO)
    if processes.pid_of("model") is None:
        processes.start("model", [
            "ip", "netns", "exec", settings.netns("edge"), sys.executable, "-m", "lab.model_server",
            "--listen", settings.address("edge"), "--port", str(settings.MODEL_PORT),
            "--log", str(MODEL_LOG),
        ] + [f"--name={settings.address(name)}={name}" for name in settings.SYSTEMD_HOSTS], cwd=REPO)
    deadline = time.monotonic() + 20
    waiting = {"edge": [settings.EDGE_PUBLIC_PORT, settings.EDGE_CONTROL_PORT], "model": [settings.MODEL_PORT]}
    while time.monotonic() < deadline:
        try:
            for _name, ports in waiting.items():
                for port in ports:
                    socket.create_connection((settings.address("edge"), port), timeout=1).close()
            return
        except OSError:
            for name in waiting:
                if processes.pid_of(name) is None:
                    raise LabError(f"the {name} process exited; see {processes.log_file(name)}") from None
            time.sleep(0.2)
    raise LabError(f"the edge or the model server did not answer within 20 s; see {settings.RUN_DIR}")


def stop() -> None:
    processes.stop("model")
    processes.stop("edge")

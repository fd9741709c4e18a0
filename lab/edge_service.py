"""Running the edge (Cloudflare stand-in) and the lab's model server inside the lab's `edge` namespace."""

import json
import socket
import sys
from pathlib import Path

from lab import processes, secrets, settings
from lab.shell import LabError
from tasks.core.wait import WaitTimeout, wait_for

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
    waiting = {"edge": [settings.EDGE_PUBLIC_PORT, settings.EDGE_CONTROL_PORT], "model": [settings.MODEL_PORT]}

    def answering():
        for name, ports in waiting.items():
            if processes.pid_of(name) is None:
                raise LabError(f"the {name} process exited; see {processes.log_file(name)}")
            for port in ports:
                socket.create_connection((settings.address("edge"), port), timeout=1).close()
        return True

    try:
        wait_for(answering, 20, interval=0.2, what="the edge and the model server to answer", ignore=(OSError,))
    except WaitTimeout as timed_out:
        raise LabError(f"{timed_out}; see {settings.RUN_DIR}") from None


def stop() -> None:
    processes.stop("model")
    processes.stop("edge")

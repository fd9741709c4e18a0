"""Test equipment: the real Prometheus server (Debian's `prometheus` package on this machine, its own
service disabled) run for a few seconds with given scrape jobs, to see what Go's TLS makes of the agents.
Used by tests/unit/lab/test_prometheus.py (on loopback) and tests/lab/test_prometheus_scrape.py (in the monitor's
network namespace, the lab's metrics source). Never deployed."""

import json
import shutil
import subprocess
import urllib.request
from pathlib import Path

import yaml

from tasks.core.wait import wait_for


def binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        raise RuntimeError("prometheus is not installed: apt-get install prometheus (lab/deploy.sh does)")
    return path


def scrape_once(jobs: list, folder: Path, listen: str, prefix=(), timeout: float = 30.0) -> dict:
    """Run Prometheus (``prefix`` + argv, e.g. ``ip netns exec NS``) with ``jobs`` (scrape_configs), its
    web API on ``listen`` (host:port, reachable from here), until every job's target was scraped once;
    {job: (health, last error)}. The server is stopped before returning."""
    config = folder / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                                      "scrape_configs": jobs}))
    argv = [*prefix, binary(), f"--config.file={config}", f"--storage.tsdb.path={folder / 'tsdb'}",
            f"--web.listen-address={listen}"]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    def scraped():
        with urllib.request.urlopen(f"http://{listen}/api/v1/targets", timeout=2) as answer:
            targets = json.load(answer)["data"]["activeTargets"]
        seen = {t["labels"]["job"]: (t["health"], t["lastError"]) for t in targets if t["health"] != "unknown"}
        return seen if len(seen) == len(jobs) else None

    try:
        return wait_for(scraped, timeout, interval=0.5, what="Prometheus to scrape every job once",
                        ignore=(OSError, ValueError))
    finally:
        server.terminate()
        server.wait(10)

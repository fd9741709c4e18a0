"""Helpers for lab tests: commands on lab hosts, requests to the edge, polling, pyinfra runs."""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lab import machines, settings

ROOT = Path(__file__).resolve().parents[2]
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))


def ssh(name, command, check=True, timeout=60):
    """Run a shell command on a lab host as root; returns the CompletedProcess."""
    return machines.ssh(name, command, check=check, timeout=timeout)


def edge(path, method="GET", body=None, headers=None, timeout=5):
    """Call the edge's control/API port; returns (status, parsed JSON or text)."""
    return http(f"{settings.EDGE_URL}{path}", method, body, headers, timeout)


def public(hostname, path, method="GET", body=None, timeout=5):
    """A request from 'the internet': to the edge's public port with the public hostname."""
    return http(f"{settings.EDGE_PUBLIC_URL}{path}", method, body, {"Host": hostname}, timeout)


def http(url, method="GET", body=None, headers=None, timeout=5):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except OSError as error:
        return 0, str(error)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_for(condition, timeout=30.0, interval=0.25, what="condition"):
    """Poll `condition` until it returns a truthy value (returned) or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


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
    assert result.returncode == 0, result.stderr[-3000:]
    plan = json.loads(result.stdout)["plan"]
    return [(op["name"], op["hosts_with_change"]) for op in plan if op["hosts_with_change"]]

"""The runtime agents on the lab hosts, as the operator reaches them: their API over the local control
socket (through SSH), and the JSON lines they log to the journal. Test equipment (tests, benches)."""

import json
import shlex
import subprocess
from datetime import datetime

from lab import machines, settings

AGENT_PORT = 8300  # group_data agent_port: the peer's mutual-TLS channel (the lab tests attack it)
AGENT_SOCKET = "/run/wirebot-agent/control.sock"  # group_data agent_control_socket


def _ssh_mux(name, command, timeout):
    """ssh to a lab host reusing one connection per host (the agents' API is polled often)."""
    argv = ["ssh", "-F", str(settings.SSH_CONFIG), "-o", "ControlMaster=auto", "-o", "ControlPersist=60",
            "-o", f"ControlPath={settings.STATE_DIR}/cm-%C", name, command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 15, stdin=subprocess.DEVNULL)


def agent(name, path, method="GET", body=None, timeout=5):
    """Call the agent on lab host `name` (the replicator on the primary, the standby agent) the way the
    operator does: on the host, over its local control socket (root only; :8300 admits only the peer, over
    mutual TLS). Returns (status, parsed JSON or text); status 0 when the agent does not answer."""
    command = f"curl -s -m {int(timeout)} --unix-socket {AGENT_SOCKET} -X {method} -w '\\n%{{http_code}}' "
    if body is not None:
        command += f"-H 'Content-Type: application/json' --data-binary {shlex.quote(json.dumps(body))} "
    try:
        result = _ssh_mux(name, command + shlex.quote(f"http://agent{path}"), timeout)
    except subprocess.TimeoutExpired:
        return 0, "ssh timed out"
    text, _, code = result.stdout.rpartition("\n")
    status = int(code) if code.strip().isdigit() else 0
    if status == 0:
        return 0, (result.stdout + result.stderr).strip()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def standby_status(timeout=5):
    """The standby agent's GET /status as a dict, or None while it does not answer."""
    status, body = agent("standby", "/status", timeout=timeout)
    return body if status == 200 and isinstance(body, dict) else None


def journal(name, unit, since):
    """The JSON lines that `unit` on host `name` logged since unix time `since` (their "ts" is checked)."""
    result = machines.ssh(name, f"journalctl -u {unit} -o cat --no-pager --since @{int(since) - 1}", check=False)
    lines = []
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("ts") and iso_ts(entry["ts"]) >= since:
                lines.append(entry)
    return lines


def iso_ts(text):
    """An agent log line's ISO 8601 "ts" as unix seconds."""
    return datetime.fromisoformat(text).timestamp()

"""Helpers for lab tests: commands on lab hosts, requests to the edge, polling, pyinfra runs."""

import json
import shlex
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from lab import client, machines, settings

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


http = client.request  # (status, parsed JSON or text)


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


# --- Runtime agents: resetting the lab, the agents' APIs, journals, alerts ---------------------------

AGENT_PORT = 8300
AGENT_SOCKET = "/run/wirebot-agent/control.sock"  # group_data agent_control_socket


def _ssh_mux(name, command, timeout):
    """ssh to a lab host reusing one connection per host (the agents' API is polled often)."""
    argv = ["ssh", "-F", str(settings.SSH_CONFIG), "-o", "ControlMaster=auto", "-o", "ControlPersist=60",
            "-o", f"ControlPath={settings.STATE_DIR}/cm-%C", name, command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 15, stdin=subprocess.DEVNULL)


def lab_cli(*args, timeout=600):
    """Run `python -m lab ARGS` for this lab (WIREBOT_LAB_ID is inherited); fails the test on error."""
    result = subprocess.run([sys.executable, "-m", "lab", *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=timeout, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        pytest.fail(f"python -m lab {' '.join(args)} failed: {(result.stdout + result.stderr)[-2000:]}")
    return result


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


def standby_status():
    """The standby agent's GET /status as a dict, or None while it does not answer."""
    status, body = agent("standby", "/status")
    return body if status == 200 and isinstance(body, dict) else None


def connector_origins():
    """The origin IPs of the connectors registered at the edge right now."""
    status, connectors = edge("/lab/connectors")
    return {c["origin_ip"] for c in connectors} if status == 200 else None


def webhooks(since):
    """The webhook POSTs (the agents' Discord alerts) the edge received since `since`: [{ts, name, body}]."""
    status, hooks = edge(f"/lab/webhooks?since={since}")
    assert status == 200, hooks
    return hooks


def journal(name, unit, since):
    """The JSON lines that `unit` on host `name` logged since unix time `since` (their "ts" is checked)."""
    result = ssh(name, f"journalctl -u {unit} -o cat --no-pager --since @{int(since) - 1}", check=False)
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


def lab_is_clean(interval=1):
    """True when the lab is in its just-deployed state: the primary serves alone at epoch 1 with its
    connector up and not fenced, the standby watches at epoch 1 and gets heartbeats, fast timings."""
    status = standby_status()
    if not status or (status["state"], status["epoch"]) != ("STANDBY", 1):
        return False
    age = status.get("last_heartbeat_age_seconds")
    if age is None or age > 3 * interval or connector_origins() != {settings.address("primary")}:
        return False
    checks = ("systemctl is-active -q cloudflared-wirebot wirebot-replicator litestream && "
              "test ! -e /var/lib/wirebot/fenced.json && "
              "python3 -c 'import json; assert json.load(open(\"/var/lib/wirebot/state.json\"))[\"epoch\"] == 1'")
    if ssh("primary", checks, check=False, timeout=20).returncode != 0:
        return False
    timing = f"grep -q '^  interval_seconds: {interval}$' /etc/wirebot/standby.yml"
    return ssh("standby", timing, check=False, timeout=20).returncode == 0


def fresh_lab(*deploy_args):
    """Reset this lab to "primary serving, standby watching, epoch 1": `lab down`, `lab up` and a deploy
    (extra pyinfra arguments such as "--data", "fencing_watch_seconds=2" go to the deploy), then
    wait until heartbeats flow and the edge routes to the primary. Returns the seconds it took (~45)."""
    started = time.monotonic()
    lab_cli("down")
    lab_cli("up")
    result = pyinfra(*deploy_args, "lab/inventory.py", "deploy.py")
    if result.returncode != 0:
        pytest.fail(f"deploy after the lab reset failed:\n{(result.stdout + result.stderr)[-3000:]}")

    def ready():
        status = standby_status()
        return (status and status["state"] == "STANDBY" and status.get("last_heartbeat")
                and connector_origins() == {settings.address("primary")}
                and public("wins.wirebot.chat", "/health")[0] == 200)

    wait_for(ready, timeout=120, what="heartbeats and the primary's connector after the reset")
    seconds = time.monotonic() - started
    print(f"fresh lab in {seconds:.1f} s")
    return seconds


def ensure_clean_lab():
    """fresh_lab() unless lab_is_clean() already; returns True when it had to reset."""
    if lab_is_clean():
        return False
    fresh_lab()
    return True


# --- The agents' channel: probes from a host's network namespace, stolen and stranger identities -------

PROBE = ROOT / "tests" / "lab" / "channel_probe.py"
AGENT_KEYS = "/etc/wirebot/agent-keys"  # group_data agent_keys_dir


def probe_argv(where):
    """argv running tests/lab/channel_probe.py with the network of lab host `where` ("root": this machine)."""
    argv = [sys.executable, str(PROBE)]
    return argv if where == "root" else ["ip", "netns", "exec", settings.netns(where), *argv]


def probe(where, spec, timeout=120):
    """Run one channel_probe.py spec from `where`'s address; its JSON answer."""
    result = subprocess.run(probe_argv(where), input=json.dumps(spec), capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def identity(name):
    """Copies of lab host `name`'s agent key, certificate and pinned peer certificate on this machine (an
    attacker who stole them): {"cert_file", "key_file", "peer_cert_file"} for channel_probe.py."""
    folder = settings.STATE_DIR / "test-identities" / name
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    out = {}
    for field, file in (("cert_file", "agent.crt"), ("key_file", "agent.key"), ("peer_cert_file", "peer.crt")):
        text = ssh(name, f"cat {AGENT_KEYS}/{file}").stdout
        path = folder / file
        path.write_text(text)
        path.chmod(0o600)
        out[field] = str(path)
    return out


def stranger_identity():
    """A key and self-signed certificate made on this machine with the deploy's own command: well-formed,
    but pinned nowhere."""
    from tasks.core.ops import tls_keypair_command

    folder = settings.STATE_DIR / "test-identities" / "stranger"
    key, cert = folder / "agent.key", folder / "agent.crt"
    if not (key.exists() and cert.exists()):
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        subprocess.run(["sh", "-c", tls_keypair_command(str(key), str(cert), "wirebot-primary")], check=True)
    return {"cert_file": str(cert), "key_file": str(key)}


def recover_primary():
    """Run the recovery playbook (the primary serves again, the standby watches) and wait until the standby
    hears fresh heartbeats and the primary's connector is the only one at the edge."""
    result = pyinfra("lab/inventory.py", "tasks/recovery.py")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    wait_for(lambda: (s := standby_status()) and s["state"] == "STANDBY" and s.get("last_heartbeat_age_seconds",
                                                                                    9) < 2,
             timeout=60, what="the standby watching again after the recovery")
    wait_for(lambda: connector_origins() == {settings.address("primary")}, timeout=30,
             what="the primary's connector back at the edge")

"""The real OpenClaw gateway on the lab (issue 11): unit, user, environment, config keys and version on
both hosts, /readyz on the primary, the standby's gateway stopped until activation, its sandbox and
secrets, the bearer token, and its database carried by Litestream rather than file sync.

Read-only: runs against the freshly deployed lab (the conftest resets it when it is not).
"""

import json
import re

import pytest

from lab import settings
from lab.client import request as http
from lab.machines import ssh
from lab.secrets import ensure as lab_secrets

UNIT = "/usr/local/lib/systemd/system/openclaw-gateway.service"
STATE_DIR = "/data/wirebot/users/verious/openclaw"
CONFIG = f"{STATE_DIR}/openclaw.json"
DATABASE = f"{STATE_DIR}/state/openclaw.sqlite"
CHAT = {"model": "openclaw", "messages": [{"role": "user", "content": "lab test: are you there?"}]}


def token() -> str:
    return (lab_secrets() / "gateway-token.env").read_text().strip().split("=", 1)[1]


def show(role: str, prop: str) -> str:
    return ssh(role, f"systemctl show -p {prop} --value openclaw-gateway").stdout.strip()


@pytest.mark.parametrize("role", ["primary", "standby"])
def test_the_unit_runs_the_real_gateway_as_its_user_on_the_synced_state(role):
    assert show(role, "User") == "wirebot"
    environment = show(role, "Environment").split()
    assert f"OPENCLAW_STATE_DIR={STATE_DIR}" in environment
    assert f"OPENCLAW_CONFIG_PATH={CONFIG}" in environment
    assert "/run/wirebot/gateway-token.env" in show(role, "EnvironmentFiles")
    assert show(role, "ExecStart").startswith("{ path=/usr/bin/openclaw ; argv[]=/usr/bin/openclaw gateway --port "
                                              "18789 ")
    assert ssh(role, "setpriv --reuid wirebot --regid wirebot --clear-groups openclaw --version").stdout.startswith(
        "OpenClaw 2026.9.6 ")
    assert ssh(role, "node --version").stdout.strip().startswith("v24.")


@pytest.mark.parametrize("role", ["primary", "standby"])
def test_the_config_carries_the_deploys_keys(role):
    config = json.loads(ssh(role, f"cat {CONFIG}").stdout)
    gateway = config["gateway"]
    assert (gateway["mode"], gateway["bind"], gateway["port"], gateway["auth"]["mode"]) == (
        "local", "loopback", 18789, "token")
    assert "token" not in gateway["auth"]  # the token comes from the root-only environment file
    assert gateway["http"]["endpoints"]["chatCompletions"]["enabled"] is True
    assert config["models"]["providers"]["wirebot-lab"]["baseUrl"] == settings.MODEL_BASE_URL
    assert ssh(role, f"stat -c '%U %a' {CONFIG} {STATE_DIR}").stdout.split() == ["wirebot", "600", "wirebot", "700"]


@pytest.mark.parametrize("role", ["primary", "standby"])
def test_the_gateways_secrets_are_root_only_and_its_sandbox_scores_at_most_6(role):
    assert ssh(role, "stat -c '%U %a' /run/wirebot/gateway-token.env").stdout.split() == ["root", "600"]
    assert ssh(role, "setpriv --reuid wirebot --regid wirebot --clear-groups cat /run/wirebot/gateway-token.env",
               check=False).returncode != 0
    report = ssh(role, "systemd-analyze security openclaw-gateway", check=False).stdout
    exposure = float(re.search(r"Overall exposure level for openclaw-gateway.service: ([0-9.]+)", report).group(1))
    assert exposure <= 6.0, report[-2000:]
    assert "MemoryDenyWriteExecute=yes" not in ssh(role, f"cat {UNIT}").stdout  # Node's JIT


def test_the_primary_is_ready_on_loopback_only(primary):
    assert primary.service("openclaw-gateway").is_running and primary.service("openclaw-gateway").is_enabled
    assert ssh("primary", "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18789/readyz").stdout == "200"
    assert primary.socket("tcp://127.0.0.1:18789").is_listening
    assert not primary.socket("tcp://0.0.0.0:18789").is_listening
    status, _ = http(f"http://{settings.address('primary')}:18789/health", timeout=3)
    assert status == 0  # not reachable from the bridge: only cloudflared on the host reaches it


def test_the_standbys_gateway_waits_stopped(standby):
    unit = standby.service("openclaw-gateway")
    assert unit.exists and not unit.is_running and not unit.is_enabled


def test_a_chat_through_the_edge_needs_the_token_and_reaches_the_model_through_the_primary():
    url = f"{settings.EDGE_PUBLIC_URL}/v1/chat/completions"
    status, body = http(url, "POST", CHAT, {"Host": "helm.wirebot.chat"}, timeout=120)
    assert status == 401, body
    status, body = http(url, "POST", CHAT, {"Host": "helm.wirebot.chat", "Authorization": f"Bearer {token()}"},
                        timeout=150)
    assert status == 200, body
    answer = body["choices"][0]["message"]["content"]
    # the lab's model server names the gateway that asked and repeats the message (which the gateway frames
    # with a timestamp and its runtime context)
    assert answer.startswith("Wirebot lab model, via the primary gateway: ") and "lab test: are you there?" in answer


def test_the_gateways_database_streams_through_litestream_and_file_sync_skips_it():
    assert f"path: {DATABASE}" in ssh("primary", "cat /etc/litestream.yml").stdout
    replicator = ssh("primary", "cat /etc/wirebot/replicator.yml").stdout
    for path in (DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm", f"{STATE_DIR}/tmp"):
        assert f"- {path}\n" in replicator, path
    ssh("primary", f"test -s {DATABASE}")
    files = f"/var/lib/wirebot-replica/files{STATE_DIR}"
    listing = ssh("standby", f"find {files} -maxdepth 2 2>/dev/null; true").stdout.split()
    assert f"{files}/openclaw.json" in listing
    assert not [p for p in listing if "openclaw.sqlite" in p or p.startswith(f"{files}/tmp")], listing
    replica = "/var/lib/wirebot-replica/litestream/epoch-1/users/verious/openclaw/state/openclaw.sqlite"
    assert ssh("standby", f"find {replica} -type f | head -1").stdout.strip(), "no Litestream replica yet"

"""wirebot.hosttools.gate: the primary's cloudflared ExecStartPre decisions."""

import json
import subprocess
import sys

import pytest
import yaml
from wirebot.common import httpapi, statefile, tls
from wirebot.hosttools import gate

from .. import agenttest


@pytest.fixture
def env(tmp_path, http_server):
    standby = http_server()
    standby.set("/status", 200, {"state": "STANDBY", "epoch": 3})
    cf = http_server()
    cf.set("/client/v4/accounts/acct/cfd_tunnel/tun/connections", 200,
           {"success": True, "result": [{"id": "a", "conns": [{"origin_ip": "10.213.0.2"}]}]})
    statefile.save(str(tmp_path / "state.json"), {"epoch": 3, "sequence": 1})
    token = tmp_path / "token"
    token.write_text("tok\n")
    cfg = {"state_file": str(tmp_path / "state.json"),
           "standby": {"agent_url": standby.url()},
           "tls": agenttest.tls_settings("primary", "standby"),
           "secrets": {"cloudflare_api_token_file": str(token)},
           "gate": {"timeout_seconds": 2, "fenced_file": str(tmp_path / "fenced.json")},
           "witness": {"public_url": cf.url("/health"), "cloudflare_api_base": cf.url("/client/v4"),
                       "account_id": "acct", "tunnel_id": "tun", "self_origin_ip": "10.213.0.2"}}
    path = tmp_path / "replicator.yml"

    def write(**changes):
        for key, value in changes.items():
            if value is None:
                cfg.pop(key, None)
            else:
                cfg[key] = value
        path.write_text(yaml.safe_dump(cfg))
        return gate.load_settings(str(path))

    return {"standby": standby, "cf": cf, "write": write, "path": str(path), "tmp": tmp_path}


def test_allow_when_standby_standby_and_only_own_connection(env):
    allow, reason, checks = gate.evaluate(env["write"]())
    assert allow and "standby STANDBY at epoch 3" in reason and "no other origin" in reason
    assert checks["own_epoch"] == 3


@pytest.mark.parametrize("state,epoch,allow", [
    ("ACTIVE", 3, False), ("ACTIVE", 4, False), ("ACTIVATING", 3, False),
    ("ACTIVE", 2, True),  # a stale standby epoch: the primary already holds a newer one
    ("SUSPECT", 9, True), ("FENCE_BLOCKED", 9, True), ("STANDBY", 9, True),
])
def test_standby_state_and_epoch(env, state, epoch, allow):
    env["standby"].set("/status", 200, {"state": state, "epoch": epoch})
    result, reason, _ = gate.evaluate(env["write"]())
    assert result is allow
    if not allow:
        assert f"standby is {state} at epoch {epoch}" in reason


def test_refuse_when_witness_shows_other_origin(env):
    env["cf"].set("/client/v4/accounts/acct/cfd_tunnel/tun/connections", 200,
                  {"success": True, "result": [{"id": "b", "conns": [{"origin_ip": "10.213.0.3"}]}]})
    allow, reason, _ = gate.evaluate(env["write"]())
    assert not allow and "10.213.0.3" in reason


def test_unreachable_standby_and_no_witness_allows(env):
    settings = env["write"](witness=None, standby={"agent_url": f"http://127.0.0.1:{agenttest.free_port()}"})
    allow, reason, checks = gate.evaluate(settings)
    assert allow and "standby unreachable" in reason and "no witness configured" in reason
    assert checks["witness"] == "not configured"


def test_witness_api_failure_allows_and_says_so(env):
    env["cf"].set("/client/v4/accounts/acct/cfd_tunnel/tun/connections", 403, {"success": False})
    allow, reason, _ = gate.evaluate(env["write"]())
    assert allow and "witness API failed (HTTP 403)" in reason


def test_missing_state_file_means_epoch_1(env):
    env["standby"].set("/status", 200, {"state": "ACTIVE", "epoch": 1})
    settings = env["write"](state_file=str(env["tmp"] / "absent.json"))
    allow, _, checks = gate.evaluate(settings)
    assert not allow and checks["own_epoch"] == 1


def test_witness_without_public_url_is_enough_for_the_gate(env):
    settings = env["write"](witness={"cloudflare_api_base": env["cf"].url("/client/v4"), "account_id": "acct",
                                     "tunnel_id": "tun", "self_origin_ip": "10.213.0.3"})
    allow, reason, _ = gate.evaluate(settings)
    assert not allow and "10.213.0.2" in reason


def test_fence_record_refuses(env):
    statefile.save(str(env["tmp"] / "fenced.json"), {"fenced_at": "t", "by": "10.213.0.3", "reason": "r"})
    allow, reason, _ = gate.evaluate(env["write"]())
    assert not allow and "fenced" in reason and "recovery" in reason


def test_cli_exit_codes_and_log(env):
    env["write"]()
    run = [sys.executable, "-m", "wirebot.hosttools.gate", "--config", env["path"]]
    pyenv = {"PYTHONPATH": agenttest.AGENTS, "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(run, env=pyenv, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    assert json.loads(proc.stdout.strip().splitlines()[-1])["event"] == "allow"
    env["standby"].set("/status", 200, {"state": "ACTIVE", "epoch": 5})
    proc = subprocess.run(run, env=pyenv, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and "refusing" in proc.stderr
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert record["event"] == "refuse" and record["checks"]["standby"]["state"] == "ACTIVE"


def test_cli_config_error_names_file_and_key(env, capsys):
    (env["tmp"] / "bad.yml").write_text("state_file: /x\n")
    assert gate.main(["--config", str(env["tmp"] / "bad.yml")]) == 2
    assert "bad.yml: standby.agent_url is required" in capsys.readouterr().err


@pytest.mark.parametrize("server_identity,readable", [("standby", True), ("stranger", False)])
def test_the_gate_reads_the_standby_over_mutual_tls_and_only_the_pinned_one(env, server_identity, readable):
    """The standby's /status over https with this host's client certificate; a server presenting any
    other certificate is not believed (treated as unreachable)."""
    server_tls = dict(agenttest.tls_identities()[server_identity], peer_cert_file=agenttest.tls_identities()[
        "primary"]["cert_file"])
    seen = []
    routes = {("GET", "/status"): lambda r: seen.append(r.client) or (200, {"state": "ACTIVE", "epoch": 9})}
    srv = httpapi.serve("127.0.0.1", 0, routes, tls=tls.server_context(server_tls), component="test")
    try:
        settings = env["write"](standby={"agent_url": f"https://127.0.0.1:{srv.server_address[1]}"})
        allow, reason, checks = gate.evaluate(settings)
    finally:
        srv.shutdown()
        srv.server_close()
    if readable:
        assert not allow and "standby is ACTIVE at epoch 9" in reason and seen == ["127.0.0.1"]
    else:
        assert allow and checks["standby"]["http_status"] == 0 and seen == []


@pytest.mark.parametrize("state,allowed", [("STANDBY", False), ("SUSPECT", False), ("FENCE_BLOCKED", False),
                                           ("ACTIVATING", True), ("ACTIVE", True)])
def test_the_standbys_gate_allows_only_an_activating_or_active_standby(tmp_path, state, allowed):
    statefile.save(str(tmp_path / "state.json"), {"state": state, "epoch": 2})
    path = tmp_path / "standby.yml"
    path.write_text(yaml.safe_dump({"state_file": str(tmp_path / "state.json")}))
    assert gate.main(["--standby", "--config", str(path)]) == (0 if allowed else 1)


def test_the_standbys_gate_refuses_without_a_state_file(tmp_path):
    allow, reason, _ = gate.evaluate_standby(str(tmp_path / "missing.json"))
    assert not allow and "has not run" in reason

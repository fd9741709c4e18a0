"""The gateway's deploy without hosts: openclaw.json merging, what file sync skips, the agents' readiness
URL, the gateway settings' checks, and the lab bundle's pins agreeing with group_data."""

import json
import runpy
from pathlib import Path
from types import SimpleNamespace

import pytest
from wirebot.common.inotify import Event
from wirebot.primary import filesync

from lab import gateway_bundle
from lab import secrets as lab_secrets
from lab import settings as lab_settings
from tasks.core.settings_check import GROUP_DATA, SettingError, check
from tasks.provision import agent_configs
from tasks.provision.gateway import openclaw_config, ready_url, wait_ready_command


def data(**overrides):
    values = {}
    for name in ("all", "primary"):
        values.update({k: v for k, v in runpy.run_path(str(GROUP_DATA / f"{name}.py")).items()
                       if not k.startswith("_")})
    values.update(overrides)
    return SimpleNamespace(**values)


@pytest.fixture
def secrets_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(lab_settings, "SECRETS_DIR", tmp_path / "secrets")
    return lab_secrets.ensure()


# --- openclaw.json ---------------------------------------------------------------------------------

OPERATOR = {
    "gateway": {"mode": "remote", "bind": "lan", "controlUi": {"enabled": False}},
    "agents": {"defaults": {"workspace": "/srv/mine", "model": {"primary": "anthropic/claude"}}},
    "auth": {"profiles": {"anthropic:default": {"provider": "anthropic", "mode": "api_key"}}},
    "meta": {"lastTouchedVersion": "2026.9.6"},
}


def merged(current, **overrides):
    d = data(**overrides)
    return openclaw_config.merge(current, openclaw_config.wanted(d), openclaw_config.defaults(d), "h:/c.json")


def test_the_deploys_keys_are_set_and_everything_else_the_operator_configured_is_kept():
    config = merged(OPERATOR)
    gateway = config["gateway"]
    assert (gateway["mode"], gateway["bind"], gateway["port"], gateway["auth"]) == (
        "local", "loopback", 18789, {"mode": "token"})
    assert gateway["trustedProxies"] == ["127.0.0.1", "::1"]
    assert gateway["http"]["endpoints"]["chatCompletions"]["enabled"] is True
    assert gateway["controlUi"] == {"enabled": False}
    assert config["agents"]["defaults"] == OPERATOR["agents"]["defaults"]  # workspace: the operator's wins
    assert config["auth"] == OPERATOR["auth"] and config["meta"] == OPERATOR["meta"]
    assert OPERATOR["gateway"]["mode"] == "remote"  # the input is not modified
    assert merged(config) == config  # a second deploy changes nothing


def test_a_fresh_config_gets_the_workspace_and_the_extra_keys():
    config = merged({}, gateway_config={"models.providers.lab": {"baseUrl": "http://x/v1"},
                                        "agents.defaults.model.primary": "lab/m"})
    assert config["agents"]["defaults"] == {"workspace": "/home/wirebot/clawd", "model": {"primary": "lab/m"}}
    assert config["models"]["providers"]["lab"] == {"baseUrl": "http://x/v1"}
    assert json.loads(openclaw_config.render(config)) == config


@pytest.mark.parametrize("text,expected", [
    ("{ gateway: { mode: 'local' }, // JSON5\n}", "h:/c.json: not plain JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"gateway": "local"}', "'gateway' in 'gateway.mode' is not an object"),
])
def test_a_config_the_deploy_cannot_merge_is_refused_naming_the_file(text, expected):
    with pytest.raises(openclaw_config.ConfigFileError, match=expected):
        merged(openclaw_config.parse(text, "h:/c.json"))


def test_a_missing_or_empty_config_is_an_empty_one():
    assert openclaw_config.parse(None, "x") == {} and openclaw_config.parse("  \n", "x") == {}


# --- readiness, file sync, settings -----------------------------------------------------------------

def test_activation_and_the_deploy_wait_for_readyz_not_health():
    d = data()
    standby = agent_configs.standby(d, "10.0.0.3", "10.0.0.2", {"tunnel_id": "t", "account_tag": "a"})
    gateway = standby["activation"]["services"][1]
    assert gateway == {"unit": "openclaw-gateway", "health_url": "http://127.0.0.1:18789/readyz",
                       "ready_before_tunnel": False}  # awaited after the tunnel: the scoreboard serves first
    assert standby["activation"]["timeout_seconds"] >= d.gateway_ready_timeout_seconds
    command = wait_ready_command(d)
    assert ready_url(d) in command and '"$code" = 200' in command and "300s" in command


def run_wait(tmp_path, command, active="inactive", curl="000", state=None):
    """Run the deploy's readiness wait with stand-ins for curl and systemctl on PATH; (exit code, output,
    seconds)."""
    import os
    import subprocess
    import time
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "curl").write_text(f"#!/bin/sh\nprintf {curl}\n")
    (bin_dir / "systemctl").write_text(f"#!/bin/sh\necho {active}\n[ {active} = active ]\n")
    for stub in ("curl", "systemctl"):
        (bin_dir / stub).chmod(0o755)
    if state is not None:
        (tmp_path / "state.json").write_text(json.dumps({"state": state, "epoch": 3}))
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    started = time.monotonic()
    proc = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


def test_the_deploys_readiness_wait_ends_at_once_where_the_gateway_does_not_run(tmp_path):
    """Issue 10's lab finding: after an interrupted recovery the deploy planned with the standby ACTIVE,
    then waited 300 s for a gateway the (by then passive) standby's start gate kept inactive."""
    d = data(gateway_ready_timeout_seconds=30)
    primary = wait_ready_command(d)
    code, out, took = run_wait(tmp_path, primary, active="inactive")  # stopped: nothing will make it ready
    assert code == 1 and took < 5 and "not 200 within 30s (inactive)" in out
    assert run_wait(tmp_path, primary, active="active", curl="200")[0] == 0
    standby = wait_ready_command(d, str(tmp_path / "state.json"))
    for passive in ("STANDBY", "SUSPECT", "FENCE_BLOCKED"):
        code, out, took = run_wait(tmp_path, standby, active="inactive", state=passive)
        assert code == 0 and took < 5 and f"the standby is {passive}" in out
    code, out, _ = run_wait(tmp_path, standby, active="inactive", state="ACTIVE")  # meant to run: reported
    assert code == 1 and "not 200 within 30s" in out
    assert run_wait(tmp_path, standby, active="active", curl="200", state="ACTIVE")[0] == 0
    (tmp_path / "state.json").unlink()  # no state file: the gate refuses every start, nothing to wait for
    assert run_wait(tmp_path, standby)[0] == 0


def test_file_sync_skips_every_litestream_database_and_the_gateways_lock_files():
    d = data()
    replicator = agent_configs.replicator(d, "10.0.0.2", "10.0.0.3", {"tunnel_id": "t", "account_tag": "a"})
    exclude = replicator["file_sync"]["exclude"]
    db = d.gateway_database
    assert db in d.litestream_databases
    for path in (db, f"{db}-wal", f"{db}-shm", str(Path(db).with_name(".openclaw.sqlite-litestream")),
                 f"{d.gateway_state_dir}/tmp", f"{d.gateway_state_dir}/plugin-skills"):
        assert path in exclude
    args = filesync.exclude_args("/data/wirebot/users/verious", exclude)
    assert "--exclude=/openclaw/state/openclaw.sqlite-wal" in args and "--exclude=/openclaw/tmp" in args
    assert "--exclude=/openclaw/openclaw.json" not in args
    assert "--exclude=/openclaw/agents/*/agent/*.sqlite*" in args  # session DBs: neither copied nor streamed
    assert not [a for a in filesync.exclude_args("/home/wirebot/clawd", exclude)]
    argv = filesync.rsync_command("/data/wirebot/users/verious", "u", "h", "k", "kh", "/r", exclude=exclude)
    assert argv.index("--exclude=/openclaw/tmp") < argv.index("/data/wirebot/users/verious/")


def test_changes_to_excluded_files_do_not_trigger_a_sync():
    root = "/data/wirebot/users/verious"
    sync = filesync.FileSync([root], lambda src: ["true"], now=0.0,
                             exclude=[f"{root}/openclaw/state/openclaw.sqlite-wal", f"{root}/openclaw/tmp"])
    sync.paths[root].state = "clean"
    sync.exclude.append(f"{root}/openclaw/agents/*/agent/*.sqlite*")
    for path in (f"{root}/openclaw/state/openclaw.sqlite-wal", f"{root}/openclaw/tmp/openclaw-999/x.lock",
                 f"{root}/openclaw/agents/main/agent/openclaw-agent.sqlite-wal"):
        sync.route(Event(root, path, "modify"))
    assert sync.paths[root].state == "clean"
    sync.route(Event(root, f"{root}/openclaw/openclaw.json", "modify"))
    assert sync.paths[root].state == "pending"


@pytest.mark.parametrize("overrides,expected", [
    ({"litestream_databases": ["/data/wirebot/scoreboard/events.db"]}, "must list gateway_database"),
    ({"gateway_config_file": "/etc/openclaw.json"}, "gateway_config_file must lie in gateway_state_dir"),
    ({"gateway_state_dir": "/var/lib/openclaw", "gateway_config_file": "/var/lib/openclaw/o.json",
      "gateway_database": "/var/lib/openclaw/state/openclaw.sqlite",
      "litestream_databases": ["/var/lib/openclaw/state/openclaw.sqlite"]}, "must lie in one of filesync_paths"),
    ({"gateway_config": {"not a key": 1}}, "setting 'gateway_config' must be a mapping of dotted config keys"),
])
def test_gateway_settings_that_would_lose_its_state_are_refused(secrets_dir, overrides, expected):
    with pytest.raises(SettingError, match=expected):
        check("primary", {"secrets_dir": str(secrets_dir), **overrides}, "lab/inventory.py")


# --- the lab's bundle --------------------------------------------------------------------------------

def test_the_bundle_pins_what_real_hosts_install():
    d = data()
    assert gateway_bundle.locked_version("openclaw", "openclaw") == d.gateway_openclaw_version
    for arch in ("x64", "arm64"):
        assert gateway_bundle.locked_version("node", f"node-linux-{arch}").split(".")[0] == str(d.gateway_nodejs_major)
    lock = json.loads((gateway_bundle.SOURCE / "openclaw" / "package-lock.json").read_text())
    fetched = [p for name, p in lock["packages"].items() if name and not p.get("inBundle")]
    assert fetched and all(p.get("integrity", "").startswith("sha512-") for p in fetched)
    assert all(p.get("resolved", "https://registry.npmjs.org/").startswith("https://registry.npmjs.org/")
               for p in fetched)  # npm leaves out "resolved" for the default registry


def test_the_bundle_cache_is_keyed_by_the_pins_and_never_looks_like_a_rootfs(monkeypatch, tmp_path):
    name = gateway_bundle.cached_path().name
    assert name.startswith("gateway-bundle-openclaw-2026.9.6-node-24.") and not name.startswith("rootfs-")
    source = tmp_path / "src"
    for part in gateway_bundle.PARTS:
        (source / part).mkdir(parents=True)
        for file in ("package.json", "package-lock.json"):
            (source / part / file).write_bytes((gateway_bundle.SOURCE / part / file).read_bytes())
    monkeypatch.setattr(gateway_bundle, "SOURCE", source)
    before = gateway_bundle.cache_key()
    (source / "openclaw" / "package-lock.json").write_text("{}")
    assert gateway_bundle.cache_key() != before


def test_every_folder_down_to_the_gateways_databases_is_made_by_the_deploy():
    from tasks.provision.gateway import _state_folders

    d = data()
    state = d.gateway_state_dir
    assert _state_folders(d) == {state, f"{state}/state"}
    d.litestream_databases.append(f"{state}/agents/main/agent/a.sqlite")
    assert _state_folders(d) == {state, f"{state}/state", f"{state}/agents", f"{state}/agents/main",
                                 f"{state}/agents/main/agent"}

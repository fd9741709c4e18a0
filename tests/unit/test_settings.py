"""Settings: every bad or missing one stops the run before any connection, naming the key and the file."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from wirebot import filesync

from lab import secrets as lab_secrets
from lab import settings as lab_settings
from tasks import operator_settings
from tasks.provision import agent_configs, paths
from tasks.provision.secrets_check import SecretsError, check_all
from tasks.settings_check import GROUP_DATA, SettingError, check

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def secrets_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(lab_settings, "SECRETS_DIR", tmp_path / "secrets")
    return lab_secrets.ensure()


def test_group_data_as_shipped_is_valid(secrets_dir):
    for role in ("primary", "standby"):
        values = check(role, {"secrets_dir": str(secrets_dir)}, "host data")
        assert values["heartbeat_interval_seconds"] == 30 and values["heartbeat_miss_threshold"] == 3


@pytest.mark.parametrize("key,value,expected", [
    ("heartbeat_interval_seconds", "30s", "must be a positive whole number"),
    ("agent_port", 70000, "must be a port number"),
    ("filesync_paths", ["relative/path"], "must be a non-empty list of absolute paths"),
    ("filesync_paths", ["/home/wirebot/my notes"], "absolute paths of plain names"),
    ("filesync_paths", ["/home/wirebot/$(id)"], "absolute paths of plain names"),
    ("cloudflared_install", "curl-pipe-bash", "must be 'repo' or 'none'"),
    ("litestream_wheel_sha256", {"x86_64": "abc"}, "sha256"),
    ("witness_public_url", "wins.wirebot.chat", "must be an http(s) URL"),
])
def test_a_malformed_setting_names_the_key_and_the_file(secrets_dir, key, value, expected):
    with pytest.raises(SettingError) as error:
        check("primary", {"secrets_dir": str(secrets_dir), key: value}, "lab/inventory.py")
    assert str(error.value).startswith(f"lab/inventory.py: setting '{key}'")
    assert expected in str(error.value)


@pytest.mark.parametrize("path, overlaps", [
    ("/run/wirebot", "/run/wirebot (wirebot_run_dir)"),
    ("/run", "/run/wirebot (wirebot_run_dir)"),
    ("/etc/wirebot/secrets", "/etc/wirebot (wirebot_config_dir)"),
    ("/etc", "/etc/wirebot (wirebot_config_dir)"),
    ("/etc/cloudflared", "/etc/cloudflared (cloudflared_config)"),
    ("/root", "/root/.ssh (replica_key)"),
    ("/var/lib/wirebot-replica/files/x", "/var/lib/wirebot-replica (replica_root)"),
    ("/", "/run/wirebot (wirebot_run_dir)"),
])
def test_file_sync_never_carries_a_secret(secrets_dir, path, overlaps):
    with pytest.raises(SettingError) as error:
        check("primary", {"secrets_dir": str(secrets_dir), "filesync_paths": ["/data/wirebot/bin", path]},
              "lab/inventory.py")
    assert str(error.value) == (f"lab/inventory.py: filesync_paths entry {path!r} overlaps {overlaps}: file sync "
                                "never carries secrets, keys or the replica itself")


@pytest.mark.parametrize("data", [{"replica_files_user": "wirebot-repl"}, {"replica_user": "root"},
                                  {"replica_files_user": "wirebot"}])
def test_the_replication_accounts_are_their_own(secrets_dir, data):
    with pytest.raises(SettingError, match="must be two accounts of their own"):
        check("standby", {"secrets_dir": str(secrets_dir), **data}, "x.py")


@pytest.mark.parametrize("name, text, expected", [
    ("discord-webhook.url", "not a url\n", "expected one http(s) URL"),
    ("cloudflare-api-token", "two words\n", "expected one token, no spaces"),
    ("cloudflare-api-token", "\n", "expected one token, no spaces"),
    ("gateway.env", "OPENAI_API_KEY=x\nnot an assignment\n", "expected KEY=value lines"),
])
def test_a_malformed_runtime_secret_names_the_file(secrets_dir, name, text, expected):
    (secrets_dir / name).write_text(text)
    with pytest.raises(SettingError) as error:
        check("standby", {"secrets_dir": str(secrets_dir)}, "x.py")
    assert str(error.value) == f"{secrets_dir / name}: {expected}"


def test_runtime_secrets_are_the_ones_present(secrets_dir):
    from tasks.provision.secrets_check import runtime_secrets

    names = {"agent-hmac.key": "agent-hmac.key", "discord-webhook.url": "discord-webhook.url",
             "cloudflare-api-token": "cloudflare-api-token", "gateway.env": "gateway.env"}
    (secrets_dir / "cloudflare-api-token").unlink()
    (secrets_dir / "gateway.env").write_text("# model keys\n\nA=1\n")
    assert runtime_secrets(str(secrets_dir), names, ["agent-hmac.key"]) == [
        "agent-hmac.key", "discord-webhook.url", "gateway.env"]


def test_a_clock_window_shorter_than_the_interval_is_refused(secrets_dir):
    with pytest.raises(SettingError, match="heartbeat_clock_window_seconds must be larger"):
        check("standby", {"secrets_dir": str(secrets_dir), "heartbeat_clock_window_seconds": 10}, "x.py")


def test_a_missing_setting_names_group_data(secrets_dir, monkeypatch, tmp_path):
    group = tmp_path / "group_data"
    group.mkdir()
    text = (GROUP_DATA / "all.py").read_text().replace("heartbeat_miss_threshold = 3", "")
    (group / "all.py").write_text(text)
    (group / "primary.py").write_text((GROUP_DATA / "primary.py").read_text())
    monkeypatch.setattr("tasks.settings_check.GROUP_DATA", group)
    with pytest.raises(SettingError, match="setting 'heartbeat_miss_threshold' is missing"):
        check("primary", {"secrets_dir": str(secrets_dir)}, "x.py")


def test_secrets_problems_name_the_file(secrets_dir):
    config = secrets_dir / "cloudflared" / "wirebot.yml"
    config.write_text(config.read_text().replace("- service: http_status:404\n", ""))
    with pytest.raises(SecretsError, match=f"{config}: the last ingress rule must match all URLs"):
        check_all(str(secrets_dir))
    (secrets_dir / "agent-hmac.key").write_text("short\n")
    with pytest.raises(SecretsError, match="agent-hmac.key: expected at least 64 hex characters"):
        check_all(str(secrets_dir))


def test_a_tunnel_id_mismatch_is_refused(secrets_dir):
    credentials = secrets_dir / "cloudflared" / "credentials.json"
    other_tunnel = "11111111-2222-4333-8444-555555555555"
    credentials.write_text(credentials.read_text().replace(lab_settings.TUNNEL_ID, other_tunnel))
    with pytest.raises(SecretsError, match="does not match 'tunnel'"):
        check_all(str(secrets_dir))


def test_the_real_inventory_without_addresses_says_what_to_set(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIREBOT_")}
    env["WIREBOT_SETTINGS"] = str(tmp_path / "none.yml")
    pyinfra = str(Path(sys.executable).with_name("pyinfra"))
    result = subprocess.run([pyinfra, "-y", "inventory.py", "deploy.py"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert ("no address for the primary host: set WIREBOT_PRIMARY_ADDRESS, or 'primary: {address: ...}' "
            f"in {tmp_path / 'none.yml'}") in result.stdout + result.stderr
    assert "Connecting to hosts" not in result.stdout


def test_operator_settings_round_trip_keeps_other_keys(tmp_path, monkeypatch):
    path = tmp_path / "settings.yml"
    path.write_text("primary: {address: 203.0.113.10, ssh_user: admin}\nsecrets_dir: /srv/secrets\n")
    operator_settings.save_address("standby", "203.0.113.20", path)
    data = operator_settings.load(path)
    assert data["primary"] == {"address": "203.0.113.10", "ssh_user": "admin"}
    assert data["standby"]["address"] == "203.0.113.20" and data["secrets_dir"] == "/srv/secrets"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    monkeypatch.setenv("WIREBOT_STANDBY_ADDRESS", "198.51.100.9")
    assert operator_settings.host_settings("standby", data, path)["address"] == "198.51.100.9"


def test_malformed_operator_settings_are_refused(tmp_path):
    path = tmp_path / "settings.yml"
    path.write_text("primary: [not, a, mapping]\n")
    with pytest.raises(operator_settings.SettingsError, match="'primary' must be a mapping"):
        operator_settings.load(path)


class Data(dict):
    __getattr__ = dict.__getitem__


def _data(role="primary"):
    import runpy
    values = {}
    for name in ("all", role):
        values.update({k: v for k, v in runpy.run_path(str(GROUP_DATA / f"{name}.py")).items()
                       if not k.startswith("_")})
    return Data(values)


def test_agent_configs_agree_on_paths_and_secrets():
    tunnel = {"tunnel_id": "t", "account_tag": "a"}
    replicator = agent_configs.replicator(_data("primary"), "10.0.0.2", "10.0.0.3", tunnel)
    standby = agent_configs.standby(_data("standby"), "10.0.0.3", "10.0.0.2", tunnel)
    assert replicator["standby"]["agent_url"] == "https://10.0.0.3:8300"
    assert standby["heartbeat"]["allowed_sources"] == ["10.0.0.2"]
    assert (replicator["node_name"], replicator["standby"]["node_name"]) == (standby["heartbeat"]["sender"],
                                                                             standby["node_name"])
    assert replicator["tls"] == standby["tls"] and replicator["control"] == standby["control"]
    assert replicator["tls"]["key_file"].startswith("/etc/wirebot/agent-keys/")
    assert replicator["secrets"] == standby["secrets"]
    assert replicator["litestream"]["dbs"] == standby["activation"]["dbs"]
    # file sync's destination, as the rsync account sees it (its root is the standby's replica root), is
    # where the standby's activation reads it
    view = filesync.remote_path(replicator["standby"]["replica_root"], "/home/wirebot/clawd")
    assert standby["replica"]["root"] + view == "/var/lib/wirebot-replica/files/home/wirebot/clawd/"
    assert replicator["standby"]["user"] == "wirebot-files"
    assert standby["witness"]["self_origin_ip"] == "10.0.0.3"
    assert replicator["witness"]["self_origin_ip"] == "10.0.0.2"


def test_replica_paths_carry_the_epoch_and_the_path_below_the_data_root():
    assert paths.replica_dir("/r", 3, "/data/wirebot/scoreboard/events.db", "/data/wirebot") == \
        "/r/litestream/epoch-3/scoreboard/events.db"
    assert paths.replica_dir("/r", 1, "/srv/other.db", "/data/wirebot") == "/r/litestream/epoch-1/srv/other.db"


def test_litestream_names_the_same_replica_dir_from_inside_its_chroot():
    for db in ("/data/wirebot/scoreboard/events.db", "/data/wirebot/scoreboard/tenants", "/srv/other.db"):
        inside = paths.litestream_replica_path("/var/lib/wirebot-replica", 4, db, "/data/wirebot")
        assert inside.startswith("/litestream/epoch-4/")
        assert "/var/lib/wirebot-replica" + inside == paths.replica_dir("/var/lib/wirebot-replica", 4, db,
                                                                        "/data/wirebot")
    assert paths.replica_view("/r", "/r") == "/"
    assert paths.replica_view("/r/.hidden", "/r") == "/.hidden"


def test_host_addresses_must_be_ip_addresses(tmp_path):
    path = tmp_path / "settings.yml"
    path.write_text("primary: {address: wirebot.example.com}\n")
    with pytest.raises(operator_settings.SettingsError, match="must be an IP address"):
        operator_settings.host_settings("primary", path=path)


@pytest.mark.parametrize("changes", [
    {"fencing_lease_seconds": 30},  # not longer than one interval: one late heartbeat stops the service
    {"fencing_lease_seconds": 61},  # ends less than one interval before the standby's detection (90 s)
    {"fencing_lease_seconds": 90},
    {"heartbeat_miss_threshold": 2, "fencing_lease_seconds": 60},
    {"heartbeat_interval_seconds": 1, "fencing_lease_seconds": 3},  # the lab's 1 s x 3 allows only 2
])
def test_fencing_timings_that_break_the_relations_are_refused(secrets_dir, changes):
    with pytest.raises(SettingError, match="fencing_lease_seconds|heartbeat_miss_threshold must be at least 2"):
        check("primary", {"secrets_dir": str(secrets_dir), **changes}, "x.py")


@pytest.mark.parametrize("changes", [{}, {"heartbeat_interval_seconds": 1, "fencing_lease_seconds": 2},
                                     {"fencing_lease_enabled": False, "fencing_lease_seconds": 5}])
def test_fencing_timings_that_hold_are_accepted(secrets_dir, changes):
    check("standby", {"secrets_dir": str(secrets_dir), **changes}, "x.py")


@pytest.mark.parametrize("key,value", [("firewall_ssh_sources", ["not-an-address"]),
                                       ("firewall_inbound", [{"port": 7845}]),
                                       ("fencing_tunnel_ports", [])])
def test_malformed_firewall_settings_are_refused(secrets_dir, key, value):
    with pytest.raises(SettingError, match=f"setting '{key}'"):
        check("primary", {"secrets_dir": str(secrets_dir), key: value}, "x.py")

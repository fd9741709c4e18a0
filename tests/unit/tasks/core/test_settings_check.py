"""Settings: every bad or missing one stops the run before any connection, naming the key and the file."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from wirebot.primary import filesync

from lab import secrets as lab_secrets
from lab import settings as lab_settings
from tasks.core import operator_settings, paths
from tasks.core.secrets import SecretsError, check_all
from tasks.core.settings_check import GROUP_DATA, SettingError, check
from tasks.provision import agent_configs

ROOT = Path(__file__).resolve().parents[4]


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
    from tasks.core.secrets import runtime_secrets

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
    text = (GROUP_DATA / "all.py").read_text() + "\ndel heartbeat_miss_threshold\n"  # a site file lost it
    (group / "all.py").write_text(text)
    (group / "primary.py").write_text((GROUP_DATA / "primary.py").read_text())
    monkeypatch.setattr("tasks.core.settings_check.GROUP_DATA", group)
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
    {"fencing_lease_seconds": 5},  # under 3 lease beats (renew 2 s): two late beats stop the service
    {"fencing_lease_seconds": 61},  # ends less than one interval before the heartbeat detector (90 s)
    {"fencing_lease_seconds": 90},
    {"heartbeat_miss_threshold": 2, "fencing_lease_seconds": 60},
    {"heartbeat_interval_seconds": 1, "fencing_lease_seconds": 3, "fencing_lease_renew_seconds": 0.5},  # 1 s x 3: 2
    {"heartbeat_interval_seconds": 1, "fencing_lease_seconds": 2},  # renew 2 s > interval 1 s
    {"edge_probe_failures": 1},  # one failed probe is never a suspicion
])
def test_fencing_timings_that_break_the_relations_are_refused(secrets_dir, changes):
    refused = "fencing_lease_seconds|fencing_lease_renew_seconds|must be at least 2|edge_probe_failures"
    with pytest.raises(SettingError, match=refused):
        check("primary", {"secrets_dir": str(secrets_dir), **changes}, "x.py")


@pytest.mark.parametrize("changes", [{}, {"heartbeat_interval_seconds": 1, "fencing_lease_seconds": 2,
                                          "fencing_lease_renew_seconds": 0.5, "edge_probe_interval_seconds": 0.5,
                                          "edge_probe_failures": 2},
                                     {"fencing_lease_enabled": False, "fencing_lease_seconds": 5}])
def test_fencing_timings_that_hold_are_accepted(secrets_dir, changes):
    check("standby", {"secrets_dir": str(secrets_dir), **changes}, "x.py")


@pytest.mark.parametrize("key,value", [("firewall_ssh_sources", ["not-an-address"]),
                                       ("firewall_inbound", [{"port": 7845}]),
                                       ("fencing_tunnel_ports", [])])
def test_malformed_firewall_settings_are_refused(secrets_dir, key, value):
    with pytest.raises(SettingError, match=f"setting '{key}'"):
        check("primary", {"secrets_dir": str(secrets_dir), key: value}, "x.py")
# --- the metrics reader's certificate (secrets_dir/prometheus/client.crt) and agent_metrics_sources ---------

def _certificate(path, *, issuer=None, usage="clientAuth", days=(-1, 365), key=None, with_key=False):
    """A certificate written to ``path``: self-signed unless ``issuer`` (a key) signs it."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wirebot-prometheus")])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now + datetime.timedelta(days=days[0]))
               .not_valid_after(now + datetime.timedelta(days=days[1])))
    if usage:
        oid = {"clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH, "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH}[usage]
        builder = builder.add_extension(x509.ExtendedKeyUsage([oid]), critical=False)
    text = builder.sign(issuer or key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    if with_key:
        text += key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text)
    return path


def test_the_metrics_reader_certificate_made_as_documented_passes(secrets_dir):
    from tasks.core.secrets import metrics_reader_cert

    assert metrics_reader_cert(str(secrets_dir), required=True) == secrets_dir / "prometheus" / "client.crt"
    assert "PRIVATE KEY" not in (secrets_dir / "prometheus" / "client.crt").read_text()  # lab: key beside, not in
    (secrets_dir / "prometheus" / "client.crt").unlink()
    assert metrics_reader_cert(str(secrets_dir)) is None and check_all(str(secrets_dir))
    with pytest.raises(SecretsError, match="missing: agent_metrics_sources is set.*openssl req"):
        metrics_reader_cert(str(secrets_dir), required=True)


@pytest.mark.parametrize("kind,expected", [
    ("with_key", "holds a private key"),
    ("signed_by_another", "must be self-signed"),
    ("expired", "not valid now"),
    ("server_only", "does not allow clientAuth"),
    ("two", "exactly one PEM certificate"),
    ("garbage", "not a valid PEM certificate"),
])
def test_a_bad_metrics_reader_certificate_is_refused_before_anything_changes(secrets_dir, kind, expected):
    from cryptography.hazmat.primitives.asymmetric import ec

    path = secrets_dir / "prometheus" / "client.crt"
    if kind == "with_key":
        _certificate(path, with_key=True)
    elif kind == "signed_by_another":
        _certificate(path, issuer=ec.generate_private_key(ec.SECP256R1()))
    elif kind == "expired":
        _certificate(path, days=(-30, -1))
    elif kind == "server_only":
        _certificate(path, usage="serverAuth")
    elif kind == "two":
        text = _certificate(path).read_text()
        path.write_text(text + text)
    else:
        path.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
    with pytest.raises(SecretsError, match=expected) as error:
        check_all(str(secrets_dir))  # present: checked even while agent_metrics_sources is empty
    assert str(path) in str(error.value)
    with pytest.raises(SettingError, match=expected):
        check("standby", {"secrets_dir": str(secrets_dir), "agent_metrics_sources": ["198.51.100.7"]}, "x.py")


def test_metrics_sources_must_be_addresses_and_need_the_certificate(secrets_dir):
    for bad in (["prometheus.example"], "198.51.100.7", ["198.51.100.0/24"]):
        with pytest.raises(SettingError, match="'agent_metrics_sources' must be a list of IP addresses"):
            check("primary", {"secrets_dir": str(secrets_dir), "agent_metrics_sources": bad}, "settings.yml")
    check("primary", {"secrets_dir": str(secrets_dir), "agent_metrics_sources": ["198.51.100.7", "2001:db8::7"]},
          "settings.yml")
    (secrets_dir / "prometheus" / "client.crt").unlink()
    with pytest.raises(SettingError, match="prometheus/client.crt: missing"):
        check("primary", {"secrets_dir": str(secrets_dir), "agent_metrics_sources": ["198.51.100.7"]}, "x.py")


def test_agent_configs_carry_the_metrics_reader_only_when_sources_are_set():
    tunnel = {"tunnel_id": "t", "account_tag": "a"}
    primary, standby = _data("primary"), _data("standby")
    assert "metrics" not in agent_configs.standby(standby, "10.0.0.3", "10.0.0.2", tunnel)
    assert "metrics" not in agent_configs.replicator(primary, "10.0.0.2", "10.0.0.3", tunnel)
    for data in (primary, standby):
        data["agent_metrics_sources"] = ["198.51.100.7", "2001:DB8:0::7"]
    for config in (agent_configs.standby(standby, "10.0.0.3", "10.0.0.2", tunnel),
                   agent_configs.replicator(primary, "10.0.0.2", "10.0.0.3", tunnel)):
        assert config["metrics"] == {"sources": ["198.51.100.7", "2001:db8::7"],  # as the agent sees clients
                                     "cert_file": "/etc/wirebot/agent-keys/metrics-reader.crt"}


def test_inventory_passes_metrics_sources_from_the_operator_settings(tmp_path, secrets_dir):
    settings_file = tmp_path / "settings.yml"
    settings_file.write_text(f"primary: {{address: 10.0.0.2}}\nstandby: {{address: 10.0.0.3}}\n"
                             f"secrets_dir: {secrets_dir}\nmetrics_sources: [198.51.100.7]\n")
    script = ("import runpy; ns = runpy.run_path('inventory.py'); "
              "print(ns['primary'][0][1]['agent_metrics_sources'], ns['standby'][0][1]['agent_metrics_sources'])")
    env = dict(os.environ, WIREBOT_SETTINGS=str(settings_file))
    for name in ("WIREBOT_PRIMARY_ADDRESS", "WIREBOT_STANDBY_ADDRESS", "WIREBOT_SECRETS_DIR"):
        env.pop(name, None)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.stdout.strip() == "['198.51.100.7'] ['198.51.100.7']", result.stderr

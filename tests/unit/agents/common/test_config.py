"""wirebot.common.config: errors name the key and the file; secrets are read but never echoed."""

import pytest
from wirebot.common import config
from wirebot.common.config import ConfigError


def test_load_yaml_missing_file(tmp_path):
    path = str(tmp_path / "nope.yml")
    with pytest.raises(ConfigError) as info:
        config.load_yaml(path)
    assert path in str(info.value)


def test_load_yaml_bad_yaml(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError) as info:
        config.load_yaml(str(path))
    assert str(path) in str(info.value) and "invalid YAML" in str(info.value)


def test_load_yaml_not_a_mapping(tmp_path):
    path = tmp_path / "list.yml"
    path.write_text("- a\n")
    with pytest.raises(ConfigError) as info:
        config.load_yaml(str(path))
    assert "mapping" in str(info.value)


def test_load_yaml_empty_is_empty_mapping(tmp_path):
    path = tmp_path / "e.yml"
    path.write_text("")
    assert config.load_yaml(str(path)) == {}


CFG = {"heartbeat": {"interval_seconds": 30, "ratio": 0.5, "name": "x", "flag": True}, "top": [1]}


def test_get_values():
    assert config.get(CFG, "heartbeat.interval_seconds", int, "f.yml") == 30
    value = config.get(CFG, "heartbeat.interval_seconds", float, "f.yml")
    assert value == 30.0 and isinstance(value, float)
    assert config.get(CFG, "heartbeat.ratio", float, "f.yml") == 0.5
    assert config.get(CFG, "top", list, "f.yml") == [1]
    assert config.get(CFG, "heartbeat.missing", int, "f.yml", default=7) == 7
    assert config.get(CFG, "nope.deeper", str, "f.yml", default=None) is None
    assert config.get(CFG, "heartbeat.name", (str, int), "f.yml") == "x"


def test_get_required_names_key_and_file():
    with pytest.raises(ConfigError) as info:
        config.get(CFG, "witness.public_url", str, "/etc/wirebot/standby.yml")
    assert str(info.value) == "/etc/wirebot/standby.yml: witness.public_url is required"


def test_get_wrong_type_names_key_file_and_value():
    with pytest.raises(ConfigError) as info:
        config.get(CFG, "heartbeat.name", int, "/etc/x.yml")
    message = str(info.value)
    assert message.startswith("/etc/x.yml: heartbeat.name: expected an integer")
    assert "'x'" in message


def test_get_bool_is_not_an_int():
    with pytest.raises(ConfigError):
        config.get(CFG, "heartbeat.flag", int, "f.yml")
    assert config.get(CFG, "heartbeat.flag", bool, "f.yml") is True


def test_get_through_non_mapping():
    with pytest.raises(ConfigError) as info:
        config.get({"a": 5}, "a.b", int, "f.yml")
    assert "a.b is required" in str(info.value)


def test_read_secret(tmp_path):
    path = tmp_path / "s"
    path.write_text("  s3cret\n")
    assert config.read_secret(str(path)) == "s3cret"
    assert config.read_secret(str(tmp_path / "absent")) is None
    assert config.read_secret(None) is None
    with pytest.raises(ConfigError) as info:
        config.read_secret(str(tmp_path / "absent"), required=True)
    assert "absent" in str(info.value)


def test_read_secret_never_echoes_contents(tmp_path):
    path = tmp_path / "empty"
    path.write_text("   \n")
    assert config.read_secret(str(path)) is None
    with pytest.raises(ConfigError) as info:
        config.read_secret(str(path), required=True)
    assert "empty" in str(info.value)


# standby.yml ------------------------------------------------------------------------------------------
def _site(tmp_path):
    from .. import agenttest

    class _Nop:
        def __call__(self):
            class S:
                def set(self, *a):
                    pass

                def url(self, path=""):
                    return "http://127.0.0.1:9" + path
            return S()

    class _Fake:
        path = "/bin/true"

    return agenttest.Site(tmp_path, _Nop(), _Fake())


def test_standby_config_loads_with_defaults(tmp_path):

    site = _site(tmp_path)
    del site.cfg["activation"]["retry_seconds"]
    settings = site.settings()
    assert settings["activation"]["retry_seconds"] == 10.0
    assert settings["primary"]["ssh_binary"] == site.ssh
    assert settings["heartbeat_sender"] == "primary"
    assert settings["channel"]["control_socket"] == site.cfg["control"]["socket"]
    assert (settings["channel"]["read_timeout"], settings["channel"]["max_connections"]) == (10.0, 32)


@pytest.mark.parametrize("mutate,message", [
    (lambda c: c.pop("data_root"), "data_root is required"),
    (lambda c: c["heartbeat"].update(interval_seconds="thirty"),
     "heartbeat.interval_seconds: expected a number, got 'thirty'"),
    (lambda c: c["heartbeat"].pop("allowed_sources"), "heartbeat.allowed_sources is required"),
    (lambda c: c["primary"].pop("fence_ssh_key"), "primary.fence_ssh_key is required"),
    (lambda c: c["witness"].pop("public_url"), "witness.public_url is required"),
    (lambda c: c["activation"]["tunnel"].pop("ready_url"), "activation.tunnel.ready_url is required"),
    (lambda c: c["activation"]["services"][1].pop("health_url"), "activation.services[1].health_url is required"),
    (lambda c: c["activation"]["dbs"].append("/elsewhere/x.db"), "activation.dbs[3]: /elsewhere/x.db is not under"),
    (lambda c: c["activation"].update(dbs=["relative.db"]), "activation.dbs[0]: expected an absolute path"),
    (lambda c: c["heartbeat"].update(miss_threshold=0), "heartbeat.miss_threshold >= 1"),
    (lambda c: c["tls"].pop("peer_cert_file"), "tls.peer_cert_file is required"),
    (lambda c: c["secrets"].pop("control_key_file"), "secrets.control_key_file is required"),
    (lambda c: c["control"].update(socket="relative.sock"), "control.socket: expected an absolute path"),
    (lambda c: c["http"].update(max_connections=1), "http.max_connections >= 2"),
])
def test_standby_config_errors_name_key_and_file(tmp_path, mutate, message):
    site = _site(tmp_path)
    mutate(site.cfg)
    with pytest.raises(ConfigError) as info:
        site.settings()
    assert str(info.value).startswith(site.config_path + ": ") and message in str(info.value)

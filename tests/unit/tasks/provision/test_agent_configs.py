"""The agents' configs as the deploy renders them are exactly what the agents' strict loaders accept: from the
shipped group_data and from the lab inventory; an unknown or a missing key is refused naming file and key;
the reference configs in docs/reference/ are the generated ones."""

import copy
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from wirebot.common import config, config_keys
from wirebot.primary import replicator
from wirebot.standby import agent_config as standby_config

from lab import secrets as lab_secrets
from lab import settings as lab_settings
from tasks.core.settings_check import check
from tasks.provision import agent_reference
from tasks.provision.agent_reference import Data, leaves

ROOT = Path(__file__).resolve().parents[4]
KEY_HEX = "ab" * 32
TUNNEL = {"tunnel_id": "t", "account_tag": "a"}
LOADERS = {"replicator.yml": replicator.load_config, "standby.yml": standby_config.load}


@pytest.fixture
def secrets_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(lab_settings, "SECRETS_DIR", tmp_path / "secrets")
    return lab_secrets.ensure()


def _write(tmp_path, name, cfg):
    """`cfg` as the agent finds it on the host, its key files pointed at test files (the rest verbatim)."""
    cfg = copy.deepcopy(cfg)
    for key in ("hmac_key_file", "control_key_file"):
        if key not in cfg["secrets"]:
            continue
        path = tmp_path / key
        path.write_text(KEY_HEX + "\n")
        cfg["secrets"][key] = str(path)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _shipped(name, metrics=False):
    role = "primary" if name == "replicator.yml" else "standby"
    values = {}
    for group in ("all", role):
        values.update({k: v for k, v in runpy.run_path(str(ROOT / "group_data" / f"{group}.py")).items()
                       if not k.startswith("_")})
    if metrics:
        values["agent_metrics_sources"] = ["198.51.100.7"]
    return agent_reference.render_config(name, values)


def _lab(name, secrets_dir):
    inventory = runpy.run_path(str(ROOT / "lab" / "inventory.py"))
    (primary, primary_data), = inventory["primary"]
    (standby, standby_data), = inventory["standby"]
    primary_data, standby_data = dict(primary_data, secrets_dir=str(secrets_dir)), dict(
        standby_data, secrets_dir=str(secrets_dir))
    from tasks.provision import agent_configs
    if name == "replicator.yml":
        return agent_configs.replicator(Data(check("primary", primary_data, "lab/inventory.py")), primary, standby,
                                        TUNNEL)
    return agent_configs.standby(Data(check("standby", standby_data, "lab/inventory.py")), standby, primary, TUNNEL)


@pytest.mark.parametrize("name", ["replicator.yml", "standby.yml"])
@pytest.mark.parametrize("metrics", [False, True])
def test_the_shipped_settings_render_configs_the_agents_load(tmp_path, name, metrics):
    LOADERS[name](_write(tmp_path, name, _shipped(name, metrics)))


@pytest.mark.parametrize("name", ["replicator.yml", "standby.yml"])
def test_the_lab_inventory_renders_configs_the_agents_load(tmp_path, secrets_dir, name):
    cfg = _lab(name, secrets_dir)
    LOADERS[name](_write(tmp_path, name, cfg))
    if name == "replicator.yml":  # the lab's fast timings reach the agents
        assert cfg["heartbeat"] == {"interval_seconds": 1, "clock_window_seconds": 60}


@pytest.mark.parametrize("name", ["replicator.yml", "standby.yml"])
def test_every_rendered_key_is_known_and_every_required_key_rendered(name):
    spec = config_keys.FILES[name]
    rendered = set(leaves(_shipped(name, metrics=True)))
    assert rendered <= set(spec), rendered - set(spec)
    assert {key for key, (required, _) in spec.items() if required} <= rendered


@pytest.mark.parametrize("name", ["replicator.yml", "standby.yml"])
def test_each_missing_required_key_is_refused_naming_file_and_key(tmp_path, name):
    cfg = _shipped(name)
    for key, (required, _) in config_keys.FILES[name].items():
        if not required or "[]." in key:
            continue
        broken = copy.deepcopy(cfg)
        *parents, last = key.split(".")
        node = broken
        for part in parents:
            node = node[part]
        del node[last]
        path = _write(tmp_path, name, broken)
        with pytest.raises(config.ConfigError) as error:
            LOADERS[name](path)
        assert str(error.value) == f"{path}: {key} is required (missing)"


@pytest.mark.parametrize("name, where, typo, expected", [
    ("replicator.yml", "heartbeat", "intervall_seconds", "heartbeat.intervall_seconds (did you mean "
                                                         "heartbeat.interval_seconds?)"),
    ("standby.yml", "heartbeat", "miss_treshold", "heartbeat.miss_treshold (did you mean heartbeat.miss_threshold?)"),
    ("standby.yml", None, "clock_window_seconds", "clock_window_seconds"),  # the replicator's old top-level key
    ("standby.yml", "activation", "services_extra", "activation.services_extra"),
])
def test_an_unknown_key_is_refused_naming_file_and_key(tmp_path, name, where, typo, expected):
    cfg = _shipped(name)
    (cfg[where] if where else cfg)[typo] = 1
    path = _write(tmp_path, name, cfg)
    with pytest.raises(config.ConfigError) as error:
        LOADERS[name](path)
    assert str(error.value).startswith(f"{path}: unknown key {expected}")


def test_an_unknown_key_in_a_list_item_is_refused(tmp_path):
    cfg = _shipped("standby.yml")
    cfg["activation"]["services"][1]["health_ur"] = "http://x"
    path = _write(tmp_path, "standby.yml", cfg)
    with pytest.raises(config.ConfigError, match=r"unknown key activation.services\[\].health_ur \(did you mean"):
        standby_config.load(path)


@pytest.mark.parametrize("module, name", [("wirebot.primary.replicator", "replicator.yml"),
                                          ("wirebot.standby.agent", "standby.yml")])
def test_the_agent_exits_2_with_the_file_and_key_before_it_starts(tmp_path, module, name):
    cfg = _shipped(name)
    cfg["heartbeat"]["interval_second"] = 30
    path = _write(tmp_path, name, cfg)
    result = subprocess.run([sys.executable, "-m", module, "--config", path], capture_output=True, text=True,
                            timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT / "files" / "agents")))
    assert result.returncode == 2
    assert f"{path}: unknown key heartbeat.interval_second (did you mean heartbeat.interval_seconds?)" in \
        result.stderr
    assert '"event": "config-error"' in result.stdout + result.stderr or "config-error" in result.stdout + \
        result.stderr


@pytest.mark.parametrize("name", ["replicator.yml", "standby.yml"])
def test_the_reference_configs_are_the_generated_ones_and_pass_the_key_check(name):
    path = ROOT / "docs" / "reference" / name
    assert path.read_text() == agent_reference.render(name), (
        f"{path} is stale: run .venv/bin/python -m tasks.provision.agent_reference")
    config.check_keys(yaml.safe_load(path.read_text()), config_keys.FILES[name], str(path))
    assert "(setting: heartbeat_interval_seconds)" in path.read_text()

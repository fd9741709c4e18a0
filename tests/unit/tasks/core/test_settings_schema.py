"""The settings schema (tasks/core/settings_schema.py) is true: every key's readers are the modules that read it,
nothing is dead, the deploys' "Reads:" lists and README's table agree with it, group_data derives its paths,
and the check refuses unknown keys, wrong kinds and ranges naming where the value came from."""

import ast
import re
from pathlib import Path

import pytest

from lab import secrets as lab_secrets
from lab import settings as lab_settings
from tasks.core import settings_schema
from tasks.core.settings_check import SettingError, check, check_pyinfra_hosts
from tasks.core.settings_schema import SETTINGS, coerce
from tasks.provision import agent_reference

ROOT = Path(__file__).resolve().parents[4]
TASKS = ROOT / "tasks"
# they define or document settings
NOT_READERS = {"core/settings_schema", "provision/agent_reference"}


def _module(path: Path) -> str:
    name = str(path.relative_to(TASKS).with_suffix(""))
    return name[: -len("/__init__")] if name.endswith("/__init__") else name


def actual_readers() -> dict:
    """setting -> the modules under tasks/ naming it (an attribute or a string), agent_configs split into the
    agent config files the setting reaches."""
    readers = {name: set() for name in SETTINGS}
    for path in sorted(TASKS.rglob("*.py")):
        module = _module(path)
        if module in NOT_READERS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            name = node.attr if isinstance(node, ast.Attribute) else (
                node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None)
            if name in readers and module != "provision/agent_configs":
                readers[name].add(module)
    for file in ("replicator.yml", "standby.yml"):
        for keys in agent_reference.sources(file).values():
            for key in keys:
                readers[key].add(f"agent:{file}")
    return readers


def test_every_setting_names_exactly_the_modules_that_read_it():
    actual = actual_readers()
    wrong = {name: {"schema": sorted(s.readers.split()), "code": sorted(actual[name])}
             for name, s in SETTINGS.items() if set(s.readers.split()) != actual[name]}
    assert wrong == {}, "fix `readers` in tasks/core/settings_schema.py"


def test_no_setting_is_dead():
    assert [name for name, readers in actual_readers().items() if not readers] == []


def _reads_list(doc: str) -> set:
    text = doc.split("Reads:", 1)[1]
    return set(re.findall(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b", text)) & set(SETTINGS)


def test_each_deploys_reads_list_is_the_settings_it_reads():
    actual = actual_readers()
    checked = 0
    for path in sorted((TASKS / "provision").glob("*/__init__.py")):
        module = _module(path)
        tree = ast.parse(path.read_text())
        docs = [ast.get_docstring(node) or "" for node in ast.walk(tree)
                if isinstance(node, ast.FunctionDef) and "Reads:" in (ast.get_docstring(node) or "")]
        if not docs:
            continue
        checked += 1
        listed = set().union(*(_reads_list(doc) for doc in docs))
        reads = {name for name, modules in actual.items() if module in modules
                 or any(m.startswith(module + "/") for m in modules)}
        if "every key agent_configs" in " ".join(docs):
            agent = "agent:replicator.yml" if module == "provision/replicator" else "agent:standby.yml"
            reads |= {name for name, modules in actual.items() if agent in modules}
            listed |= {name for name, modules in actual.items() if agent in modules}
        assert reads <= listed, f"{path}: Reads: misses {sorted(reads - listed)}"
        # listed but not named in the module: read by a helper it calls (another module of tasks/provision)
        helpers = {name for name in listed - reads
                   if any(m.startswith("provision/") or m.startswith("agent:") for m in actual[name])}
        assert listed - reads == helpers, f"{path}: Reads: lists {sorted(listed - reads - helpers)}, which " \
                                          "nothing it calls reads"
    assert checked >= 10


def lab_host_data() -> dict:
    import runpy
    return runpy.run_path(str(ROOT / "lab" / "inventory.py"))["primary"][0][1]


def test_readme_settings_table_is_the_schemas(tmp_path, monkeypatch):
    monkeypatch.setattr(lab_settings, "SECRETS_DIR", tmp_path / "secrets")  # the lab inventory needs its secrets
    lab_secrets.ensure()
    readme = (ROOT / "README.md").read_text()
    assert settings_schema.readme_table(lab_host_data()) in readme


def test_group_data_repeats_no_literal_and_holds_the_schema_defaults():
    for group in settings_schema.GROUP_SECTIONS:
        text = (ROOT / "group_data" / f"{group}.py").read_text()
        for literal in ("/data/wirebot", "verious", "/etc/wirebot", "/home/wirebot"):
            assert literal not in text
    import runpy
    values = {k: v for k, v in runpy.run_path(str(ROOT / "group_data" / "all.py")).items() if not k.startswith("_")}
    assert values == settings_schema.group_defaults("all")
    assert values["gateway_database"] == "/data/wirebot/users/verious/openclaw/state/openclaw.sqlite"
    assert values["gateway_database"] in values["litestream_databases"]


@pytest.fixture
def secrets_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(lab_settings, "SECRETS_DIR", tmp_path / "secrets")
    return lab_secrets.ensure()


def test_paths_follow_the_layout_keys_unless_set_themselves(secrets_dir):
    values = check("primary", {"secrets_dir": str(secrets_dir), "wirebot_data_root": "/srv/wb",
                               "wirebot_user": "ada"}, "host data")
    assert values["gateway_state_dir"] == "/srv/wb/users/ada/openclaw"
    assert values["gateway_database"] == "/srv/wb/users/ada/openclaw/state/openclaw.sqlite"
    assert values["litestream_databases"][0] == "/srv/wb/users/ada/memory/ada.sqlite"
    assert values["scoreboard_events_db"] in values["litestream_databases"]
    assert values["filesync_paths"][0] == "/srv/wb/users/ada"
    values = check("primary", {"secrets_dir": str(secrets_dir), "wirebot_data_root": "/srv/wb",
                               "scoreboard_events_db": "/srv/wb/sb/events.db"}, "host data")
    assert values["scoreboard_events_db"] == "/srv/wb/sb/events.db"  # set explicitly: kept
    assert values["scoreboard_tenant_dir"] == "/srv/wb/scoreboard/tenants"


@pytest.mark.parametrize("key, expected", [
    ("heartbeat_intervall_seconds", "unknown setting 'heartbeat_intervall_seconds' (did you mean "
                                    "heartbeat_interval_seconds?)"),
    ("role", "unknown setting 'role'"),  # removed: nothing read it
    ("mem0_port", "unknown setting 'mem0_port'"),
])
def test_an_unknown_key_is_refused_with_did_you_mean(secrets_dir, key, expected):
    with pytest.raises(SettingError) as error:
        check("standby", {"secrets_dir": str(secrets_dir), key: 10}, "lab/inventory.py")
    assert str(error.value).startswith(f"lab/inventory.py: {expected}")


def test_a_typo_in_group_data_is_refused_naming_the_file(secrets_dir, tmp_path, monkeypatch):
    group = tmp_path / "group_data"
    group.mkdir()
    for name in ("all", "primary", "standby"):
        (group / f"{name}.py").write_text((ROOT / "group_data" / f"{name}.py").read_text())
    with open(group / "standby.py", "a") as handle:
        handle.write("heartbeat_intervall_seconds = 10\n")
    monkeypatch.setattr("tasks.core.settings_check.GROUP_DATA", group)
    with pytest.raises(SettingError, match=f"^{group / 'standby.py'}: unknown setting 'heartbeat_intervall_seconds'"):
        check("standby", {"secrets_dir": str(secrets_dir)}, "x.py")


@pytest.mark.parametrize("key, value, expected", [
    ("heartbeat_interval_seconds", 0, "must be a positive whole number from 1 to 600, not 0"),
    ("heartbeat_interval_seconds", 601, "from 1 to 600"),
    ("agent_max_connections", 1, "from 2 to 10000"),
    ("gateway_ready_timeout_seconds", True, "must be a positive whole number"),
])
def test_a_value_out_of_range_is_refused(secrets_dir, key, value, expected):
    with pytest.raises(SettingError, match=re.escape(expected)):
        check("primary", {"secrets_dir": str(secrets_dir), key: value}, "x.py")


@pytest.mark.parametrize("kind, given, expected", [
    ("seconds", "30", 30), ("seconds", "30s", "30s"), ("seconds", 30, 30), ("positive", "2.5", 2.5),
    ("positive", 2, 2.0), ("bool", "yes", True), ("bool", "off", False), ("bool", "maybe", "maybe"),
    ("cidrs", "10.0.0.1/32,10.0.0.2/32", ["10.0.0.1/32", "10.0.0.2/32"]), ("ports", 7844, [7844]),
    ("ports", "7844,7845", [7844, 7845]), ("text", 2026, "2026"), ("path", "/x", "/x"),
])
def test_data_values_are_coerced_deliberately(kind, given, expected):
    assert coerce(kind, given) == expected


def _inventory(secrets_dir, override=None, host_data=None, standby_group=None):
    """A pyinfra inventory and state like `pyinfra --data ... inventory deploy.py` builds (group data:
    the project's group_data)."""
    import runpy

    from pyinfra.api import Config, Inventory, State

    def group(name):
        return {k: v for k, v in runpy.run_path(str(ROOT / "group_data" / f"{name}.py")).items()
                if not k.startswith("_")}
    inventory = Inventory(
        (["p", "s"], {**group("all"), "secrets_dir": str(secrets_dir)}),
        override_data=override or {},
        primary=([("p", dict(host_data or {}))], group("primary")),
        standby=(["s"], {**group("standby"), **(standby_group or {})}),
    )
    return State(inventory, Config())


def test_the_pyinfra_check_covers_data_host_and_group_values_and_names_their_origin(secrets_dir):
    from pyinfra.api.exceptions import PyinfraError

    cases = [
        ({"override": {"heartbeat_interval_seconds": "30s"}}, "p: --data: setting 'heartbeat_interval_seconds'"),
        ({"host_data": {"agent_port": 0}}, "p: the inventory's host data of p: setting 'agent_port'"),
        ({"standby_group": {"fencing_watch_seconds": -1}},
         f"s: {ROOT / 'group_data' / 'standby.py'}: setting 'fencing_watch_seconds'"),
        ({"override": {"heartbeat_intervall_seconds": 30}}, "did you mean heartbeat_interval_seconds?"),
    ]
    for kwargs, expected in cases:
        state = _inventory(secrets_dir, **kwargs)
        host = state.inventory.get_host("p")
        with pytest.raises(PyinfraError, match=re.escape(expected)):
            check_pyinfra_hosts(state, host)
        assert "heartbeat_interval_seconds" not in host.data.override_datas  # nothing applied


def test_the_pyinfra_check_applies_coerced_and_derived_values_to_the_host(secrets_dir):
    state = _inventory(secrets_dir, override={"heartbeat_interval_seconds": "20", "fencing_lease_seconds": 40},
                       host_data={"wirebot_data_root": "/srv/wb"})
    primary, standby = state.inventory.get_host("p"), state.inventory.get_host("s")
    check_pyinfra_hosts(state, primary)
    check_pyinfra_hosts(state, standby)
    assert primary.data.heartbeat_interval_seconds == 20 and standby.data.heartbeat_interval_seconds == 20
    assert primary.data.gateway_state_dir == "/srv/wb/users/verious/openclaw"
    assert standby.data.gateway_state_dir == "/data/wirebot/users/verious/openclaw"


def test_operator_docs_hetzner_table_is_the_schemas():
    from tasks import hetzner

    flags = {key: flag for flag, (key, _options) in hetzner.FLAGS.items()}
    assert settings_schema.hetzner_table(flags) in (ROOT / "docs" / "operator.md").read_text()
    assert hetzner.DEFAULTS == settings_schema.defaults("hetzner")

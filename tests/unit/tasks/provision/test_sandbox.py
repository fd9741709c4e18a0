"""The least-privilege directives of each unit (tasks/provision/sandbox.py), from the real settings: which
capabilities stay, what is writable, which secrets each unit sees. The lab measures the result
(tests/lab/test_least_privilege.py); these pin the rendering without hosts."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from lab.group_data import group_settings
from tasks.provision import sandbox

ROOT = Path(__file__).resolve().parents[4]


def settings(role):
    return SimpleNamespace(**{**group_settings("all"), **group_settings(role)})


def directives(text):
    lines = text.splitlines()
    assert all("=" in line for line in lines), lines
    return lines


def values(lines, key):
    return [line.split("=", 1)[1] for line in lines if line.split("=", 1)[0] == key]


@pytest.fixture
def primary():
    return settings("primary")


@pytest.fixture
def standby():
    return settings("standby")


def test_replicator_keeps_only_its_capabilities_and_writes_only_its_state(primary):
    lines = directives(sandbox.root_unit(primary, "replicator", primary.replicator_capabilities,
                                         read_write=[primary.wirebot_state_dir], read=primary.filesync_paths))
    assert values(lines, "CapabilityBoundingSet") == ["CAP_DAC_READ_SEARCH CAP_NET_ADMIN"]
    assert values(lines, "AmbientCapabilities") == [""]
    assert values(lines, "ReadWritePaths") == ["-/var/lib/wirebot"]
    assert "-/home/wirebot/clawd" in values(lines, "BindReadOnlyPaths")  # a synced tree under /home
    assert values(lines, "BindPaths") == []
    for key, value in [("User", "root"), ("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("ProtectHome", "tmpfs"), ("PrivateTmp", "yes"), ("SystemCallFilter", "@system-service")]:
        assert values(lines, key) == [value], key


def test_every_secret_folder_is_hidden_and_only_the_units_own_come_back(primary, standby):
    for data, unit in ((primary, "replicator"), (primary, "litestream"), (standby, "standby")):
        lines = directives(sandbox.root_unit(data, unit, ["CAP_CHOWN"]))
        assert values(lines, "TemporaryFileSystem") == [
            "/etc/wirebot/secrets:ro", "/run/wirebot:ro", "/etc/cloudflared:ro", "/etc/wirebot/agent-keys:ro",
            "/etc/ssh:ro"]
        bound = {value.lstrip("-") for value in values(lines, "BindReadOnlyPaths")}
        assert bound == set(sandbox.unit_secrets(data, unit)) | {"/etc/ssh/ssh_config", "/etc/ssh/ssh_config.d"}
        assert "/run/wirebot/gateway.env" not in bound
    assert sandbox.unit_secrets(primary, "litestream") == ["/root/.ssh/wirebot-replication"]
    assert "/root/.ssh/wirebot-fence" in sandbox.unit_secrets(standby, "standby")
    assert "/root/.ssh/wirebot-fence" not in sandbox.unit_secrets(primary, "replicator")
    # the agents' channel keys: each agent sees its host's folder, litestream does not
    assert "/etc/wirebot/agent-keys" in sandbox.unit_secrets(primary, "replicator")
    assert "/etc/wirebot/agent-keys" in sandbox.unit_secrets(standby, "standby")
    assert "/etc/wirebot/agent-keys" not in sandbox.unit_secrets(primary, "litestream")


def test_the_agents_get_their_private_control_socket_folder(primary):
    assert sandbox.control_socket(primary) == "RuntimeDirectory=wirebot-agent\nRuntimeDirectoryMode=0700"
    primary.agent_control_socket = "/var/lib/wirebot/agent/control.sock"
    assert sandbox.control_socket(primary) == "ReadWritePaths=-/var/lib/wirebot/agent"


def test_the_standby_writes_the_synced_trees_it_activates(standby):
    lines = directives(sandbox.root_unit(standby, "standby", standby.standby_capabilities,
                                         read_write=["/var/lib/wirebot", "/data/wirebot", "/home/wirebot/clawd"]))
    assert values(lines, "ReadWritePaths") == ["-/var/lib/wirebot", "-/data/wirebot"]
    assert values(lines, "BindPaths") == ["-/home/wirebot/clawd"]  # writable again under ProtectHome=tmpfs
    assert values(lines, "CapabilityBoundingSet") == ["CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER"]
    assert values(lines, "SystemCallFilter") == ["@system-service"]  # it chowns: @privileged stays allowed


def test_a_units_secrets_digest_changes_with_its_own_secrets_only(primary, tmp_path):
    for name in primary.secrets_files:
        (tmp_path / name).write_text(f"{name}-1\n")
    primary.secrets_dir = str(tmp_path)
    before = sandbox.secrets_digest(primary, "replicator")
    (tmp_path / "gateway.env").write_text("OTHER=2\n")  # not the replicator's
    assert sandbox.secrets_digest(primary, "replicator") == before
    (tmp_path / "discord-webhook.url").write_text("https://example.invalid/new\n")
    assert sandbox.secrets_digest(primary, "replicator") != before


def test_user_units_have_no_capabilities_and_get_secrets_as_credentials():
    lines = directives(sandbox.user_unit(credentials=[("config.yml", "/etc/cloudflared/wirebot.yml")]))
    assert values(lines, "DynamicUser") == ["yes"] and values(lines, "User") == []
    assert values(lines, "CapabilityBoundingSet") == [""]
    assert values(lines, "LoadCredential") == ["config.yml:/etc/cloudflared/wirebot.yml"]
    assert values(lines, "SystemCallFilter") == ["@system-service", "~@privileged @resources"]
    lines = directives(sandbox.user_unit(read_write=["/data/wirebot/scoreboard"], user="wirebot-scoreboard"))
    assert values(lines, "User") == ["wirebot-scoreboard"] and values(lines, "DynamicUser") == []
    assert values(lines, "ReadWritePaths") == ["-/data/wirebot/scoreboard"]


def test_start_gates_run_as_root_outside_the_units_sandbox():
    """A gate (ExecStartPre) reads the agents' root-only config and state: without "+" it would run as the
    sandboxed unit's user (a dynamic user for the connector, its own for the scoreboard) and always refuse."""
    gates = sorted((ROOT / "templates").glob("*gate*.conf.j2"))
    assert gates
    for gate in gates:
        lines = [line for line in gate.read_text().splitlines() if line.startswith("ExecStartPre=")]
        assert lines and all(line.startswith("ExecStartPre=+") for line in lines), gate.name

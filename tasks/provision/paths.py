"""Paths derived from settings, in one place so the deploy, the agents' configs and the playbooks agree."""

from pathlib import PurePosixPath

UNIT_DIR = "/usr/local/lib/systemd/system"  # local vendor units: `systemctl mask` can still override them


def state_file(data) -> str:
    """The agents' state file (state, epoch) on a host."""
    return f"{data.wirebot_state_dir}/state.json"


def agent_key_file(data, name: str) -> str:
    """A file of the agents' channel on a host: agent.key, agent.crt, peer.crt or control.key."""
    return f"{data.agent_keys_dir}/{name}"


def relative_to_data_root(path: str, data_root: str) -> str:
    """`path` relative to the data root (events.db -> scoreboard/events.db); outside it: without the /."""
    try:
        return str(PurePosixPath(path).relative_to(data_root))
    except ValueError:
        return str(PurePosixPath(path)).lstrip("/")


def replica_dir(replica_root: str, epoch: int, path: str, data_root: str) -> str:
    """Where the standby keeps the Litestream replica of database (or tenant folder) `path` at `epoch`."""
    return f"{replica_root}/litestream/epoch-{epoch}/{relative_to_data_root(path, data_root)}"

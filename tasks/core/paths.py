"""Paths derived from settings, in one place so the deploy, the agents' configs and the playbooks agree."""

from pathlib import PurePosixPath

from wirebot.common import layout

UNIT_DIR = "/usr/local/lib/systemd/system"  # local vendor units: `systemctl mask` can still override them


def state_file(data) -> str:
    """The agents' state file (state, epoch) on a host."""
    return layout.state_file(data.wirebot_state_dir)


def fenced_file(data) -> str:
    """The fence record on the primary (wirebot.common.layout)."""
    return layout.fenced_file(data.wirebot_state_dir)


def recovery_markers_dir(data, epoch: int) -> str:
    """Recovery's progress markers for target epoch `epoch` on the primary (wirebot.common.layout)."""
    return layout.recovery_markers_dir(data.wirebot_state_dir, epoch)


def agent_key_file(data, name: str) -> str:
    """A file of the agents' channel on a host: agent.key, agent.crt, peer.crt or control.key."""
    return f"{data.agent_keys_dir}/{name}"


def relative_to_data_root(path: str, data_root: str) -> str:
    """`path` relative to the data root (events.db -> scoreboard/events.db); outside it: without the /."""
    try:
        return str(PurePosixPath(path).relative_to(data_root))
    except ValueError:
        return str(PurePosixPath(path)).lstrip("/")


# The replica tree (docs/security.md, "The replication account and the replica tree"): replica_root is
# root-owned; Litestream's SFTP account writes only LITESTREAM below it, file sync's rsync account only
# FILES. Both see replica_root as "/" (the SFTP chroot, the rsync forced command's root), so what the
# primary names is the standby's path with replica_root cut off: replica_view() below.
LITESTREAM = "litestream"
FILES = "files"


def replica_dir(replica_root: str, epoch: int, path: str, data_root: str) -> str:
    """Where the standby keeps the Litestream replica of database (or tenant folder) `path` at `epoch`."""
    return f"{replica_root}/{LITESTREAM}/epoch-{epoch}/{relative_to_data_root(path, data_root)}"


def replica_view(path: str, replica_root: str) -> str:
    """`path` (on the standby, inside replica_root) as the replication accounts see it: from their "/"."""
    relative = str(PurePosixPath(path).relative_to(replica_root))
    return "/" if relative == "." else "/" + relative


def litestream_replica_path(replica_root: str, epoch: int, path: str, data_root: str) -> str:
    """The SFTP path litestream.yml names for `path` at `epoch` (chroot-relative: replica_view)."""
    return replica_view(replica_dir(replica_root, epoch, path, data_root), replica_root)

"""sshd on both hosts: keys only, no forwarding; on the standby, the replication accounts' confinement."""

from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.util import get_template

from tasks.core.checkout import TEMPLATES
from tasks.core.ops import sshd_dropin
from tasks.provision import trust

TEMPLATE = TEMPLATES / "sshd-wirebot.conf.j2"


def dropin_text(data, standby: bool) -> str:
    """The drop-in for a host (pure: unit-tested); `standby` adds the replication accounts' Match blocks."""
    return get_template(str(TEMPLATE)).render(
        replica=standby, sftp_user=data.replica_user, files_user=data.replica_files_user,
        keys_dir=trust.REPLICA_KEYS_DIR, replica_root=data.replica_root,
        sftp_command=trust.sftp_command(), rsync_command=trust.rsync_command(data.replica_root),
    )


@deploy("sshd")
def sshd():
    """
    Guarantees: sshd_dropin holds the drop-in (root 0644): public keys only (no passwords, no
    keyboard-interactive, no host-based), root by key only, no agent/TCP/unix-socket/X11 forwarding, no
    tunnels, no client environment. On the standby it also confines the replication accounts:
    replica_user to internal-sftp chrooted in replica_root (no links), replica_files_user to the
    restricted rsync, both with keys only from the root-owned files trust writes. The drop-in is checked
    with `sshd -t` as part of the whole config before it is put in place, then sshd is reloaded; a config
    that does not Include the drop-in's folder fails the deploy. A second run changes nothing.

    Reads: sshd_dropin, replica_user, replica_files_user, replica_root.
    """
    data = host.data
    text = dropin_text(data, standby="standby" in host.groups)
    sshd_dropin(name=f"Ensure {data.sshd_dropin} (keys only, no forwarding) is checked and in effect.",
                src=StringIO(text), dest=data.sshd_dropin)

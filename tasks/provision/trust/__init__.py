"""Trust between the hosts: two single-purpose SSH keys and pinned host keys; the agents' TLS identities.

- replication key: made on the primary; on the standby it logs in as replica_user and can only SFTP or
  rsync into replica_root (forced command wirebot-replica-shell under `restrict`), never a shell.
- fence key: made on the standby; on the primary (root, `restrict`, only from the standby's address) it
  can only run the fence command: stop and mask the primary's cloudflared unit.
- the agents' channel (:8300, docs/security.md): each host makes its own TLS key and self-signed
  certificate and its own control key (never copied anywhere), and pins the other host's certificate.
"""

from io import StringIO
from pathlib import Path

from pyinfra import host, inventory
from pyinfra.api import deploy
from pyinfra.operations import files, server

from tasks.provision import paths
from tasks.provision.ops import PublicKey, authorized_key_line, pinned_certificate, random_key, ssh_keypair, tls_keypair

REPLICA_SHELL = Path(__file__).resolve().parents[3] / "files" / "libexec" / "wirebot-replica-shell"
REPLICA_SHELL_DEST = "/usr/local/libexec/wirebot-replica-shell"


def address_of(other) -> str:
    """The address other hosts use to reach `other` (its inventory name unless ssh_hostname is set)."""
    return other.data.get("ssh_hostname") or other.name


def _known_hosts(path: str, other) -> None:
    key = other.get_fact(PublicKey, path="/etc/ssh/ssh_host_ed25519_key.pub")
    if not key:
        raise RuntimeError(f"{other.name}: no ed25519 host key to pin")
    files.put(name=f"Ensure {path} pins {other.name}'s host key.",
              src=StringIO(f"{address_of(other)} {' '.join(key.split()[:2])}\n"),
              dest=path, user="root", group="root", mode="644")


def _agent_channel(data, role: str, peer) -> None:
    """This host's TLS identity and control key (made here once), and the peer's pinned certificate."""
    key, cert = paths.agent_key_file(data, "agent.key"), paths.agent_key_file(data, "agent.crt")
    files.directory(name=f"Ensure {data.agent_keys_dir} exists (root, 0700).", path=data.agent_keys_dir,
                    user="root", group="root", mode="700")
    tls_keypair(name="Ensure this host's agent TLS key and certificate exist (made here, never copied).",
                key=key, cert=cert, common_name=f"wirebot-{role}")
    random_key(name="Ensure this host's agent control key exists (made here, never copied).",
               path=paths.agent_key_file(data, "control.key"))
    pinned_certificate(name=f"Ensure the agents' channel pins {peer.name}'s certificate.",
                       path=paths.agent_key_file(data, "peer.crt"), other=peer,
                       other_path=paths.agent_key_file(peer.data, "agent.crt"))


@deploy("Trust between primary and standby")
def trust():
    """
    Guarantees: the keys above exist (made once, never replaced), each authorized on the other host for
    its one use only, and each host pins the other's ed25519 host key under wirebot_config_dir.

    The agents' channel: agent_keys_dir holds this host's TLS key (0600) and self-signed certificate and
    its control key (0600), all made on the host once, and peer.crt, the other host's certificate.

    Reads: replica_user, replica_root, replica_key, fence_key, wirebot_agents_dir, wirebot_config_dir,
    agent_keys_dir.
    """
    data = host.data
    is_primary = "primary" in host.groups
    primary = inventory.get_group("primary")[0]
    standby = inventory.get_group("standby")[0]
    _agent_channel(data, "primary" if is_primary else "standby", standby if is_primary else primary)

    # Keys first: each is authorized on the other host further down, in the same run.
    if is_primary:
        ssh_keypair(name="Ensure the replication key exists (used for nothing else).",
                    path=data.replica_key, comment="wirebot-replication")
    else:
        ssh_keypair(name="Ensure the fence key exists (used for nothing else).",
                    path=data.fence_key, comment="wirebot-fence")

    if is_primary:
        _known_hosts(f"{data.wirebot_config_dir}/standby_known_hosts", standby)
        fence = (f'restrict,from="{address_of(standby)}",command="PYTHONPATH={data.wirebot_agents_dir} '
                 '/usr/bin/python3 -m wirebot.fence_command"')
        authorized_key_line(name="Ensure the standby's fence key can only fence cloudflared here.",
                            path="/root/.ssh/authorized_keys", marker="wirebot-fence",
                            key_from=(standby, f"{standby.data.fence_key}.pub", fence))
        return

    _known_hosts(f"{data.wirebot_config_dir}/primary_known_hosts", primary)
    user, root = data.replica_user, data.replica_root
    server.group(name=f"Ensure group {user} exists.", group=user, system=True)
    server.user(name=f"Ensure {user} exists (the replication key's only account).", user=user, group=user,
                system=True, home=root, shell="/bin/sh", create_home=False)
    for path, mode in ((root, "750"), (f"{root}/litestream", "750"), (f"{root}/files", "750"),
                       (f"{root}/.ssh", "700")):
        files.directory(name=f"Ensure {path} exists ({user}, {mode}).", path=path,
                        user=user, group=user, mode=mode)
    files.directory(name="Ensure /usr/local/libexec exists.", path="/usr/local/libexec",
                    user="root", group="root", mode="755")
    files.put(name="Ensure the replica forced command is installed.", src=str(REPLICA_SHELL),
              dest=REPLICA_SHELL_DEST, user="root", group="root", mode="755")
    replication = f'restrict,command="{REPLICA_SHELL_DEST} {root}"'
    authorized_key_line(name="Ensure the primary's replication key can only SFTP/rsync into the replica.",
                        path=f"{root}/.ssh/authorized_keys", marker="wirebot-replication", owner=user,
                        key_from=(primary, f"{primary.data.replica_key}.pub", replication))

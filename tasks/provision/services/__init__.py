"""The two services that make Wirebot: the OpenClaw gateway and the scoreboard, identical units on both
hosts, serving on the primary and waiting on the standby."""

from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.server import Which
from pyinfra.operations import apt, files, npm, systemd
from pyinfra.operations.util import any_changed

from tasks.provision import paths, roles, sandbox
from tasks.provision.cloudflared import _describe, start_gate

TEMPLATES = Path(__file__).resolve().parents[3] / "templates"
NODESOURCE_KEY = "https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key"
NODESOURCE_RPM_KEY = "https://rpm.nodesource.com/gpgkey/ns-operations-public.key"


def _install_openclaw(node_major: int, version: str) -> None:
    """Node.js from NodeSource (apt or rpm) and the pinned openclaw from npm (real hosts only)."""
    if host.get_fact(Which, command="apt-get"):
        key = files.download(name="Ensure NodeSource's signing key is present.", src=NODESOURCE_KEY,
                             dest="/usr/share/keyrings/nodesource.asc", mode="644")
        repo = apt.repo(name=f"Ensure the Node.js {node_major} apt repository is configured.",
                        src=f"deb [signed-by=/usr/share/keyrings/nodesource.asc] "
                            f"https://deb.nodesource.com/node_{node_major}.x nodistro main",
                        filename="nodesource")
        apt.update(name="Refresh the package index for the new repository.", _if=any_changed(key, repo))
        apt.packages(name="Ensure Node.js is installed (apt).", packages=["nodejs"])
    else:
        from pyinfra.operations import dnf

        files.put(name=f"Ensure the Node.js {node_major} rpm repository is configured.", src=StringIO(
            f"[nodesource-nodejs]\nname=Node.js {node_major}\n"
            f"baseurl=https://rpm.nodesource.com/pub_{node_major}.x/nodistro/nodejs/$basearch\n"
            f"enabled=1\ngpgcheck=1\ngpgkey={NODESOURCE_RPM_KEY}\n"),
            dest="/etc/yum.repos.d/nodesource-nodejs.repo", user="root", group="root", mode="644")
        dnf.packages(name="Ensure Node.js is installed (dnf).", packages=["nodejs"])
    npm.packages(name=f"Ensure openclaw {version} is installed (npm, global).", packages=[f"openclaw@{version}"])


@deploy("Gateway and scoreboard")
def services():
    """
    Guarantees: units openclaw-gateway (gateway_port) and wirebot-scoreboard (scoreboard_port) from
    templates, identical on both hosts. The gateway runs as wirebot_service_user and reads its model
    keys from wirebot_run_dir/gateway.env; the scoreboard runs as scoreboard_user (made by the base
    deploy) without capabilities, sandboxed, writing only its folders (tasks/provision/sandbox.py).
    On real hosts (gateway_install) Node.js gateway_nodejs_major and
    openclaw gateway_openclaw_version; the lab's stand-ins are installed by the lab. Running and enabled
    on the primary; on the standby present, disabled and stopped unless it is the active side, each
    with the standby's start gate (starts only while the standby agent is ACTIVATING or ACTIVE).

    Reads: gateway_install, gateway_nodejs_major, gateway_openclaw_version, gateway_exec, gateway_port,
    scoreboard_exec, scoreboard_port, scoreboard_events_db, scoreboard_tenant_dir, wirebot_data_root,
    wirebot_service_user, scoreboard_user, wirebot_run_dir, wirebot_agents_dir, standby_config (standby).
    """
    data = host.data
    if data.gateway_install:
        _install_openclaw(data.gateway_nodejs_major, data.gateway_openclaw_version)
    scoreboard_dirs = sorted({str(Path(data.scoreboard_events_db).parent), data.scoreboard_tenant_dir})
    units = {  # unit -> (template, its arguments)
        "openclaw-gateway": ("gateway.service.j2", dict(
            description="OpenClaw gateway (AI inference and tools)",
            exec_start=data.gateway_exec.format(port=data.gateway_port), user_name=data.wirebot_service_user,
            environment_files=[f"{data.wirebot_run_dir}/gateway.env"])),
        "wirebot-scoreboard": ("scoreboard.service.j2", dict(
            description="Wirebot scoreboard event API",
            exec_start=data.scoreboard_exec.format(
                data_root=data.wirebot_data_root, port=data.scoreboard_port,
                db=data.scoreboard_events_db, tenants=data.scoreboard_tenant_dir),
            sandbox=sandbox.user_unit(read_write=scoreboard_dirs, user=data.scoreboard_user))),
    }
    installed = {}
    for name, (template, arguments) in units.items():
        installed[name] = files.template(
            name=f"Ensure {name}.service is installed.", src=str(TEMPLATES / template),
            dest=f"{paths.UNIT_DIR}/{name}.service", user="root", group="root", mode="644", **arguments)
    gates = [start_gate(name) for name in units] if "standby" in host.groups else []
    systemd.daemon_reload(name="Reload systemd for the gateway and scoreboard.",
                          _if=any_changed(*installed.values(), *gates))
    serving = roles.serving()
    for name, unit in installed.items():
        # Mid-incident (serving None: a fenced primary, its units masked) the enablement is left alone too.
        systemd.service(name=f"Ensure {name} is {_describe(serving)} here.", service=name,
                        running=serving, enabled=None if serving is None else "primary" in host.groups)
        if serving:
            systemd.service(name=f"Restart {name} for its new unit.", service=name, restarted=True,
                            _if=unit.did_change)

"""The scoreboard service: the same unit on both hosts, serving on the primary and waiting on the standby.
(The OpenClaw gateway has its own deploy: tasks/provision/gateway.)"""

from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import systemd
from pyinfra.operations.util import any_changed
from wirebot.common import layout

from tasks.core import paths
from tasks.core.checkout import TEMPLATES
from tasks.core.ops import managed_template, service
from tasks.provision import roles, sandbox
from tasks.provision.cloudflared import _describe, start_gate


@deploy("Scoreboard")
def services():
    """
    Guarantees: unit wirebot-scoreboard (scoreboard_port) from templates, identical on both hosts, run as
    scoreboard_user (made by the base deploy) without capabilities, sandboxed, writing only its folders
    (tasks/provision/sandbox.py); the lab's stand-in binary is installed by the lab. Running and enabled
    on the primary; on the standby present, disabled and stopped unless it is the active side.

    Reads: scoreboard_exec, scoreboard_port, scoreboard_events_db, scoreboard_tenant_dir, wirebot_data_root,
    scoreboard_user.
    """
    data = host.data
    scoreboard_dirs = sorted({str(Path(data.scoreboard_events_db).parent), data.scoreboard_tenant_dir})
    units = {  # unit -> (template, its arguments)
        layout.SCOREBOARD_UNIT: ("scoreboard.service.j2", dict(
            description="Wirebot scoreboard event API",
            exec_start=data.scoreboard_exec.format(
                data_root=data.wirebot_data_root, port=data.scoreboard_port,
                db=data.scoreboard_events_db, tenants=data.scoreboard_tenant_dir),
            sandbox=sandbox.user_unit(read_write=scoreboard_dirs, user=data.scoreboard_user))),
    }
    installed = {}
    for name, (template, arguments) in units.items():
        installed[name] = managed_template(
            name=f"Ensure {name}.service is installed.", src=str(TEMPLATES / template),
            dest=f"{paths.UNIT_DIR}/{name}.service", user="root", group="root", mode="644", **arguments)
    gates = [start_gate(name) for name in units] if "standby" in host.groups else []
    systemd.daemon_reload(name="Reload systemd for the scoreboard.", _if=any_changed(*installed.values(), *gates))
    serving = roles.serving()
    for name, unit in installed.items():
        # Mid-incident (serving None: a fenced primary, its units masked) the enablement is left alone too.
        service(name=f"Ensure {name} is {_describe(serving)} here.", unit=name,
                running=serving, enabled=None if serving is None else "primary" in host.groups)
        if serving:
            systemd.service(name=f"Restart {name} for its new unit.", service=name, restarted=True,
                            _if=unit.did_change)

"""Installing one runtime agent: its YAML config and its unit, restarted when either or its code changes."""

import hashlib
from io import StringIO
from pathlib import Path

import yaml
from pyinfra import host
from pyinfra.operations import systemd
from pyinfra.operations.util import any_changed

from tasks.core import pairs, paths
from tasks.core.checkout import AGENTS_SRC, TEMPLATES
from tasks.core.ops import managed_file, managed_template, service
from tasks.core.secrets import cloudflared_files


def rendered_config(build) -> dict:
    """The agent's config from `build` (an agent_configs function) for this host and its pair's peer."""
    data = host.data
    peer = pairs.peer_of(host)
    tunnel = cloudflared_files(data.secrets_dir, data.cloudflared_secrets)
    return build(data, pairs.address_of(host), pairs.address_of(peer), tunnel)


def code_digest(src: Path = AGENTS_SRC) -> str:
    """sha256 over the agents' code as the base deploy installs it (paths and contents, no bytecode)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                       and p.suffix != ".pyc"):
        digest.update(str(path.relative_to(src)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def install_agent(unit: str, module: str, description: str, config_path: str, config: dict,
                  agents_dir: str, sandbox: str, secrets_digest: str) -> None:
    """Config (0600, may name secrets' paths), unit, enabled and running; restart on change. The config's
    header names the digest of the agents' code, so new code (installed by the base deploy) changes the
    config and restarts the running agent, which would otherwise keep the old code in memory.
    `sandbox`: the unit's least-privilege directives (tasks/provision/sandbox.py); the unit sees its
    secrets as of its start, so `secrets_digest` (of those secrets) in the config restarts it too."""
    rendered = managed_file(
        name=f"Ensure {config_path} is rendered from settings.",
        src=StringIO("# Managed by the wirebot deploy: edit group_data/, not this file.\n"
                     f"# Agents' code sha256 {code_digest()} (a change restarts the agent).\n"
                 f"# Its secrets' sha256 {secrets_digest} (a change restarts the agent: it reads them as of\n"
                 "# its start).\n"
                     + yaml.safe_dump(config, sort_keys=False)),
        dest=config_path, user="root", group="root", mode="600",
    )
    unit_file = managed_template(
        name=f"Ensure {unit}.service is installed.", src=str(TEMPLATES / "agent.service.j2"),
        dest=f"{paths.UNIT_DIR}/{unit}.service", user="root", group="root", mode="644",
        description=description, agents_dir=agents_dir, module=module, config=config_path, sandbox=sandbox,
    )
    systemd.daemon_reload(name=f"Reload systemd for {unit}.", _if=unit_file.did_change)
    started = service(name=f"Ensure {unit} is enabled and running.", unit=unit, running=True, enabled=True)
    changed = any_changed(rendered, unit_file)
    # not right after starting it: a second start would stop the heartbeats for a lease's length (fencing)
    systemd.service(name=f"Restart {unit} for its new config or unit.", service=unit, restarted=True,
                    _if=lambda: changed() and not started.did_change())

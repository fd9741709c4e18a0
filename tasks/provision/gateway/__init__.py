"""The OpenClaw gateway: its own user, unit, config and state in the synced tree, secrets from systemd."""

import hashlib
from io import StringIO
from pathlib import Path, PurePosixPath

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.server import Which
from pyinfra.operations import apt, files, npm, server, systemd
from pyinfra.operations.util import any_changed
from wirebot.common import layout

from tasks.core import hoststate, paths
from tasks.core.checkout import TEMPLATES
from tasks.core.ops import HttpStatus, attributes, directories, managed_file, managed_template, service
from tasks.provision import roles
from tasks.provision.cloudflared import _describe, start_gate
from tasks.provision.gateway import openclaw_config

NODESOURCE_KEY = "https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key"
NODESOURCE_RPM_KEY = "https://rpm.nodesource.com/gpgkey/ns-operations-public.key"
NPM_GLOBAL_MODULES = "/usr/lib/node_modules"  # NodeSource's npm prefix is /usr
UNIT = layout.GATEWAY_UNIT
TOKEN_SECRET = "gateway-token.env"  # OPENCLAW_GATEWAY_TOKEN=... (tasks/core/secrets.py)
MODEL_KEYS_SECRET = "gateway.env"  # optional KEY=value lines: the model providers' API keys


def ready_url(data) -> str:
    """/readyz: 200 only once the plugin runtime is up (/health is 200 seconds earlier)."""
    return f"http://127.0.0.1:{data.gateway_port}/readyz"


def wait_ready_command(data, state_file=None) -> str:
    """A shell command that waits (bounded) for the gateway's /readyz 200; exits 1 naming the last answer.

    It stops waiting at once when the unit is neither active nor activating (stopped or failed: nothing
    will make it ready; a 300 s wait on an inactive unit helped nobody). With ``state_file`` (a standby: the
    agent's state file) it first checks, on every round, that the gateway is meant to run here: the deploy
    read the standby's state when it planned, but the agent may have been deactivated since (a recovery
    resumed, an operator's deactivate), and a passive standby's start gate keeps the gateway inactive; the
    command then exits 0 saying so."""
    url, seconds = ready_url(data), int(data.gateway_ready_timeout_seconds)
    gated = ""
    if state_file:
        read_state = ("python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get(\"state\", \"\"))' "
                      f"{state_file} 2>/dev/null")
        gated = (f"s=$({read_state}); case \"$s\" in ACTIVE|ACTIVATING) ;; *) "
                 f"echo \"{UNIT}: not waiting for {url}: the standby is ${{s:-in no known state}} "
                 f"(its gateway runs only while ACTIVATING or ACTIVE)\"; exit 0;; esac; ")
    return (f"end=$(( $(date +%s) + {seconds} )); code=000; "
            f"while [ $(date +%s) -lt $end ]; do {gated}"
            f"code=$(curl -s -o /dev/null -m 5 -w '%{{http_code}}' {url}); [ \"$code\" = 200 ] && exit 0; "
            f"case $(systemctl is-active {UNIT}) in active|activating|reloading) ;; *) break;; esac; sleep 1; done; "
            f"echo \"{UNIT}: {url} answered $code, not 200 within {seconds}s "
            f"($(systemctl is-active {UNIT}))\" >&2; exit 1")


def reads(target) -> dict:
    """What gateway's code reads on `target` (tasks/provision/reads.py): its config; /readyz on the primary
    (the standby's only when it serves, read then)."""
    data = target.data
    facts = [(openclaw_config.OpenClawConfigText, {"path": data.gateway_config_file})]
    if "primary" in target.groups:
        facts.append((HttpStatus, {"url": ready_url(data)}))
    return {"facts": facts}


def _state_folders(data) -> set:
    """The state dir and every folder down to each of its databases and its config: the gateway's own
    (a database restored at activation keeps its folder's owner; mkdir -p would make them root's)."""
    state = PurePosixPath(data.gateway_state_dir)
    folders = {str(state)}
    for path in [data.gateway_config_file, data.gateway_database, *data.litestream_databases]:
        folder = PurePosixPath(path).parent
        if folder == state or state in folder.parents:
            while folder != state:
                folders.add(str(folder))
                folder = folder.parent
    return folders


def _secrets_digest(data) -> str:
    """sha256 over the operator's copies of the gateway's secrets: in the unit, so a changed token or model
    key restarts the gateway (it reads its environment at start)."""
    digest = hashlib.sha256()
    for name in (TOKEN_SECRET, MODEL_KEYS_SECRET):
        source = Path(data.secrets_dir) / name
        digest.update(name.encode() + b"\0" + (source.read_bytes() if source.is_file() else b"") + b"\0")
    return digest.hexdigest()


def _install_openclaw(node_major: int, version: str) -> None:
    """Node.js from NodeSource (apt or rpm) and the pinned openclaw from npm (real hosts only)."""
    if hoststate.fact(host, Which, command="apt-get"):
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
    installed = npm.packages(name=f"Ensure openclaw {version} is installed (npm, global).",
                             packages=[f"openclaw@{version}"])
    # npm 11 skips install scripts by default; openclaw then finishes its own lifecycle at first start,
    # which the gateway's user cannot do in root's /usr/lib/node_modules: run its postinstall here, as root
    package = f"{NPM_GLOBAL_MODULES}/openclaw"
    marker = f"{package}/.openclaw-lifecycle-pending"
    pending = hoststate.path(host, marker)
    server.shell(name="Ensure openclaw's package lifecycle is complete (its postinstall, as root).",
                 commands=[f"test ! -e {marker} || (cd {package} && node scripts/postinstall-bundled-plugins.mjs)"],
                 _if=(lambda: True) if pending else installed.did_change)


def _config(data, user: str):
    """openclaw.json with the deploy's keys merged in (0600, the gateway's); the operation, or None."""
    path = data.gateway_config_file
    text = hoststate.fact(host, openclaw_config.OpenClawConfigText, path=path)
    current = openclaw_config.parse(text, f"{host.name}:{path}")
    merged = openclaw_config.merge(current, openclaw_config.wanted(data), openclaw_config.defaults(data),
                                   f"{host.name}:{path}")
    if text is not None and merged == current:
        return attributes(name=f"Ensure {path} is the gateway's (0600).", specs=[(path, user, user, "600")])
    return managed_file(name=f"Ensure {path} carries the deploy's gateway keys (others kept).",
                        src=StringIO(openclaw_config.render(merged)), dest=path, user=user, group=user, mode="600")


@deploy("OpenClaw gateway")
def gateway():
    """
    Guarantees: on real hosts (gateway_install) Node.js gateway_nodejs_major from NodeSource and openclaw
    gateway_openclaw_version from npm (the lab mounts the same versions from its bundle). Unit
    openclaw-gateway (templates/openclaw-gateway.service.j2), identical on both hosts, runs as
    wirebot_service_user, sandboxed, with OPENCLAW_STATE_DIR=gateway_state_dir and
    OPENCLAW_CONFIG_PATH=gateway_config_file in the synced tree (file sync carries the config, Litestream
    its database gateway_database), and its secrets as environment from root-only files in
    wirebot_run_dir: gateway-token.env (the persistent OPENCLAW_GATEWAY_TOKEN) and gateway.env (model
    keys). openclaw.json carries gateway.mode=local, a loopback bind on gateway_port, token auth, the
    OpenAI-compatible endpoint and gateway_config; the operator's other keys are kept. Running and
    enabled on the primary, and /readyz 200 before the deploy goes on to the connector; on the standby
    present, disabled and stopped unless it is the active side. Before each start the unit drops an owner
    lease of another host from the (restored) database (wirebot.hosttools.gateway_lease).

    Reads: gateway_install, gateway_nodejs_major, gateway_openclaw_version, gateway_exec, gateway_port,
    gateway_state_dir, gateway_config_file, gateway_database, gateway_config, gateway_ready_timeout_seconds,
    gateway_stop_timeout_seconds, litestream_databases, secrets_dir, wirebot_service_user, wirebot_workspace,
    wirebot_run_dir, wirebot_agents_dir, standby_config (standby).
    """
    data = host.data
    if data.gateway_install:
        _install_openclaw(data.gateway_nodejs_major, data.gateway_openclaw_version)
    user = data.wirebot_service_user
    state = PurePosixPath(data.gateway_state_dir)
    folders = sorted(_state_folders(data))
    directories(name=f"Ensure {', '.join(folders)} exist ({user}, 700).",
                specs=[(folder, user, user, "700") for folder in folders])  # sorted: parents first
    config = _config(data, user)
    run = data.wirebot_run_dir
    unit = managed_template(
        name=f"Ensure {UNIT}.service is installed.", src=str(TEMPLATES / "openclaw-gateway.service.j2"),
        dest=f"{paths.UNIT_DIR}/{UNIT}.service", user="root", group="root", mode="644",
        user_name=user, home=str(PurePosixPath(data.wirebot_workspace).parent), state_dir=str(state),
        config_file=data.gateway_config_file, run_dir=run, database=data.gateway_database,
        agents_dir=data.wirebot_agents_dir,
        environment_files=[f"{run}/{TOKEN_SECRET}", f"-{run}/{MODEL_KEYS_SECRET}"],
        exec_start=data.gateway_exec.format(port=data.gateway_port), secrets_digest=_secrets_digest(data),
        stop_timeout=data.gateway_stop_timeout_seconds,
        # its state, its config's folder and its home (the workspace, ~/.cache: OpenClaw's fallback temp dir)
        writable=sorted({str(state), str(PurePosixPath(data.gateway_config_file).parent),
                         str(PurePosixPath(data.wirebot_workspace).parent)}),
    )
    gates = [start_gate(UNIT)] if "standby" in host.groups else []  # starts only while the standby activates
    systemd.daemon_reload(name=f"Reload systemd for {UNIT}.", _if=any_changed(unit, *gates))
    serving = roles.serving()
    # Mid-incident (serving None: a fenced primary, its units masked) the enablement is left alone too.
    started = service(name=f"Ensure {UNIT} is {_describe(serving)} here.", unit=UNIT,
                      running=serving, enabled=None if serving is None else "primary" in host.groups)
    if not serving:
        return
    restarted = systemd.service(name=f"Restart {UNIT} for its new unit or config.", service=UNIT, restarted=True,
                                _if=lambda: (unit.did_change() or config.did_change()) and not started.did_change())
    # a standby's wait re-reads its state when it runs: the agent may have been deactivated since the plan
    wait = wait_ready_command(data, paths.state_file(data) if "standby" in host.groups else None)
    server.shell(name=f"Wait for {UNIT}'s /readyz (it was (re)started).", commands=[wait],
                 _if=any_changed(started, restarted))
    if hoststate.fact(host, HttpStatus, url=ready_url(data)) != 200:
        server.shell(name=f"Wait for {UNIT}'s /readyz (not ready when the deploy looked).", commands=[wait])

"""The on-host layout: the one owner of the unit names, the serving services and states, and the state,
fence and marker file names the agents, the host tools and the control side (tasks/) must agree on.

Plain constants and pure functions (no I/O, standard library only): the agents import it on the hosts'
Python 3.9, the control side (tasks/provision, tasks/playbooks) on its own Python. Where a value is a
setting (the connector's unit ``cloudflared_unit``, the state directory ``wirebot_state_dir``: see
tasks/core/settings_schema.py), the default below is the setting's default and the functions take the
configured value; the agents read the configured paths from their rendered config (the deploy renders
them from these functions, tasks/provision/agent_configs.py).
"""

# --- units --------------------------------------------------------------------------------------------
CONNECTOR_UNIT = "cloudflared-wirebot"   # default of the setting cloudflared_unit (the public tunnel)
GATEWAY_UNIT = "openclaw-gateway"        # the OpenClaw gateway (tasks/provision/gateway)
SCOREBOARD_UNIT = "wirebot-scoreboard"   # the scoreboard (tasks/provision/services)
LITESTREAM_UNIT = "litestream"           # Litestream on the primary (tasks/provision/litestream)
REPLICATOR_UNIT = "wirebot-replicator"   # default of the setting replicator_unit (the primary's agent)
STANDBY_UNIT = "wirebot-standby"         # default of the setting standby_unit (the standby's agent)

# The services that serve the public besides the connector: they run on exactly one host at a time, are
# fenced (stopped and masked) with the connector, and are stopped and started by the playbooks with it.
SERVICES = (GATEWAY_UNIT, SCOREBOARD_UNIT)


def serving_units(connector=CONNECTOR_UNIT):
    """Every unit that serves the public, the connector first (the order the fence stops them in)."""
    return (connector,) + SERVICES


def watched_units(connector=CONNECTOR_UNIT):
    """The units the primary's heartbeat reports (their `systemctl is-active`), in the heartbeat's order."""
    return SERVICES + (connector, LITESTREAM_UNIT)


# --- the standby's state machine -----------------------------------------------------------------------
ACTIVATING = "ACTIVATING"
ACTIVE = "ACTIVE"
SERVING_STATES = (ACTIVATING, ACTIVE)  # a standby in one of these serves (or is about to): the primary may not


def serving(state):
    """True when a standby in `state` serves the public (or is about to)."""
    return state in SERVING_STATES


# --- files under the state directory (wirebot_state_dir) ----------------------------------------------
STATE_DIR = "/var/lib/wirebot"  # default of the setting wirebot_state_dir
STATE_FILE = "state.json"       # each agent's persisted state (primary: epoch, sequences; standby: state)
FENCED_FILE = "fenced.json"     # the fence record: written by the fence command, removed by recovery only
RECOVERY_DIR = "recovery"       # recovery's progress markers, one folder per target epoch


def state_file(state_dir=STATE_DIR):
    """The agent's state file (one writer: the host's agent; see wirebot.primary.replicator)."""
    return f"{state_dir.rstrip('/')}/{STATE_FILE}"


def fenced_file(state_dir=STATE_DIR):
    """The fence record on the primary (wirebot.hosttools.fence_command writes it; the gate refuses while
    it exists)."""
    return f"{state_dir.rstrip('/')}/{FENCED_FILE}"


def recovery_markers_dir(state_dir, epoch):
    """The folder of recovery's progress markers for target epoch `epoch` on the primary."""
    return f"{state_dir.rstrip('/')}/{RECOVERY_DIR}/epoch-{int(epoch)}"


def lock_file(state_file_path):
    """The lock the running standby agent holds for its lifetime (the activation CLI checks it)."""
    return f"{state_file_path}.lock"


"""The on-host layout as the control side uses it: unit names, the serving services and states, the state,
fence and recovery-marker files. One owner: the names mirror files/agents/wirebot/common/layout.py (the
agents' side, being landed this round); once it is on main this module only re-exports it, so tasks/
and the agents read one definition. Where a value is a setting (cloudflared_unit, wirebot_state_dir,
replicator_unit, standby_unit: tasks/core/settings_schema.py) the default is here and the functions
take the configured value (tasks/core/paths.py applies them to host data).
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
    """The agent's state file."""
    return f"{state_dir.rstrip('/')}/{STATE_FILE}"


def fenced_file(state_dir=STATE_DIR):
    """The fence record on the primary (the fence command writes it; the gate refuses while it exists)."""
    return f"{state_dir.rstrip('/')}/{FENCED_FILE}"


def recovery_markers_dir(state_dir, epoch):
    """The folder of recovery's progress markers for target epoch `epoch` on the primary."""
    return f"{state_dir.rstrip('/')}/{RECOVERY_DIR}/epoch-{int(epoch)}"

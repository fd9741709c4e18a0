"""What each host should be doing right now, from its role and the state the agents recorded.

Read from the host (never changed by the deploy itself), so a re-run keeps an active standby serving
and a fenced primary fenced instead of undoing an incident.
"""

from pyinfra import host
from wirebot.common import layout

from tasks.core import hoststate, pairs, paths
from tasks.core.ops import WirebotState


def reads(target) -> dict:
    """What these functions read on `target` (tasks/provision/reads.py)."""
    return {"paths": [paths.fenced_file(target.data)],
            "facts": [(WirebotState, {"path": paths.state_file(target.data)})]}


def agent_state(on=None) -> dict:
    """The agents' state file on this host, or on host `on` ({} when there is none yet)."""
    target = on or host
    return hoststate.fact(target, WirebotState, path=paths.state_file(target.data)) or {}


def standby_serving() -> bool:
    """This host's pair's standby is the active side (or becoming it): an incident is on."""
    standby = pairs.pair_of(host).standby
    return layout.serving(agent_state(standby).get("state"))


def epoch() -> int:
    """This host's epoch (1 until a failover or recovery raises it)."""
    return int(agent_state().get("epoch", 1))


def fenced() -> bool:
    """The primary's connector was fenced by the standby (the fence command's marker is present)."""
    return bool(hoststate.path(host, paths.fenced_file(host.data)))


def serving():
    """True: services must run; False: must be stopped; None: leave them as they are (mid-incident)."""
    if "primary" in host.groups:
        return None if fenced() or standby_serving() else True
    state = agent_state().get("state", "STANDBY")
    if state == layout.ACTIVE:
        return True
    if state == layout.ACTIVATING:
        return None
    return False

"""What each host should be doing right now, from its role and the state the agents recorded.

Read from the host (never changed by the deploy itself), so a re-run keeps an active standby serving
and a fenced primary fenced instead of undoing an incident.
"""

from pyinfra import host
from pyinfra.facts.files import File

from tasks.provision import paths
from tasks.provision.ops import WirebotState


def agent_state() -> dict:
    """The agents' state file on this host ({} when there is none yet)."""
    return host.get_fact(WirebotState, path=paths.state_file(host.data)) or {}


def epoch() -> int:
    """This host's epoch (1 until a failover or recovery raises it)."""
    return int(agent_state().get("epoch", 1))


def fenced() -> bool:
    """The primary's connector was fenced by the standby (the fence command's marker is present)."""
    return bool(host.get_fact(File, path=f"{host.data.wirebot_state_dir}/fenced.json"))


def serving():
    """True: services must run; False: must be stopped; None: leave them as they are (mid-incident)."""
    if "primary" in host.groups:
        return None if fenced() else True
    state = agent_state().get("state", "STANDBY")
    if state == "ACTIVE":
        return True
    if state == "ACTIVATING":
        return None
    return False

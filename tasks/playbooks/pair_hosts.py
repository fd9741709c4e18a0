"""The two hosts of the pair a playbook acts on, as the incident playbooks name them."""

from pyinfra import inventory, state

from tasks.core import pairs
from tasks.provision.trust import address_of  # noqa: F401 - re-exported: the address others reach a host at


def pair():
    """(primary, standby) of the one pair this run acts on: the pair `--limit NAME` names, optional with
    one pair in the inventory (tasks/core/pairs.py; PairError otherwise)."""
    chosen = pairs.selected(state, inventory, "an incident playbook")
    return chosen.primary, chosen.standby

"""The two hosts of the inventory, as the incident playbooks name them."""

from pyinfra import inventory

from tasks.provision.trust import address_of  # noqa: F401 - re-exported: the address others reach a host at


def pair():
    """(primary, standby): the first host of each inventory group."""
    primaries, standbys = inventory.get_group("primary"), inventory.get_group("standby")
    if not primaries or not standbys:
        raise RuntimeError("the inventory needs a 'primary' and a 'standby' group (one host each)")
    return primaries[0], standbys[0]

"""Pairs: which primary and standby belong together. The one place that answers "my pair" and "my peer".

An inventory may hold several primary/standby pairs (Wirebot's own, and white-label clients' each with
a pair of their own). Every host is in exactly one of the groups `primary` and `standby`, and names its
pair in the host data key `pair` (tasks/core/settings_schema.py, default "wirebot": a one-pair inventory need
not set it). The inventories also declare a group per pair, named after it, so `--limit NAME` acts on one pair.

Refused before anything runs, with the hosts and the pair named:
- a host in neither role group, or in both;
- a pair name that is not a plain lower-case name, or is a group name of its own (all, primary, standby);
- a host in two pairs (its `pair` says one, a pair group of another lists it);
- a pair with a missing side, or with two primaries or two standbys (an ambiguous inventory: e.g. two
  pairs whose hosts do not say which pair they are in);
- two pairs sharing a secrets directory, a tunnel (its id in the credentials) or a secret (the agents'
  HMAC key, the gateway token): keys, certificates, secrets and tunnel are per pair. The keys made on
  the hosts (TLS channel identities, control keys, the fence and replication keys) are per host, and
  each is trusted by its own pair's peer only.

Each deploy and playbook asks `pair_of(host)` / `peer_of(host)`; `selected(state)` is the one pair a
playbook acts on (the pair named by `--limit`; optional with one pair).
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from pyinfra.api.exceptions import PyinfraError

from tasks.core.settings_schema import KINDS, SETTINGS

ROLES = ("primary", "standby")
DEFAULT_PAIR = SETTINGS["pair"].default
VALID_NAME, NAME_TEXT = KINDS["pair"]
# Secrets that must differ from pair to pair (files in each pair's secrets_dir); the tunnel is compared by
# the id in its credentials (check_secrets).
PER_PAIR_SECRETS = ("agent-hmac.key", "gateway-token.env")


class PairError(PyinfraError):
    """The inventory's pairs are wrong; the message names the hosts, the pair and what to change (a
    PyinfraError: pyinfra stops the run with the message, before any operation runs)."""


@dataclass(frozen=True)
class Pair:
    """One primary/standby pair: its name and its two hosts (pyinfra Hosts, or names in checks)."""

    name: str
    primary: Any
    standby: Any

    def hosts(self) -> tuple:
        return (self.primary, self.standby)


@dataclass(frozen=True)
class Entry:
    """What the check needs to know of one host: its name, role groups, pair, pair groups and data."""

    name: str
    roles: frozenset
    pair: Any
    groups: frozenset = frozenset()
    data: Any = None
    source: str = "the inventory"


def check_name(name, where: str) -> str:
    if not VALID_NAME(name):
        raise PairError(f"{where}: pair name {name!r} must be {NAME_TEXT}")
    return name


def build(entries: Iterable[Entry]) -> Dict[str, Pair]:
    """{name: Pair} of `entries` (Pair's hosts are the entries' `data` when set, else their names);
    PairError for everything the module docstring lists except the secrets (see `check_secrets`)."""
    entries = list(entries)
    by_name: Dict[str, Entry] = {}
    for entry in entries:
        seen = by_name.get(entry.name)
        if seen is not None and seen.pair != entry.pair:
            raise PairError(f"{entry.source}: host {entry.name} is in two pairs ({seen.pair!r} and {entry.pair!r}): "
                            "a host belongs to one pair only")
        if seen is not None and seen.roles != entry.roles:
            entry = Entry(entry.name, seen.roles | entry.roles, entry.pair, entry.groups, entry.data, entry.source)
        by_name[entry.name] = entry
    names = {entry.pair for entry in by_name.values()}
    members: Dict[str, Dict[str, List[Entry]]] = {}
    for entry in by_name.values():
        roles = sorted(entry.roles & set(ROLES))
        if len(roles) != 1:
            where = ("both the 'primary' and the 'standby' group" if roles
                     else "neither the 'primary' nor the 'standby' group")
            raise PairError(f"{entry.source}: host {entry.name} is in {where}: every host is one pair's primary or "
                            "its standby")
        check_name(entry.pair, f"{entry.source}: host {entry.name}")
        other = sorted((entry.groups & names) - {entry.pair})
        if other:
            raise PairError(f"{entry.source}: host {entry.name} is in two pairs ({entry.pair!r} by its 'pair', "
                            f"{other[0]!r} by group): a host belongs to one pair only")
        members.setdefault(entry.pair, {"primary": [], "standby": []})[roles[0]].append(entry)
    pairs = {}
    for name, sides in sorted(members.items()):
        for role in ROLES:
            found = sides[role]
            if not found:
                other = sides[other_role(role)][0]
                raise PairError(f"{other.source}: pair {name!r} has no {role} (its {other_role(role)} is "
                                f"{other.name}): add the {role} host with pair {name!r}")
            if len(found) > 1:
                raise PairError(f"{found[0].source}: pair {name!r} has {len(found)} {role} hosts "
                                f"({', '.join(e.name for e in found)}), which is ambiguous: give each host the "
                                "'pair' it belongs to (settings.yml: the `pairs:` form), one primary and one "
                                "standby per pair")
        primary, standby = sides["primary"][0], sides["standby"][0]
        pairs[name] = Pair(name, primary.data if primary.data is not None else primary.name,
                           standby.data if standby.data is not None else standby.name)
    return pairs


def other_role(role: str) -> str:
    return "standby" if role == "primary" else "primary"


def entries_of_inventory(inventory) -> List[Entry]:
    """Entries for pyinfra's inventory (each with the Host as data)."""
    return [Entry(h.name, frozenset(set(h.groups) & set(ROLES)), h.data.get("pair"), frozenset(h.groups), h,
                  "the inventory") for h in inventory]


def entries_of_hosts(hosts: Dict[str, list], source: str) -> List[Entry]:
    """Entries for an inventory file's {role: [(name, host_data)]}."""
    out = []
    for role, listed in hosts.items():
        for name, data in listed:
            out.append(Entry(name, frozenset({role}), (data or {}).get("pair", DEFAULT_PAIR), frozenset(),
                             None, source))
    return out


def check_hosts(hosts: Dict[str, list], source: str) -> Dict[str, Pair]:
    """For an inventory file, before pyinfra connects: its {role: [(name, host_data)]} make sound pairs
    with their own secrets and tunnel (host data without secrets_dir/cloudflared_secrets: group_data's)."""
    found = build(entries_of_hosts(hosts, source))
    data = {name: values or {} for listed in hosts.values() for name, values in listed}
    check_secrets(found, lambda name: data[name].get("secrets_dir"),
                  lambda name: data[name].get("cloudflared_secrets") or "cloudflared")
    return found


# --- the inventory pyinfra runs with -------------------------------------------------------------------

_RESOLVED: Dict[int, tuple] = {}  # id(inventory) -> (inventory, its pairs): holding the inventory keeps its id
# from being reused by another one while the entry stands


def pairs(inventory=None) -> Dict[str, Pair]:
    """Every pair of pyinfra's inventory, checked once per inventory (PairError when it is wrong)."""
    if inventory is None:
        from pyinfra import inventory
    if hasattr(inventory, "_get_module"):  # pyinfra's context proxy: the inventory of this run
        inventory = inventory._get_module()
    key = id(inventory)
    if key not in _RESOLVED or _RESOLVED[key][0] is not inventory:
        found = build(entries_of_inventory(inventory))
        check_secrets(found, lambda h: h.data.get("secrets_dir"),
                      lambda h: h.data.get("cloudflared_secrets") or "cloudflared")
        _RESOLVED[key] = (inventory, found)  # only once sound: every later lookup raises the same error until then
    return _RESOLVED[key][1]


def pair_of(host=None, inventory=None) -> Pair:
    """The pair `host` (default: the host pyinfra is preparing) belongs to."""
    name = _current_host().name if host is None else host.name
    for pair in pairs(inventory).values():
        if name in (pair.primary.name, pair.standby.name):
            return pair
    raise PairError(f"host {name} is in no pair")


def peer_of(host=None, inventory=None):
    """The other host of `host`'s pair (default: the host pyinfra is preparing): the one host it trusts,
    replicates to and heartbeats with."""
    name = _current_host().name if host is None else host.name
    pair = pair_of(host, inventory)
    return pair.standby if pair.primary.name == name else pair.primary


def _current_host():
    from pyinfra import host as current

    return current._get_module()


def address_of(other) -> str:
    """The address other hosts use to reach `other` (its inventory name unless ssh_hostname is set)."""
    return other.data.get("ssh_hostname") or other.name


def selected(state, inventory=None, what: str = "this playbook") -> Pair:
    """The one pair a playbook acts on: the pair of the hosts pyinfra was limited to (`--limit NAME`),
    or the only pair. PairError when the run would span several pairs."""
    every = pairs(inventory)
    if hasattr(state, "_get_module"):
        state = state._get_module()
    if len(every) == 1:
        return next(iter(every.values()))
    chosen = [p for p in every.values() if any(state.is_host_in_limit(h) for h in p.hosts())]
    if len(chosen) != 1:
        raise PairError(f"{what} acts on one pair and the inventory has {len(every)} "
                        f"({', '.join(sorted(every))}): name it with `--limit NAME`")
    return chosen[0]


def selected_hosts(what: str = "this playbook") -> tuple:
    """(primary, standby) of the one pair this pyinfra run acts on (selected(), from pyinfra's context)."""
    from pyinfra import inventory, state

    chosen = selected(state, inventory, what)
    return chosen.primary, chosen.standby


def in_limit(state, inventory=None) -> List[Pair]:
    """The pairs with a host in pyinfra's limit (every pair without --limit), by name."""
    if hasattr(state, "_get_module"):
        state = state._get_module()
    return [p for _, p in sorted(pairs(inventory).items())
            if any(state.is_host_in_limit(h) for h in p.hosts())]


# --- per pair secrets ----------------------------------------------------------------------------------

def _digest(path: Path) -> Optional[str]:
    try:
        return hashlib.sha256(path.read_bytes().strip()).hexdigest()
    except OSError:
        return None


def _tunnel(folder: Path) -> Dict[str, str]:
    """The tunnel id in a secrets dir's cloudflared credentials ({} when unreadable: the secrets check
    reports a missing file)."""
    try:
        credentials = json.loads((folder / "credentials.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(credentials, dict):
        return {}
    return {"TunnelID": str(credentials["TunnelID"])} if credentials.get("TunnelID") else {}


def check_secrets(every: Dict[str, Pair], secrets_dir_of, cloudflared_of) -> None:
    """Keys, secrets and tunnel are per pair: refuse two pairs sharing a secrets directory, a tunnel
    (id or secret) or any of PER_PAIR_SECRETS; both hosts of a pair use the same secrets directory."""
    if len(every) < 2:
        return
    owners: Dict[tuple, str] = {}

    def claim(what: tuple, pair: str, text: str) -> None:
        if what in owners and owners[what] != pair:
            raise PairError(f"pairs {owners[what]!r} and {pair!r} share {text}: keys, secrets and the tunnel are per "
                            "pair (give each pair its own secrets_dir, tunnel and keys)")
        owners[what] = pair

    for name, pair in every.items():
        dirs = {secrets_dir_of(h) for h in pair.hosts()}
        if len(dirs) != 1 or None in dirs:
            raise PairError(f"pair {name!r}: its two hosts must name one secrets_dir (found {sorted(map(str, dirs))})")
        folder = Path(str(dirs.pop())).expanduser().resolve()
        claim(("dir", str(folder)), name, f"the secrets directory {folder}")
        for secret in PER_PAIR_SECRETS:
            digest = _digest(folder / secret)
            if digest:
                claim((secret, digest), name, f"the same {secret}")
        tunnel = _tunnel(folder / cloudflared_of(pair.primary))
        for key, value in tunnel.items():
            claim((key, value), name, f"the tunnel {value}")

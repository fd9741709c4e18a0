"""The operator's own settings: host addresses and the secrets directory, kept outside git.

File: ``$WIREBOT_SETTINGS`` or ``~/.config/wirebot/settings.yml``. Shape::

    primary:
      address: 203.0.113.10        # required: the primary's SSH address
      ssh_user: root               # optional, default root
      ssh_key: ~/.ssh/id_ed25519   # optional, default: ssh's own choice
      ssh_port: 22                 # optional
    standby:
      address: 203.0.113.20        # written by `python tasks/hetzner.py create`
    secrets_dir: ~/.config/wirebot/secrets   # optional, this is the default
    metrics_sources: [198.51.100.7] # optional: the Prometheus server's IP address(es), see
                                    # group_data/all.py agent_metrics_sources (needs prometheus/client.crt)

Environment variables override the file: WIREBOT_PRIMARY_ADDRESS, WIREBOT_STANDBY_ADDRESS,
WIREBOT_SECRETS_DIR. No address has a default: a missing one is an error naming what to set.

Several pairs (Wirebot's and white-label clients', each with its own hosts, keys, secrets and tunnel;
tasks/core/pairs.py) use the ``pairs:`` form instead of top-level ``primary:``/``standby:`` (mixing both is
refused)::

    pairs:
      wirebot:                       # the pair's name: lower-case letters, digits, _ (a pyinfra group:
        primary: {address: 203.0.113.10}       #   `--limit wirebot` acts on this pair alone)
        standby: {address: 203.0.113.20, ssh_user: root}
      acme:
        primary: {address: 198.51.100.10}
        standby: {address: 198.51.100.20}
        secrets_dir: ~/clients/acme/secrets  # optional; default: <secrets_dir>/<pair name>
        data:                                # optional host data of both hosts of this pair, e.g.
          witness_public_url: https://wins.acme.example/health    # the client's own public hostnames
        hetzner: {location: nbg1}            # optional: this pair's own Hetzner settings (tasks/hetzner.py)
    secrets_dir: ~/.config/wirebot/secrets   # here the parent of each pair's own secrets directory
    metrics_sources: [198.51.100.7]          # every pair's hosts

In this form WIREBOT_PRIMARY_ADDRESS and WIREBOT_STANDBY_ADDRESS are refused (which pair's?); the
one-pair form above is the pair named "wirebot" (group_data/all.py `pair`). `python tasks/hetzner.py create
--pair NAME` writes pairs.NAME.standby.address (save_address edits that one line).
"""

import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from tasks.core.settings_schema import SETTINGS

ROLES = ("primary", "standby")
DEFAULT_PAIR = SETTINGS["pair"].default  # the one-pair form's pair


class SettingsError(Exception):
    """The operator's settings are missing or malformed; the message says what to set, and where."""


def settings_path() -> Path:
    """Where the operator's settings file is (it need not exist)."""
    return Path(os.environ.get("WIREBOT_SETTINGS", "~/.config/wirebot/settings.yml")).expanduser()


def load(path: Path = None) -> Dict[str, Any]:
    """The settings file as a dict ({} when the file does not exist); malformed YAML is an error."""
    path = path or settings_path()
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise SettingsError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping at the top level, found {type(data).__name__}")
    for role in ROLES:
        if data.get(role) is not None and not isinstance(data[role], dict):  # `standby:` alone is empty
            raise SettingsError(f"{path}: '{role}' must be a mapping with at least 'address'")
    if "pairs" in data:
        _check_pairs_form(data, path)
    return data


PAIR_KEYS = {"primary", "standby", "secrets_dir", "data", "hetzner"}


def _check_pairs_form(data: Dict[str, Any], path: Path) -> None:
    """The `pairs:` form's shape (names and addresses are checked by pair_settings and tasks/core/pairs.py)."""
    mixed = [role for role in ROLES if role in data]
    if mixed:
        raise SettingsError(f"{path}: top-level '{mixed[0]}' beside 'pairs': use one form (move it into its pair "
                            "under 'pairs:')")
    pairs = data["pairs"]
    if not isinstance(pairs, dict) or not pairs:
        raise SettingsError(f"{path}: 'pairs' must map each pair's name to its 'primary' and 'standby'")
    for name, pair in pairs.items():
        if not isinstance(pair, dict):
            raise SettingsError(f"{path}: pairs.{name} must be a mapping with 'primary' and 'standby'")
        unknown = sorted(set(pair) - PAIR_KEYS)
        if unknown:
            raise SettingsError(f"{path}: pairs.{name}.{unknown[0]} is not a pair setting "
                                f"(known: {', '.join(sorted(PAIR_KEYS))})")
        for role in ROLES:
            if not isinstance(pair.get(role), dict):
                raise SettingsError(f"{path}: pairs.{name}.{role} must be a mapping with at least 'address' "
                                    "(a pair has both sides)")
        if pair.get("data") is not None and not isinstance(pair["data"], dict):
            raise SettingsError(f"{path}: pairs.{name}.data must be a mapping of host data keys")


def save_address(role: str, address: str, path: Path = None, pair: str = None) -> Path:
    """Record `address` as the `role` host's address (of pair `pair` in the ``pairs:`` form); returns the file.

    Only the one ``address:`` line under ``role:`` (``pairs.PAIR.role:``) changes, or is added: every other
    line, comment and layout of the operator's file stays as it was; a flow mapping on the role's line
    (``standby: {address: ..., ssh_user: root}``) is rewritten on that line. The edited text must load as
    the old settings with just that address changed, else nothing is written and SettingsError says what
    to set by hand. In the ``pairs:`` form `pair` must name one of its pairs (it may be left out when there
    is only one); in the one-pair form it must be left out or be the default pair.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    path = path or settings_path()
    data = load(path)
    if "pairs" in data:
        pair = pair_name(data, pair, path, "recording an address")
        keys = ("pairs", pair, role)
        pairs = dict(data["pairs"])
        pairs[pair] = dict(pairs[pair], **{role: dict(pairs[pair][role] or {}, address=address)})
        expected = dict(data, pairs=pairs)
        by_hand = f"'pairs: {{{pair}: {{{role}: {{address: {address}}}}}}}'"
    else:
        pair_name(data, pair, path, "recording an address")
        keys = (role,)
        expected = dict(data, **{role: dict(data.get(role) or {}, address=address)})
        by_hand = f"'{role}: {{address: {address}}}'"
    old = path.read_text() if path.exists() else ""
    new = _with_address(old, keys, address)
    try:
        same = new is not None and yaml.safe_load(new) == expected
    except yaml.YAMLError:
        same = False
    if not same:
        raise SettingsError(f"{path}: could not record {'.'.join(keys)}.address by editing one line (unusual "
                            f"layout); set it by hand: {by_hand}")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def pair_name(data: Dict[str, Any], pair: Optional[str], path: Path, what: str) -> str:
    """The pair `pair` names in the settings `data` (which pair `what` is for): optional when there is
    one pair; SettingsError naming the known pairs when it is unknown, or missing among several."""
    known = sorted(map(str, data["pairs"])) if "pairs" in data else [DEFAULT_PAIR]
    if pair is None:
        if len(known) > 1:
            raise SettingsError(f"{path} has {len(known)} pairs ({', '.join(known)}): name the one for {what} "
                                "(--pair NAME)")
        return known[0]
    if pair not in known:
        form = "its pairs are" if "pairs" in data else "it uses the one-pair form, whose pair is"
        raise SettingsError(f"no pair {pair!r} in {path}: {form} {', '.join(known)}")
    return pair


def recorded_address(role: str, data: Dict[str, Any], pair: str = None) -> Any:
    """The address recorded for `role` (of `pair` in the ``pairs:`` form) in the settings `data`, or None."""
    if "pairs" in data:
        section = (data["pairs"].get(pair) or {}).get(role)
    else:
        section = data.get(role)
    return (section or {}).get("address")


ADDRESS_LINE = re.compile(r"^(?P<indent>[ \t]+)address[ \t]*:(?P<value>[^#\n]*?)(?P<comment>[ \t]+#.*)?$")


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def _significant(line: str) -> bool:
    """Neither blank nor a comment."""
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _block(lines: List[str], head: int) -> range:
    """The lines below the key on line `head` that are its block (up to the next line indented no deeper)."""
    depth = len(_indent(lines[head])) if head >= 0 else -1
    end = head + 1
    for index in range(head + 1, len(lines)):
        if _significant(lines[index]):
            if len(_indent(lines[index])) <= depth:
                break
            end = index + 1
    return range(head + 1, end)


def _child_indent(lines: List[str], block: range) -> Optional[str]:
    for index in block:
        if _significant(lines[index]):
            return _indent(lines[index])
    return None


def _with_address(text: str, keys: tuple, address: str) -> Optional[str]:
    """`text` with the address line of the mapping at `keys` (e.g. ("standby",) or ("pairs", NAME,
    "standby")) set to `address` (quoted), added when missing; None when the layout is not one it can
    edit by lines (a flow mapping above the last key)."""
    value = json.dumps(address)  # a quoted YAML scalar: an IPv6 address is never read as a number
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    block, indent = range(0, len(lines)), ""
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        head = re.compile(rf"^{re.escape(indent)}(?P<q>[\"']?){re.escape(key)}(?P=q)[ \t]*:"
                          r"(?P<rest>[^#\n]*)(?P<comment>#.*)?$")
        found = next((i for i in block if head.match(lines[i].rstrip("\n"))), None)
        if found is None:  # add the missing mappings, after the parent's block
            add = [f"{indent}{'  ' * n}{k}:\n" for n, k in enumerate(keys[depth:])]
            add.append(f"{indent}{'  ' * (len(keys) - depth)}address: {value}\n")
            return "".join(lines[: block.stop] + add + lines[block.stop :])
        match = head.match(lines[found].rstrip("\n"))
        rest = match.group("rest").strip()
        comment = f" {match.group('comment')}" if match.group("comment") else ""
        if rest and rest not in ("null", "~", "{}"):
            if not last:
                return None  # a flow mapping or a scalar above the role: not edited by lines
            try:
                section = dict(yaml.safe_load(rest) or {}, address=address)
            except (yaml.YAMLError, TypeError, ValueError):
                return None
            flow = yaml.safe_dump(section, default_flow_style=True, width=10_000).strip()
            lines[found] = f"{indent}{match.group('q')}{key}{match.group('q')}: {flow}{comment}\n"
            return "".join(lines)
        if rest:  # `key: null` or `key: {}`: an empty block from here on
            lines[found] = f"{indent}{match.group('q')}{key}{match.group('q')}:{comment}\n"
        block = _block(lines, found)
        child = _child_indent(lines, block)
        if child is None or len(child) <= len(indent):
            child = f"{indent}  "
        if last:
            for index in block:
                address_line = ADDRESS_LINE.match(lines[index].rstrip("\n"))
                if address_line and address_line.group("indent") == child:
                    lines[index] = f"{child}address: {value}{address_line.group('comment') or ''}\n"
                    return "".join(lines)
            lines.insert(found + 1, f"{child}address: {value}\n")
            return "".join(lines)
        indent = child
    return None


def host_settings(role: str, data: Dict[str, Any] = None, path: Path = None) -> Dict[str, Any]:
    """The connection settings of `role`, with environment overrides; an error when no address is set."""
    path = path or settings_path()
    data = load(path) if data is None else data
    section = dict(data.get(role) or {})
    env_name = f"WIREBOT_{role.upper()}_ADDRESS"
    if os.environ.get(env_name):
        section["address"] = os.environ[env_name]
    return _checked_address(section, role, path, missing=(
        f"no address for the {role} host: set {env_name}, or '{role}: {{address: ...}}' in {path}"))


def _checked_address(section: Dict[str, Any], where: str, path: Path, missing: str = None) -> Dict[str, Any]:
    """`section` when its address is set and an IP address; SettingsError naming `where` otherwise."""
    if not section.get("address"):
        raise SettingsError(missing or f"no address for {where}: set '{where}.address' in {path}")
    try:
        ipaddress.ip_address(str(section["address"]))
    except ValueError:
        raise SettingsError(
            f"{where}.address {section['address']!r} in {path} must be an IP address: the standby's witness "
            "compares it with the origin IPs Cloudflare reports for the tunnel's connectors"
        ) from None
    return section


def pair_settings(data: Dict[str, Any] = None, path: Path = None) -> Dict[str, Dict[str, Any]]:
    """Every pair of the settings: {name: {"primary": section, "standby": section, "secrets_dir": Path,
    "data": {host data}, "named": bool}}. The one-pair form is {"wirebot": ...} with named False (its
    hosts keep the default `pair`, tasks/core/settings_schema.py); SettingsError names what to set."""
    path = path or settings_path()
    data = load(path) if data is None else data
    if "pairs" not in data:
        return {DEFAULT_PAIR: {"primary": host_settings("primary", data, path),
                            "standby": host_settings("standby", data, path),
                            "secrets_dir": secrets_dir(data), "data": {}, "named": False}}
    for role in ROLES:
        if os.environ.get(f"WIREBOT_{role.upper()}_ADDRESS"):
            raise SettingsError(f"WIREBOT_{role.upper()}_ADDRESS is set but {path} uses the 'pairs:' form: unset "
                                f"it and set pairs.NAME.{role}.address")
    parent = secrets_dir(data)
    out = {}
    for name, pair in data["pairs"].items():
        sections = {role: _checked_address(dict(pair[role]), f"pairs.{name}.{role}", path) for role in ROLES}
        own = Path(pair["secrets_dir"]).expanduser() if pair.get("secrets_dir") else parent / str(name)
        out[str(name)] = {**sections, "secrets_dir": own, "data": dict(pair.get("data") or {}), "named": True}
    return out


def secrets_dir(data: Dict[str, Any] = None) -> Path:
    """The operator's secrets directory on this control machine (never inside the git checkout)."""
    data = load() if data is None else data
    value = os.environ.get("WIREBOT_SECRETS_DIR") or data.get("secrets_dir") or "~/.config/wirebot/secrets"
    return Path(value).expanduser()

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
tasks/pairs.py) use the ``pairs:`` form instead of top-level ``primary:``/``standby:`` (mixing both is
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
    secrets_dir: ~/.config/wirebot/secrets   # here the parent of each pair's own secrets directory
    metrics_sources: [198.51.100.7]          # every pair's hosts

In this form WIREBOT_PRIMARY_ADDRESS and WIREBOT_STANDBY_ADDRESS are refused (which pair's?); the
one-pair form above is the pair named "wirebot" (group_data/all.py `pair`).
"""

import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Any, Dict

import yaml

from tasks.settings_schema import SETTINGS

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


PAIR_KEYS = {"primary", "standby", "secrets_dir", "data"}


def _check_pairs_form(data: Dict[str, Any], path: Path) -> None:
    """The `pairs:` form's shape (names and addresses are checked by pair_settings and tasks/pairs.py)."""
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


def save_address(role: str, address: str, path: Path = None) -> Path:
    """Record `address` as the `role` host's address; returns the file.

    Only the one ``address:`` line under ``role:`` changes (or is added): every other line, comment and
    layout of the operator's file stays as it was. The edited text must load as the old settings with
    just that address changed, else nothing is written and SettingsError says what to set by hand.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    path = path or settings_path()
    data = load(path)
    if "pairs" in data:
        raise SettingsError(f"{path}: uses the 'pairs:' form; set the address by hand: "
                            f"'pairs: {{NAME: {{{role}: {{address: {address}}}}}}}'")
    expected = dict(data, **{role: dict(data.get(role) or {}, address=address)})
    old = path.read_text() if path.exists() else ""
    new = _with_address(old, role, address)
    try:
        same = yaml.safe_load(new) == expected
    except yaml.YAMLError:
        same = False
    if not same:
        raise SettingsError(f"{path}: could not record {role}.address by editing one line (unusual layout); "
                            f"set it by hand: '{role}: {{address: {address}}}'")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


ADDRESS_LINE = re.compile(r"^(?P<indent>[ \t]+)address[ \t]*:(?P<value>[^#\n]*?)(?P<comment>[ \t]+#.*)?$")


def _with_address(text: str, role: str, address: str) -> str:
    """`text` with `role`'s address line set to `address` (quoted), added when missing."""
    value = json.dumps(address)  # a quoted YAML scalar: an IPv6 address is never read as a number
    lines = text.splitlines(keepends=True)
    head = re.compile(rf"^{role}[ \t]*:(?P<rest>[^#\n]*)(?P<comment>#.*)?$")
    for index, line in enumerate(lines):
        match = head.match(line.rstrip("\n"))
        if not match:
            continue
        rest = match.group("rest").strip()
        if rest and rest not in ("null", "~", "{}"):  # a flow mapping on the role's line: rewrite that line
            section = dict(yaml.safe_load(rest) or {}, address=address)
            flow = yaml.safe_dump(section, default_flow_style=True, width=10_000).strip()
            comment = f" {match.group('comment')}" if match.group("comment") else ""
            lines[index] = f"{role}: {flow}{comment}\n"
            return "".join(lines)
        if rest:  # `role: null` or `role: {}`: an empty block from here on
            comment = f" {match.group('comment')}" if match.group("comment") else ""
            lines[index] = f"{role}:{comment}\n"
        block, indent = [], None
        for child in range(index + 1, len(lines)):
            stripped = lines[child].strip()
            if stripped and not lines[child][0].isspace():
                break  # the next top-level key
            if stripped and not stripped.startswith("#"):
                indent = indent or lines[child][: len(lines[child]) - len(lines[child].lstrip())]
                block.append(child)
        for child in block:
            found = ADDRESS_LINE.match(lines[child].rstrip("\n"))
            if found and found.group("indent") == indent:
                lines[child] = f"{indent}address: {value}{found.group('comment') or ''}\n"
                return "".join(lines)
        lines.insert(index + 1, f"{indent or '  '}address: {value}\n")
        if not lines[index].endswith("\n"):
            lines[index] += "\n"
        return "".join(lines)
    separator = "" if not text or text.endswith("\n") else "\n"
    return f"{text}{separator}{role}:\n  address: {value}\n"


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
    hosts keep the default `pair`, tasks/settings_schema.py); SettingsError names what to set."""
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

"""Resolve and check the standby's settings: defaults < the settings file's ``hetzner:`` < CLI flags.

Everything is checked here, before any API call: a missing or malformed value is a SettingsProblem
naming the key and where it came from (the settings file, a flag, or the default).

Per pair (the settings file's ``pairs:`` form, tasks/core/operator_settings.py): defaults < the top-level
``hetzner:`` < the pair's own ``pairs.NAME.hetzner:`` < flags, and the primary's address defaults to
``pairs.NAME.primary.address`` (a top-level ``hetzner.primary_address`` is refused: whose primary?).
Two pairs never share a server, firewall or SSH key:
- the default pair (``wirebot``, and the one-pair form) keeps the names and labels of the settings;
- every other pair gets its name woven into the server, firewall and SSH key names its own mapping does
  not set (``wirebot-standby`` -> ``wirebot-standby-acme``; ``_`` becomes ``-``), and the label
  ``wirebot-pair=NAME`` on all three;
- a resource labelled ``wirebot-pair`` with another pair's name is never ours (resources._ours): not
  found, changed or deleted for this pair, even under our name;
- two pairs of the file resolving to the same server or firewall name, or uploading different public key
  files under one SSH key name, are refused.
"""

import base64
import hashlib
import ipaddress
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from tasks.core import operator_settings
from tasks.core.settings_schema import KINDS
from tasks.hetzner_cloud.errors import SettingsProblem

PAIR_NAME, PAIR_NAME_TEXT = KINDS["pair"]

PREFIX = "hetzner_"
KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
HOSTNAME = re.compile(r"^(?=.{1,63}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
LABEL_KEY = re.compile(r"^([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")


@dataclass(frozen=True)
class StandbySpec:
    """The checked, normalised settings of one standby server (`delete` needs only the first four)."""

    name: str
    labels: Dict[str, str]
    firewall_name: str
    settings_file: Path
    pair: str = operator_settings.DEFAULT_PAIR
    paired: bool = False  # the settings file uses the `pairs:` form
    server_type: str = ""
    location: str = ""
    image: str = ""
    public_key_path: Optional[Path] = None
    public_key: str = ""
    fingerprint: str = ""
    key_name: str = ""
    operator_cidrs: Tuple[str, ...] = ()
    primary_cidr: str = ""
    agent_port: int = 0

    @property
    def label_selector(self) -> str:
        """The labels as a Hetzner label selector, e.g. ``app=wirebot,role=standby``."""
        return ",".join(f"{key}={value}" for key, value in sorted(self.labels.items()))

    @property
    def standby_key(self) -> str:
        """Where the standby's address is recorded in the settings file, e.g. ``pairs.acme.standby``."""
        return f"pairs.{self.pair}.standby" if self.paired else "standby"


def md5_fingerprint(blob: bytes) -> str:
    """The MD5 fingerprint Hetzner shows for a key: hex pairs of MD5(decoded key blob), colon-joined."""
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def read_public_key(path: Path) -> Tuple[str, str]:
    """The public key line in `path` and its MD5 fingerprint; ValueError says what is wrong."""
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    text = path.read_text(errors="replace")
    if "PRIVATE KEY" in text:
        raise ValueError(f"{path} is a private key: point to the public key (.pub) instead")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if len(lines) != 1:
        raise ValueError(f"{path} must hold exactly one public key line, found {len(lines)}")
    parts = lines[0].split()
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise ValueError(f"{path} is not an OpenSSH public key ('ssh-ed25519 AAAA... comment')")
    try:
        blob = base64.b64decode(parts[1], validate=True)
        (size,) = struct.unpack(">I", blob[:4])
        embedded = blob[4 : 4 + size].decode()
    except (ValueError, struct.error, UnicodeDecodeError):
        raise ValueError(f"{path}: the key data is not valid base64 of an SSH key") from None
    if embedded != parts[0]:
        raise ValueError(f"{path}: the key data is a {embedded!r} key, but the line says {parts[0]!r}")
    return " ".join(parts), md5_fingerprint(blob)


def _network(value: Any) -> Union[ipaddress.IPv4Network, ipaddress.IPv6Network]:
    try:
        return ipaddress.ip_network(str(value).strip(), strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or CIDR (e.g. 198.51.100.7/32)") from None


def _cidrs(value: Any) -> Tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError(
            "is required: a list of the addresses you SSH from, e.g. [198.51.100.7/32] "
            "(there is no default, so SSH is never open to the world)"
        )
    networks = [_network(item) for item in value]
    for network in networks:
        if network.prefixlen == 0:
            raise ValueError(f"{network} would open SSH to the whole internet; list your own addresses")
    return tuple(dict.fromkeys(str(network) for network in networks))


def _primary(value: Any) -> str:
    if value in (None, ""):
        raise ValueError("is required: the primary's public IP address (only it may reach the agent port)")
    network = _network(value)
    if network.num_addresses != 1:
        raise ValueError(f"{value!r} is a network; give the primary's single address (/32 or /128)")
    return str(network)


def _labels(value: Any) -> Dict[str, str]:
    if not isinstance(value, dict) or not value:
        raise ValueError("must be a non-empty mapping of label keys to values")
    labels = {str(key): "" if val is None else str(val) for key, val in value.items()}
    for key, val in labels.items():
        if not LABEL_KEY.match(key) or not LABEL_VALUE.match(val):
            raise ValueError(f"{key}={val!r} is not a valid Hetzner label")
    return labels


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    return value.strip()


def _name(value: Any) -> str:
    value = _text(value)
    if not HOSTNAME.match(value):
        raise ValueError(f"{value!r} must be a hostname: lowercase letters, digits and '-'")
    return value


def _port(value: Any) -> int:
    if isinstance(value, bool) or not str(value).isdigit() or not 1 <= int(value) <= 65535:
        raise ValueError(f"{value!r} is not a TCP port (1-65535)")
    return int(value)


CHECKS = {
    "hetzner_server_name": _name,
    "hetzner_server_type": _text,
    "hetzner_location": _text,
    "hetzner_image": _text,
    "hetzner_ssh_public_key": _text,
    "hetzner_ssh_key_name": _text,
    "hetzner_labels": _labels,
    "hetzner_firewall_name": _text,
    "hetzner_operator_cidrs": _cidrs,
    "hetzner_primary_address": _primary,
    "hetzner_agent_port": _port,
}
IDENTITY = ("hetzner_server_name", "hetzner_labels", "hetzner_firewall_name")


PAIR_LABEL = "wirebot-pair"  # on every resource of a pair other than the default one: its pair's name
WOVEN = ("hetzner_server_name", "hetzner_firewall_name", "hetzner_ssh_key_name")  # get the pair's name


def _section(section: Any, where: str, path: Path, defaults: Dict[str, Any]) -> Dict[str, Any]:
    """A ``hetzner:`` mapping as {full key: value}; unknown keys are a SettingsProblem naming `where`."""
    section = section or {}
    if not isinstance(section, dict):
        raise SettingsProblem(f"{path}: '{where}' must be a mapping of settings")
    values = {}
    for key, value in section.items():
        full = key if str(key).startswith(PREFIX) else f"{PREFIX}{key}"
        if full not in defaults:
            known = ", ".join(k[len(PREFIX) :] for k in defaults)
            raise SettingsProblem(f"{path}: unknown setting '{where}.{key}' (known: {known})")
        values[full] = value
    return values


def _load(path: Path) -> Dict[str, Any]:
    try:
        return operator_settings.load(path)
    except operator_settings.SettingsError as error:
        raise SettingsProblem(str(error)) from None


def _pair_values(data: Dict[str, Any], pair: str, path: Path, defaults: Dict[str, Any]) -> Tuple[dict, dict]:
    """(values, origin) of `pair` from the defaults and the settings file, before flags (module docstring)."""
    values, origin = dict(defaults), {key: "default" for key in defaults}
    for key, value in _section(data.get("hetzner"), "hetzner", path, defaults).items():
        values[key], origin[key] = value, f"'hetzner.{key[len(PREFIX):]}' in {path}"
    if "pairs" not in data:
        return values, origin
    if origin["hetzner_primary_address"] != "default":
        raise SettingsProblem(f"{path}: 'hetzner.primary_address' beside 'pairs:': whose primary? Each pair's "
                              "standby admits its own primary: set pairs.NAME.primary.address (or "
                              "pairs.NAME.hetzner.primary_address) and remove hetzner.primary_address")
    own_pair = data["pairs"][pair]
    primary = (own_pair.get("primary") or {}).get("address")
    if primary:
        values["hetzner_primary_address"] = primary
        origin["hetzner_primary_address"] = f"'pairs.{pair}.primary.address' in {path}"
    own = _section(own_pair.get("hetzner"), f"pairs.{pair}.hetzner", path, defaults)
    if pair != operator_settings.DEFAULT_PAIR:
        suffix = pair.replace("_", "-")
        for key in WOVEN:
            if key not in own and isinstance(values[key], str):
                values[key] = f"{values[key]}-{suffix}"
                origin[key] += f" with the pair's name {pair!r} woven in"
    for key, value in own.items():
        values[key], origin[key] = value, f"'pairs.{pair}.hetzner.{key[len(PREFIX):]}' in {path}"
    return values, origin


def _pair_labels(labels: Dict[str, str], pair: str, where: str) -> Dict[str, str]:
    """`labels` with PAIR_LABEL set for a pair other than the default one; a clash is a SettingsProblem."""
    given = labels.get(PAIR_LABEL)
    wanted = None if pair == operator_settings.DEFAULT_PAIR else pair
    if given is not None and given != (wanted or pair):
        raise SettingsProblem(f"setting hetzner_labels ({where}): {PAIR_LABEL}={given} names another pair than "
                              f"{pair!r}: the label is set by the pair, leave it out")
    return dict(labels, **{PAIR_LABEL: wanted}) if wanted else labels


def select_pair(data: Dict[str, Any], pair: Optional[str], path: Path) -> str:
    """The pair the command acts on (--pair): optional with one pair; SettingsProblem naming the pairs."""
    try:
        name = operator_settings.pair_name(data, pair, path, "the Hetzner command")
    except operator_settings.SettingsError as error:
        raise SettingsProblem(str(error)) from None
    if not PAIR_NAME(name):
        raise SettingsProblem(f"{path}: pair name {name!r} must be {PAIR_NAME_TEXT}")
    return name


def resolve(
    defaults: Dict[str, Any],
    flags: Dict[str, Tuple[str, Any]],
    path: Optional[Path] = None,
    full: bool = True,
    pair: Optional[str] = None,
) -> StandbySpec:
    """Merge defaults, the file's ``hetzner:`` section (and ``pairs.NAME.hetzner:``) and `flags` ({key:
    (flag, value)}) for `pair` (the module docstring), then check; every other pair of the file must
    resolve to other server and firewall names.

    With ``full=False`` (for `delete`) only the name, labels and firewall name are needed and checked.
    """
    path = path or operator_settings.settings_path()
    data = _load(path)
    pair = select_pair(data, pair, path)
    spec = _resolve_pair(defaults, flags, path, data, pair, full)
    if "pairs" in data:
        claimed, keys = {}, {}
        for other in [pair] + [str(name) for name in data["pairs"] if str(name) != pair]:
            found = spec if other == pair else _resolve_pair(defaults, {}, path, data, select_pair(data, other, path),
                                                             False)
            for what, name in (("server", found.name), ("firewall", found.firewall_name)):
                if (what, name) in claimed:
                    first, second = sorted((claimed[what, name], other))
                    raise SettingsProblem(f"{path}: pairs {first!r} and {second!r} both resolve to the "
                                          f"{what} name {name!r}: set pairs.NAME.hetzner.{what}_name so each pair "
                                          "has its own")
                claimed[what, name] = other
            _claim_key_name(defaults, flags if other == pair else {}, path, data, other, keys)
    return spec


def _claim_key_name(defaults: Dict[str, Any], flags: Dict[str, Tuple[str, Any]], path: Path, data: Dict[str, Any],
                    pair: str, keys: Dict[str, Tuple[str, str]]) -> None:
    """Refuse two pairs uploading different public key files under one SSH key name (`keys`: name -> (pair,
    file)). One key file shared by pairs is one key in the project (found by its fingerprint)."""
    values, _ = _pair_values(data, pair, path, defaults)
    values.update({key: value for key, (_, value) in flags.items()})
    name, key_file = str(values["hetzner_ssh_key_name"]), str(Path(str(values["hetzner_ssh_public_key"])).expanduser())
    first = keys.setdefault(name, (pair, key_file))
    if first[1] != key_file:
        one, two = sorted((first[0], pair))
        raise SettingsProblem(f"{path}: pairs {one!r} and {two!r} would upload different public keys under the SSH "
                              f"key name {name!r}: set pairs.NAME.hetzner.ssh_key_name so each pair has its own")


def _resolve_pair(defaults: Dict[str, Any], flags: Dict[str, Tuple[str, Any]], path: Path, data: Dict[str, Any],
                  pair: str, full: bool) -> StandbySpec:
    values, origin = _pair_values(data, pair, path, defaults)
    for key, (flag, value) in flags.items():
        values[key], origin[key] = value, f"{flag} on the command line"
    needed = CHECKS if full else IDENTITY

    def check(key: str, value: Any, checker: Callable[[Any], Any]) -> Any:
        try:
            return checker(value)
        except ValueError as error:
            where = origin[key] if origin[key] != "default" else f"default; not set in {path} under hetzner:"
            raise SettingsProblem(f"setting {key} ({where}): {error}") from None

    v = {key: check(key, values.get(key), checker) for key, checker in CHECKS.items() if key in needed}
    labels = _pair_labels(v["hetzner_labels"], pair, origin["hetzner_labels"])
    identity = dict(name=v["hetzner_server_name"], labels=labels, firewall_name=v["hetzner_firewall_name"],
                    settings_file=path, pair=pair, paired="pairs" in data)
    if not full:
        return StandbySpec(**identity)
    key_path = Path(v["hetzner_ssh_public_key"]).expanduser()
    public_key, fingerprint = check("hetzner_ssh_public_key", key_path, read_public_key)
    return StandbySpec(
        **identity,
        server_type=v["hetzner_server_type"],
        location=v["hetzner_location"],
        image=v["hetzner_image"],
        public_key_path=key_path,
        public_key=public_key,
        fingerprint=fingerprint,
        key_name=v["hetzner_ssh_key_name"],
        operator_cidrs=v["hetzner_operator_cidrs"],
        primary_cidr=v["hetzner_primary_address"],
        agent_port=v["hetzner_agent_port"],
    )


def parse_labels(items: List[str]) -> Dict[str, str]:
    """``--label key=value`` flags as a dict; ValueError on an item without '='."""
    labels = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--label {item!r}: expected key=value")
        labels[key] = value
    return labels

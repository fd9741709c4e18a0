"""Resolve and check the standby's settings: defaults < the settings file's ``hetzner:`` < CLI flags.

Everything is checked here, before any API call: a missing or malformed value is a SettingsProblem
naming the key and where it came from (the settings file, a flag, or the default).
"""

import base64
import hashlib
import ipaddress
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from tasks import operator_settings
from tasks.hcloud_standby.errors import SettingsProblem

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


def _file_section(path: Path, defaults: Dict[str, Any]) -> Dict[str, Any]:
    try:
        data = operator_settings.load(path)
    except operator_settings.SettingsError as error:
        raise SettingsProblem(str(error)) from None
    section = data.get("hetzner") or {}
    if not isinstance(section, dict):
        raise SettingsProblem(f"{path}: 'hetzner' must be a mapping of settings")
    values = {}
    for key, value in section.items():
        full = key if str(key).startswith(PREFIX) else f"{PREFIX}{key}"
        if full not in defaults:
            known = ", ".join(k[len(PREFIX) :] for k in defaults)
            raise SettingsProblem(f"{path}: unknown setting 'hetzner.{key}' (known: {known})")
        values[full] = value
    return values


def resolve(
    defaults: Dict[str, Any],
    flags: Dict[str, Tuple[str, Any]],
    path: Optional[Path] = None,
    full: bool = True,
) -> StandbySpec:
    """Merge defaults, the file's ``hetzner:`` section and `flags` ({key: (flag, value)}), then check.

    With ``full=False`` (for `delete`) only the name, labels and firewall name are needed and checked.
    """
    path = path or operator_settings.settings_path()
    values = dict(defaults)
    origin = {key: "default" for key in defaults}
    for key, value in _file_section(path, defaults).items():
        values[key], origin[key] = value, f"'hetzner.{key[len(PREFIX):]}' in {path}"
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
    identity = dict(name=v["hetzner_server_name"], labels=v["hetzner_labels"],
                    firewall_name=v["hetzner_firewall_name"], settings_file=path)
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

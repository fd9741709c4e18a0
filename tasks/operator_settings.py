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

Environment variables override the file: WIREBOT_PRIMARY_ADDRESS, WIREBOT_STANDBY_ADDRESS,
WIREBOT_SECRETS_DIR. No address has a default: a missing one is an error naming what to set.
"""

import ipaddress
import os
from pathlib import Path
from typing import Any, Dict

import yaml

ROLES = ("primary", "standby")


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
        if role in data and not isinstance(data[role], dict):
            raise SettingsError(f"{path}: '{role}' must be a mapping with at least 'address'")
    return data


def save_address(role: str, address: str, path: Path = None) -> Path:
    """Record `address` as the `role` host's address, keeping every other setting; returns the file."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    path = path or settings_path()
    data = load(path)
    data.setdefault(role, {})["address"] = address
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def host_settings(role: str, data: Dict[str, Any] = None, path: Path = None) -> Dict[str, Any]:
    """The connection settings of `role`, with environment overrides; an error when no address is set."""
    path = path or settings_path()
    data = load(path) if data is None else data
    section = dict(data.get(role) or {})
    env_name = f"WIREBOT_{role.upper()}_ADDRESS"
    if os.environ.get(env_name):
        section["address"] = os.environ[env_name]
    if not section.get("address"):
        raise SettingsError(
            f"no address for the {role} host: set {env_name}, or '{role}: {{address: ...}}' in {path}"
        )
    try:
        ipaddress.ip_address(str(section["address"]))
    except ValueError:
        raise SettingsError(
            f"{role}.address {section['address']!r} in {path} must be an IP address: the standby's witness "
            "compares it with the origin IPs Cloudflare reports for the tunnel's connectors"
        ) from None
    return section


def secrets_dir(data: Dict[str, Any] = None) -> Path:
    """The operator's secrets directory on this control machine (never inside the git checkout)."""
    data = load() if data is None else data
    value = os.environ.get("WIREBOT_SECRETS_DIR") or data.get("secrets_dir") or "~/.config/wirebot/secrets"
    return Path(value).expanduser()

"""The drill's settings: `drill_*` host data keys (group data, inventory, or `--data key=value`).

Each has a default in tasks/core/settings_schema.py (section "drill"), so the drill runs with none of them
set; a malformed value stops the drill before it changes anything, naming the key. Besides these the
drill reads the shared settings
public_hostnames, witness_public_url, witness_public_host_header, scoreboard_events_db, wirebot_log_dir,
wirebot_state_dir, cloudflared_unit, standby_config, wirebot_agents_dir and secrets_dir.
"""

import os
from pathlib import Path
from urllib.parse import urlsplit

from tasks.core.settings_schema import SETTINGS

# key: (default, check, meaning): section "drill" of tasks/core/settings_schema.py
DEFAULTS = {name: (s.default, s.kind, s.meaning) for name, s in SETTINGS.items() if s.section == "drill"}


class DrillSettingError(Exception):
    """A drill setting is malformed; the message names the key and what it must be."""


def _number(key: str, value) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        return float(value)  # --data passes strings
    except (TypeError, ValueError):
        raise DrillSettingError(f"setting '{key}' must be a number, not {value!r}") from None


def _check(key: str, kind: str, value):
    if kind == "positive":
        number = _number(key, value)
        if number <= 0:
            raise DrillSettingError(f"setting '{key}' must be a positive number, not {value!r}")
        return number
    if kind == "fraction":
        number = _number(key, value)
        if not 0 <= number <= 1:
            raise DrillSettingError(f"setting '{key}' must be between 0 and 1, not {value!r}")
        return number
    if not isinstance(value, str):
        raise DrillSettingError(f"setting '{key}' must be a string, not {value!r}")
    if kind == "text" and not value.strip():
        raise DrillSettingError(f"setting '{key}' must be a non-empty string")
    if kind == "url_or_empty" and value and urlsplit(value).scheme not in ("http", "https"):
        raise DrillSettingError(f"setting '{key}' must be an http(s) URL or empty, not {value!r}")
    return value


def load(data) -> dict:
    """The drill settings from host data `data` (pyinfra's host.data or a dict), checked, defaults filled."""
    values = {key: _check(key, kind, default if data.get(key) is None else data.get(key))
              for key, (default, kind, _) in DEFAULTS.items()}
    values["drill_local_dir"] = str(Path(os.path.expanduser(values["drill_local_dir"])))
    return values


def public_base(data, drill: dict) -> tuple:
    """(base URL or "", send the hostname as Host header): how the control machine reaches the public
    hostnames. Real: ("", False) -> https://<hostname>. The lab: the edge's address + Host header."""
    if drill["drill_public_base_url"]:
        return drill["drill_public_base_url"].rstrip("/"), True
    if data.get("witness_public_host_header"):
        parts = urlsplit(data.get("witness_public_url"))
        return f"{parts.scheme}://{parts.netloc}", True
    return "", False


def public_url(base: tuple, hostname: str) -> tuple:
    """(URL prefix, Host header or "") to reach `hostname` through the public endpoint."""
    url, with_header = base
    return (url, hostname) if with_header else (f"https://{hostname}", "")

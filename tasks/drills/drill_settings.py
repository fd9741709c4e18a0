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

from tasks.core.settings_schema import SETTINGS, SettingValueError, host_value

# key: (default, kind, meaning): section "drill" of tasks/core/settings_schema.py
DEFAULTS = {name: (s.default, s.kind, s.meaning) for name, s in SETTINGS.items() if s.section == "drill"}


class DrillSettingError(Exception):
    """A drill setting is malformed; the message names the key and what it must be."""


def load(data) -> dict:
    """The drill settings from host data `data` (pyinfra's host.data or a dict), checked, defaults filled."""
    try:
        values = {key: host_value(data, key) for key in DEFAULTS}
    except SettingValueError as error:
        raise DrillSettingError(str(error)) from None
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

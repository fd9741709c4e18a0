"""The drill's settings: `drill_*` host data keys (group data, inventory, or `--data key=value`).

Each has a default here, so the drill runs with none of them set; a malformed value stops the drill
before it changes anything, naming the key. Besides these the drill reads the shared settings
public_hostnames, witness_public_url, witness_public_host_header, scoreboard_events_db, wirebot_log_dir,
wirebot_state_dir, cloudflared_unit, standby_config, wirebot_agents_dir and secrets_dir.
"""

import os
from pathlib import Path
from urllib.parse import urlsplit

# key: (default, check, meaning)
DEFAULTS = {
    "drill_public_base_url": ("", "url_or_empty",
                              "where the drill reaches the public hostnames: empty = https://<hostname> "
                              "(real); a URL (the lab's edge) = that address with the hostname as Host header. "
                              "Empty with witness_public_host_header set: the origin of witness_public_url"),
    "drill_api_hostname": ("api.wirebot.chat", "text", "the hub hostname the surface POSTs its events to"),
    "drill_chat_hostname": ("helm.wirebot.chat", "text", "the hostname of the chat (gateway) endpoint"),
    "drill_chat_model": ("openclaw", "text", "the model name sent to POST /v1/chat/completions"),
    "drill_chat_token_secret": ("gateway-token.env", "text_or_empty",
                                "file in the secrets dir with the gateway's bearer token: a bare token or "
                                "OPENCLAW_GATEWAY_TOKEN=<token> (empty: none)"),
    "drill_event_type": ("fire-drill", "text", "the type of the surface's events (payload carries the drill id)"),
    "drill_surface_rate": (2.0, "positive", "events the surface creates per second, before/during/after"),
    "drill_surface_timeout_seconds": (3.0, "positive", "timeout of one POST of the surface"),
    "drill_surface_backoff_base_seconds": (0.5, "positive", "first retry delay of the surface's sync queue"),
    "drill_surface_backoff_cap_seconds": (5.0, "positive", "largest retry delay (exponential growth stops)"),
    "drill_surface_backoff_jitter": (0.25, "fraction", "up to this fraction is taken off each delay at random"),
    "drill_warmup_seconds": (5.0, "positive", "the surface syncs this long before the outage begins"),
    "drill_cooldown_seconds": (5.0, "positive", "the surface keeps creating events this long after step 9"),
    "drill_step_timeout_seconds": (180.0, "positive", "bound of every wait in a step (offline, endpoints, drain)"),
    "drill_drain_timeout_seconds": (120.0, "positive", "bound of the final drain of the surface's queue"),
    "drill_discord_webhook_url": ("", "url_or_empty",
                                  "override of the webhook (default: discord-webhook.url in the secrets dir)"),
    "drill_local_dir": ("~/.local/state/wirebot", "text",
                        "on the control machine: fire-drill.log (a copy of each JSON line) and "
                        "drills/<drill id>/ (the surface's SQLite store, report.json)"),
}


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

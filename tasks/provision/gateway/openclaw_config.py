"""The gateway's openclaw.json: the keys the deploy owns, merged into what the operator configured.

Pure functions (unit-tested without hosts) plus the fact that reads the file. The deploy sets only the
keys in `wanted()`: everything else in the file (model keys, agents, channels, what the gateway itself
records under `meta`) is kept as it is, and a file that already carries those values is not rewritten.
OpenClaw reads JSON5 but writes plain JSON; a file the deploy cannot parse as JSON stops the deploy,
naming the file and the keys to set by hand, before anything changes.
"""

import copy
import json
import shlex
from typing import Optional

from pyinfra.api import FactBase


class ConfigFileError(Exception):
    """openclaw.json on a host is not something the deploy can merge into."""


class OpenClawConfigText(FactBase):
    """The text of a file, or None when it does not exist."""

    def command(self, path):
        quoted = shlex.quote(path)
        return f"if [ -f {quoted} ]; then echo present; cat {quoted}; else echo absent; fi"

    def process(self, output):
        lines = list(output)
        if not lines or lines[0] != "present":
            return None
        return "\n".join(lines[1:])


def wanted(data) -> dict:
    """Dotted key -> value the deploy guarantees: a local gateway on loopback, token auth (the token
    comes from the environment, OPENCLAW_GATEWAY_TOKEN, never from this synced file), the connector on
    the same host as its one trusted proxy (cloudflared forwards the client's address; without this the
    gateway refuses proxied requests with proxy_attribution_required), the OpenAI-compatible endpoint
    on, and the operator's extra keys (gateway_config: the lab's model)."""
    keys = {
        "gateway.mode": "local",
        "gateway.bind": "loopback",
        "gateway.port": data.gateway_port,
        "gateway.auth.mode": "token",
        "gateway.trustedProxies": ["127.0.0.1", "::1"],
        "gateway.http.endpoints.chatCompletions.enabled": True,
    }
    keys.update(data.gateway_config)
    return keys


def defaults(data) -> dict:
    """Dotted key -> value set only where the operator has not set the key."""
    return {"agents.defaults.workspace": data.wirebot_workspace}


def parse(text: Optional[str], path: str) -> dict:
    """The current config as a dict ({} for a missing or empty file)."""
    if text is None or not text.strip():
        return {}
    try:
        config = json.loads(text)
    except ValueError as error:
        raise ConfigFileError(f"{path}: not plain JSON ({error}); OpenClaw writes JSON, the deploy merges "
                              "only JSON: rewrite it with `openclaw config validate` / `openclaw config set`, "
                              "or remove the comments") from None
    if not isinstance(config, dict):
        raise ConfigFileError(f"{path}: expected a JSON object at the top level")
    return config


def _set(config: dict, dotted: str, value, only_if_missing: bool, path: str) -> None:
    node = config
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigFileError(f"{path}: '{part}' in '{dotted}' is not an object ({child!r})")
        node = child
    if only_if_missing and parts[-1] in node:
        return
    node[parts[-1]] = copy.deepcopy(value)


def merge(current: dict, keys: dict, fallbacks: dict, path: str) -> dict:
    """`current` with every key of `keys` set and every key of `fallbacks` set where absent."""
    merged = copy.deepcopy(current)
    for dotted, value in keys.items():
        _set(merged, dotted, value, False, path)
    for dotted, value in fallbacks.items():
        _set(merged, dotted, value, True, path)
    return merged


def render(config: dict) -> str:
    """The file's text (what OpenClaw itself writes: indented JSON)."""
    return json.dumps(config, indent=2) + "\n"

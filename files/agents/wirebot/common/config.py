"""Agent configuration: YAML loading, typed key lookup and secret files.

Every error names the file and the dotted key, so an operator can fix it without reading code:
``/etc/wirebot/standby.yml: heartbeat.interval_seconds: expected a number, got 'thirty'``.
"""

import difflib
import os

import yaml


class ConfigError(Exception):
    """A configuration or secret file is missing, unreadable or has a wrong value."""


class _Required:
    def __repr__(self):
        return "REQUIRED"


REQUIRED = _Required()

_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "a mapping",
}


def _type_name(expected_type):
    if isinstance(expected_type, tuple):
        return " or ".join(_type_name(t) for t in expected_type)
    return _TYPE_NAMES.get(expected_type, getattr(expected_type, "__name__", str(expected_type)))


def load_yaml(path):
    """Read a YAML mapping from ``path``; a missing file or bad YAML raises ConfigError naming it."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _matches(value, expected_type):
    types = expected_type if isinstance(expected_type, tuple) else (expected_type,)
    for kind in types:
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if kind is int and isinstance(value, bool):
            continue
        if isinstance(value, kind):
            return True
    return False


def get(cfg, dotted_key, expected_type, path, default=REQUIRED):
    """Return ``cfg[a][b]...`` for ``dotted_key`` "a.b...", checked against ``expected_type``.

    ``expected_type`` is a type or a tuple of types (``float`` also accepts integers, which are
    returned as float). A missing key (or explicit null) returns ``default``; without a default it
    raises ConfigError("{path}: {dotted_key} is required"). A value of the wrong type raises
    ConfigError("{path}: {dotted_key}: expected ..., got ...").
    """
    node = cfg
    for part in dotted_key.split("."):
        if not isinstance(node, dict) or node.get(part) is None:
            if default is REQUIRED:
                raise ConfigError(f"{path}: {dotted_key} is required")
            return default
        node = node[part]
    if not _matches(node, expected_type):
        raise ConfigError(f"{path}: {dotted_key}: expected {_type_name(expected_type)}, got {node!r}")
    if expected_type is float and isinstance(node, int):
        return float(node)
    return node


def _walk(node, prefix, leaves, sections, found):
    """Collect the dotted key of every key in `node`, down to the keys `leaves` names ("a.b[].c": every
    item of the list a.b), through the `sections` above them."""
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        found.append(dotted)
        if dotted in leaves:
            continue
        if isinstance(value, list) and dotted + "[]" in sections:
            for index, item in enumerate(value):
                if not isinstance(item, dict):
                    raise ConfigError(f"{dotted}[{index}]: expected a mapping, got {item!r}")
                _walk(item, f"{dotted}[].", leaves, sections, found)
        elif isinstance(value, dict) and dotted in sections:
            _walk(value, dotted + ".", leaves, sections, found)


def check_keys(cfg, spec, path):
    """Refuse a config with a key `spec` (wirebot.common.config_keys: dotted key -> (required, meaning)) does not
    list, or without one of its required keys; ConfigError names the file and the key ("did you mean")."""
    leaves, sections = set(spec), set()
    for key in spec:  # "a", "a.b" and "a.b[]" above "a.b[].c"
        parts = key.split(".")
        sections.update(".".join(parts[:i]) for i in range(1, len(parts)))
        sections.update(".".join(parts[:i]).replace("[]", "") for i in range(1, len(parts)))
    found = []
    try:
        _walk(cfg, "", leaves, sections, found)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    for key in found:
        if key not in leaves and key not in sections:
            close = difflib.get_close_matches(key, list(spec), n=1, cutoff=0.75)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{path}: unknown key {key}{hint}")
    present = set(found)
    for key, (required, _meaning) in spec.items():
        if required and "[]." not in key and key not in present:
            raise ConfigError(f"{path}: {key} is required (missing)")
    for key in (k for k, (required, _) in spec.items() if required and "[]." in k):
        head, leaf = key.split("[].", 1)
        for index, item in enumerate(_items(cfg, head)):
            if leaf not in item:
                raise ConfigError(f"{path}: {head}[{index}].{leaf} is required (missing)")


def _items(cfg, dotted):
    node = cfg
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, list) else []


def read_secret(path, required=False):
    """Return the stripped contents of the secret file ``path``.

    Absent (or empty) and not required -> None; absent and required -> ConfigError. The contents are
    never logged or put into an error message.
    """
    if not path:
        if required:
            raise ConfigError("secret file path is required but not configured")
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            value = handle.read().strip()
    except FileNotFoundError:
        if required:
            raise ConfigError(f"{path}: secret file not found") from None
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read secret file: {exc.strerror or exc}") from None
    if not value:
        if required:
            raise ConfigError(f"{path}: secret file is empty")
        return None
    return value


def exists(path):
    """True when ``path`` exists (small helper so callers need not import os for it)."""
    return bool(path) and os.path.exists(path)

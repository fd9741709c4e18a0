"""The incident playbooks' settings: host.data keys with their defaults (override: `--data key=value`).

Defined (kind, range, default, meaning) in tasks/core/settings_schema.py, section "incident".
"""

from tasks.core.settings_schema import defaults

DEFAULTS = defaults("incident")


def get(data, key):
    """host.data[key], or its default above (pyinfra's --data parses true/false and numbers)."""
    value = data.get(key)
    return DEFAULTS[key] if value is None else value


def flag(data, key) -> bool:
    """A boolean setting; accepts true/false, 1/0, yes/no (as strings too)."""
    value = get(data, key)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def paths(data, key) -> list:
    """A list setting: a list, or a comma-separated string (`--data recovery_skip_dbs=a.db,b.db`)."""
    value = get(data, key)
    if isinstance(value, str):
        value = value.split(",")
    return [str(item).strip().strip("/") for item in value or [] if str(item).strip()]

"""Settings of the standby (Hetzner CAX11, ARM64): everything installed, nothing serving until it is
activated; then it serves until recovery hands traffic back. The defaults of section "standby" of
tasks/core/settings_schema.py (kind, range, meaning and readers there); site overrides below the update line.
"""

from tasks.core.settings_schema import group_defaults as _group_defaults

globals().update(_group_defaults("standby"))

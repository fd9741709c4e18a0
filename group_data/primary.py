"""Settings of the primary (AlmaLinux VPS in production): it serves, streams its databases and files to the
standby, and sends the heartbeat. The defaults of section "primary" of
tasks/core/settings_schema.py (kind, range, meaning and readers there); site overrides below the update line.
"""

from tasks.core.settings_schema import group_defaults as _group_defaults

globals().update(_group_defaults("primary"))

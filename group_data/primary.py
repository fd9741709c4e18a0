"""Settings of the primary (AlmaLinux VPS in production): it serves, streams its databases and files to the
standby, and sends the heartbeat. The defaults of section "primary" of
tasks/core/settings_schema.py (kind, range, meaning and readers there); site overrides below the update line.
"""

import sys as _sys
from pathlib import Path as _Path

if str(_Path(__file__).resolve().parent.parent) not in _sys.path:  # the checkout (pyinfra loads this file bare)
    _sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))

from tasks.core.settings_schema import group_defaults as _group_defaults  # noqa: E402

globals().update(_group_defaults("primary"))

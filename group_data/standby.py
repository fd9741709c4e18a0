"""Settings of the standby (Hetzner CAX11, ARM64): everything installed, nothing serving until it is
activated; then it serves until recovery hands traffic back. The defaults of section "standby" of
tasks/core/settings_schema.py (kind, range, meaning and readers there); site overrides below the update line.
"""

import sys as _sys
from pathlib import Path as _Path

if str(_Path(__file__).resolve().parent.parent) not in _sys.path:  # the checkout (pyinfra loads this file bare)
    _sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))

from tasks.core.settings_schema import group_defaults as _group_defaults  # noqa: E402

globals().update(_group_defaults("standby"))

"""Settings shared by both hosts: the defaults of section "all" of tasks/core/settings_schema.py, where every key is
defined once with its kind, range, meaning and readers (README "Settings"). Paths derive from the layout keys
(wirebot_data_root, wirebot_user, wirebot_config_dir, ...).

pyinfra loads this for every host; group_data/primary.py and standby.py add the role's own keys, the
inventory's host data and `pyinfra --data key=value` override (the lab: lab/inventory.py). The settings check
(tasks/core/settings_check.py) runs over the final host data before any operation. To change a value for your
site, assign it below the update line (e.g. `firewall_ssh_sources = ["198.51.100.7/32"]`); operator-specific
values (addresses, secrets) live outside git: see tasks/core/operator_settings.py.
"""

import sys as _sys
from pathlib import Path as _Path

if str(_Path(__file__).resolve().parent.parent) not in _sys.path:  # the checkout (pyinfra loads this file bare)
    _sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))

from tasks.core.settings_schema import group_defaults as _group_defaults  # noqa: E402

globals().update(_group_defaults("all"))

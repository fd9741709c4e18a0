"""Settings shared by both hosts: the defaults of section "all" of tasks/core/settings_schema.py, where every key is
defined once with its kind, range, meaning and readers (README "Settings"). Paths derive from the layout keys
(wirebot_data_root, wirebot_user, wirebot_config_dir, ...).

pyinfra loads this for every host; group_data/primary.py and standby.py add the role's own keys, the
inventory's host data and `pyinfra --data key=value` override (the lab: lab/inventory.py). The settings check
(tasks/core/settings_check.py) runs over the final host data before any operation. To change a value for your
site, assign it below the update line (e.g. `firewall_ssh_sources = ["198.51.100.7/32"]`); operator-specific
values (addresses, secrets) live outside git: see tasks/core/operator_settings.py.
"""

from tasks.core.settings_schema import group_defaults as _group_defaults

globals().update(_group_defaults("all"))

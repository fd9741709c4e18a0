"""pyinfra inventory of the real hosts: `pyinfra inventory.py deploy.py`.

Addresses and SSH settings come from the operator's settings (tasks/operator_settings.py: the file
$WIREBOT_SETTINGS or ~/.config/wirebot/settings.yml, or WIREBOT_PRIMARY_ADDRESS /
WIREBOT_STANDBY_ADDRESS). Nothing here has a default address: a missing one stops with a message
naming what to set.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tasks.operator_settings import SettingsError, host_settings, load, secrets_dir, settings_path  # noqa: E402
from tasks.settings_check import check_inventory  # noqa: E402


def _host(role: str, data: dict) -> tuple:
    section = host_settings(role, data)
    host_data = {"ssh_user": section.get("ssh_user", "root"), "secrets_dir": str(secrets_dir(data))}
    if section.get("ssh_key"):
        host_data["ssh_key"] = str(Path(section["ssh_key"]).expanduser())
    if section.get("ssh_port"):
        host_data["ssh_port"] = int(section["ssh_port"])
    if data.get("metrics_sources"):  # the Prometheus server(s): group_data agent_metrics_sources
        host_data["agent_metrics_sources"] = data["metrics_sources"]
    return section["address"], host_data


try:
    _settings = load()
    primary = [_host("primary", _settings)]
    standby = [_host("standby", _settings)]
except SettingsError as error:
    sys.exit(f"inventory.py: {error}")

check_inventory({"primary": primary, "standby": standby}, str(settings_path()))  # before any connection

"""pyinfra inventory of the real hosts: `pyinfra inventory.py deploy.py` (every pair, in parallel).

Addresses and SSH settings come from the operator's settings (tasks/core/operator_settings.py: the file
$WIREBOT_SETTINGS or ~/.config/wirebot/settings.yml, or WIREBOT_PRIMARY_ADDRESS /
WIREBOT_STANDBY_ADDRESS). Nothing here has a default address: a missing one stops with a message
naming what to set. With several pairs (the settings' `pairs:` form) every host carries its pair's name
(host data `pair`) and each pair is also a group of that name: `--limit NAME` acts on one pair
(tasks/core/pairs.py refuses a host in two pairs, a pair with a missing side, an ambiguous inventory).
"""

import sys
from pathlib import Path

from tasks.core.operator_settings import SettingsError, load, pair_settings, settings_path
from tasks.core.pairs import PairError, check_hosts
from tasks.core.settings_check import check_inventory


def _host(name: str, pair: dict, role: str, data: dict) -> tuple:
    section = pair[role]
    host_data = {**pair["data"], "ssh_user": section.get("ssh_user", "root"), "secrets_dir": str(pair["secrets_dir"])}
    if pair["named"]:
        host_data["pair"] = name
    if section.get("ssh_key"):
        host_data["ssh_key"] = str(Path(section["ssh_key"]).expanduser())
    if section.get("ssh_port"):
        host_data["ssh_port"] = int(section["ssh_port"])
    if data.get("metrics_sources"):  # the Prometheus server(s): group_data agent_metrics_sources
        host_data["agent_metrics_sources"] = data["metrics_sources"]
    return str(section["address"]), host_data


try:
    _settings = load()
    _pairs = pair_settings(_settings)
    primary = [_host(name, pair, "primary", _settings) for name, pair in _pairs.items()]
    standby = [_host(name, pair, "standby", _settings) for name, pair in _pairs.items()]
    _hosts = {"primary": primary, "standby": standby}
    check_hosts(_hosts, str(settings_path()))  # a host in two pairs, a missing side, shared secrets: refused
except (SettingsError, PairError) as error:
    sys.exit(f"inventory.py: {error}")

check_inventory(_hosts, str(settings_path()))  # before any connection

if any(pair["named"] for pair in _pairs.values()):  # one group per pair (`--limit NAME`); last: a pair's
    globals().update({name: [address for address, data in primary + standby if data["pair"] == name]  # name
                      for name in _pairs})  # may shadow a module-level name above

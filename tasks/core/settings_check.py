"""The settings check: every host's final settings against tasks/core/settings_schema.py, before any operation.

Two places run it. The inventories (inventory.py, lab/inventory.py) call `check_inventory` when pyinfra loads
them, before any connection: group_data plus the inventory's host data. deploy.py and the playbooks call
`check_pyinfra_hosts()` first thing, where pyinfra has the final host data of every host (group data, host
data and `--data` overrides): a wrong kind, a value out of range, an unknown key (with "did you mean"), a
missing key or timings that break each other's relations stop the run (exit non-zero) naming the key, where
it came from (--data, the inventory's host data, group_data/<group>.py) and what is expected; no operation
has been added yet, so nothing on any host changes.

Values given with `--data` arrive as strings (or what pyinfra made of them); they are coerced deliberately
(settings_schema.coerce: "30" -> 30 for a whole number, "30s" stays an error) and the coerced value is what
the deploy reads. Paths derived from layout keys (`${wirebot_data_root}/...` in the schema) follow an
overridden layout key unless set explicitly themselves.
"""

import difflib
import runpy
from pathlib import PurePosixPath
from typing import Dict, Tuple

from tasks.core.checkout import GROUP_DATA
from tasks.core.secrets import (
    REQUIRED_SECRETS,
    SecretsError,
    check_all,
    metrics_reader_cert,
    runtime_secrets,
)
from tasks.core.settings_schema import KINDS, SETTINGS, coerce, defaults, derived_from, host_keys, resolve_all

DATA_FLAG = "--data"  # the origin of a value given on pyinfra's command line
__all__ = ["KINDS", "SettingError", "check", "check_inventory", "check_pyinfra_hosts", "merged_settings"]


class SettingError(Exception):
    """A setting is missing, unknown or malformed."""


def _pyinfra_keys() -> set:
    """Host data keys pyinfra itself reads: its connectors' (ssh_user, ssh_key, ...) and its global arguments."""
    from pyinfra.api.arguments import all_global_arguments
    from pyinfra.api.connectors import get_all_connectors

    keys = {name for name, _ in all_global_arguments()}
    for connector in get_all_connectors().values():
        keys |= set(getattr(getattr(connector, "data_cls", None), "__annotations__", {}))
    return keys


def _unknown(key: str, origin: str) -> SettingError:
    close = difflib.get_close_matches(key, list(host_keys()), n=1, cutoff=0.75)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return SettingError(f"{origin}: unknown setting '{key}'{hint}: every setting is defined in "
                        "tasks/core/settings_schema.py")


def finalize(role: str, values: dict, origin: dict) -> dict:
    """Check `values` (one host's merged settings, `origin`: key -> where it was set) against the schema and
    return them final: --data values coerced, derived paths following their layout keys. SettingError names
    the key, its origin and what is expected."""
    known, pyinfra_keys = host_keys(), None
    values = dict(values)
    for key in sorted(values):
        if key in known:
            if origin.get(key) == DATA_FLAG:
                values[key] = coerce(known[key].kind, values[key])
            continue
        if key.startswith("_"):
            continue
        pyinfra_keys = _pyinfra_keys() if pyinfra_keys is None else pyinfra_keys
        if key not in pyinfra_keys:
            raise _unknown(key, origin.get(key, "host data"))
    required = host_keys(role)
    for key, setting in required.items():
        if key not in values:
            raise SettingError(f"{GROUP_DATA / (setting.section + '.py')}: setting '{key}' is missing "
                               f"({setting.expected()})")
    # derived paths nobody set explicitly follow the final layout keys
    shipped = defaults("all", role)
    follow = {key: SETTINGS[key].default for key in required
              if derived_from(key) and values.get(key) == shipped.get(key) and origin.get(key, "").startswith(
                  str(GROUP_DATA))}
    if follow:
        values = resolve_all({k: v for k, v in values.items() if k not in follow}, follow)
        for key in follow:
            origin[key] = f"{origin[key]} (derived)"
    for key in sorted(values):
        setting = known.get(key)
        if setting and not setting.valid(values[key]):
            raise SettingError(f"{origin.get(key, 'host data')}: setting '{key}' must be {setting.expected()}, "
                               f"not {values[key]!r}")
    _check_relations(role, values, origin)
    return values


def _check_relations(role: str, values: dict, origin: dict) -> None:
    if values["heartbeat_clock_window_seconds"] <= values["heartbeat_interval_seconds"]:
        raise SettingError(f"{origin['heartbeat_clock_window_seconds']}: heartbeat_clock_window_seconds must "
                           "be larger than heartbeat_interval_seconds (a heartbeat's age is up to one interval); "
                           + _set_in(origin, "heartbeat_clock_window_seconds", "heartbeat_interval_seconds"))
    check_fencing_timings(values, origin)
    _check_replication(values, origin)
    if values["gateway_database"] not in values["litestream_databases"]:
        raise SettingError(f"{origin['litestream_databases']}: litestream_databases must list gateway_database "
                           f"{values['gateway_database']} (a live WAL database is streamed, never rsynced)")
    for key in ("gateway_config_file", "gateway_database"):
        if not values[key].startswith(values["gateway_state_dir"].rstrip("/") + "/"):
            raise SettingError(f"{origin[key]}: {key} must lie in gateway_state_dir {values['gateway_state_dir']}")
    if not any(values["gateway_state_dir"].startswith(p.rstrip("/") + "/") for p in values["filesync_paths"]):
        raise SettingError(f"{origin['gateway_state_dir']}: gateway_state_dir must lie in one of filesync_paths "
                           "(the standby's gateway needs the primary's config)")
    if PurePosixPath(values["litestream_socket"]).parent.parent != PurePosixPath("/run"):
        raise SettingError(f"{origin['litestream_socket']}: litestream_socket must be /run/<folder>/<file> "
                           f"(the unit's RuntimeDirectory), not {values['litestream_socket']!r}")
    try:
        check_all(values["secrets_dir"])
        runtime_secrets(values["secrets_dir"], values["secrets_files"], REQUIRED_SECRETS)
        if values["agent_metrics_sources"]:
            metrics_reader_cert(values["secrets_dir"], required=True)
    except SecretsError as error:
        raise SettingError(str(error)) from None


def merged_settings(role: str, host_data: dict, host_data_file: str) -> Tuple[dict, dict]:
    """(settings, origin): the merged values and, per key, the file that set it last."""
    values, origin = {}, {}
    for path in (GROUP_DATA / "all.py", GROUP_DATA / f"{role}.py"):
        for key, value in runpy.run_path(str(path)).items():
            if not key.startswith("_") and not callable(value) and not hasattr(value, "__file__"):
                values[key], origin[key] = value, str(path)
    for key, value in host_data.items():
        values[key], origin[key] = value, host_data_file
    return values, origin


def check(role: str, host_data: dict, host_data_file: str) -> dict:
    """Validate one host's settings (group_data + `host_data`, set in `host_data_file`) and the secrets
    directory they name; returns the final settings."""
    values, origin = merged_settings(role, host_data, host_data_file)
    return finalize(role, values, origin)


def check_fencing_timings(values: dict, origin: dict) -> None:
    """The relations docs/fencing.md depends on:

        3 x renew <= lease <= interval x (miss_threshold - 1),  renew <= interval,  edge_probe_failures >= 2

    The lease must outlive two lost or late lease beats (else a blip stops the service), and must have run
    out at least one interval before the heartbeat detector (interval x miss_threshold) fires, so the
    primary's kernel has stopped its serving traffic before the standby acts on missed heartbeats. Lease beats
    come between heartbeats, so they are not rarer than them. One failed public probe never makes a suspicion."""
    interval, miss = values["heartbeat_interval_seconds"], values["heartbeat_miss_threshold"]
    lease, renew = values["fencing_lease_seconds"], values["fencing_lease_renew_seconds"]
    if miss < 2:
        raise SettingError(f"{origin['heartbeat_miss_threshold']}: heartbeat_miss_threshold must be at least 2 "
                           "(the serving lease needs an interval between its end and the standby's detection)")
    if values["edge_probe_failures"] < 2:
        raise SettingError(f"{origin['edge_probe_failures']}: edge_probe_failures must be at least 2 (one failed "
                           "public probe is never enough to suspect the primary)")
    if not values["fencing_lease_enabled"]:
        return
    if not 3 * renew <= lease <= interval * (miss - 1):
        raise SettingError(
            f"{origin['fencing_lease_seconds']}: fencing_lease_seconds={lease} breaks 3 x fencing_lease_renew_seconds"
            f" <= fencing_lease_seconds <= heartbeat_interval_seconds * (heartbeat_miss_threshold - 1) "
            f"({3 * renew} <= {lease} <= {interval * (miss - 1)}): the lease must outlive two lost lease beats and "
            "end before the heartbeat detector fires (docs/fencing.md); "
            + _set_in(origin, "heartbeat_interval_seconds", "heartbeat_miss_threshold", "fencing_lease_seconds",
                      "fencing_lease_renew_seconds"))
    if renew > interval:
        raise SettingError(f"{origin['fencing_lease_renew_seconds']}: fencing_lease_renew_seconds={renew} must not "
                           f"exceed heartbeat_interval_seconds={interval} (lease beats come between heartbeats); "
                           + _set_in(origin, "heartbeat_interval_seconds", "fencing_lease_renew_seconds"))


def _set_in(origin: dict, *keys: str) -> str:
    """Where each of `keys` was set: what a relation error names besides the key it blames."""
    return ", ".join(f"{key} from {origin.get(key, 'the defaults')}" for key in keys)


def _inside(path: str, folder: str) -> bool:
    path, folder = path.rstrip("/") or "/", folder.rstrip("/") or "/"
    return path == folder or path.startswith(folder if folder == "/" else folder + "/")


def _check_replication(values: dict, origin: dict) -> None:
    """File sync never carries a secret or the replica itself; the replication accounts are their own."""
    private = {
        "wirebot_run_dir": values["wirebot_run_dir"],  # runtime secrets
        "wirebot_config_dir": values["wirebot_config_dir"],  # persisted secrets, pinned host keys
        "cloudflared_config": values["cloudflared_config"].rsplit("/", 1)[0] or "/",  # tunnel credentials
        "replica_root": values["replica_root"],
        "replica_key": values["replica_key"].rsplit("/", 1)[0] or "/",  # root's SSH keys
    }
    for path in values["filesync_paths"]:
        for key, folder in private.items():
            if _inside(path, folder) or _inside(folder, path):
                raise SettingError(f"{origin['filesync_paths']}: filesync_paths entry {path!r} overlaps {folder} "
                                   f"({key}): file sync never carries secrets, keys or the replica itself")
    accounts = [values["replica_user"], values["replica_files_user"]]
    if len(set(accounts)) != 2 or set(accounts) & {"root", values["wirebot_service_user"]}:
        raise SettingError(f"{origin['replica_files_user']}: replica_user and replica_files_user must be two "
                           "accounts of their own (not root, not wirebot_service_user)")


def check_inventory(hosts: Dict[str, list], source_file: str) -> None:
    """For an inventory file: check every host's settings; exit with the error (before any connection)."""
    try:
        for role, entries in hosts.items():
            for _name, host_data in entries:
                check(role, host_data, source_file)
    except SettingError as error:
        raise SystemExit(f"settings: {error}") from None


def _origin(inventory, host, key: str) -> str:
    """Where pyinfra took host.data[key] from: --data, the inventory's host data, or a group's data."""
    if key in inventory.get_override_data():
        return DATA_FLAG
    if key in inventory.get_host_data(host.name):
        return f"the inventory's host data of {host.name}"
    for group in reversed(list(host.groups)):  # pyinfra: the later group wins
        if key in inventory.get_group_data(group):
            path = GROUP_DATA / f"{group}.py"
            return str(path) if path.exists() else f"group data of {group}"
    return str(GROUP_DATA / "all.py")


def host_role(host) -> str:
    roles = [role for role in ("primary", "standby") if role in host.groups]
    if len(roles) != 1:
        raise SettingError(f"{host.name}: must be in exactly one of the groups primary and standby, "
                           f"is in {sorted(host.groups) or 'none'}")
    return roles[0]


_CHECKED: Dict[int, dict] = {}


def check_pyinfra_hosts(state=None, host=None) -> dict:
    """In a deploy file, before any operation: check the final host data of every host of the inventory
    (group data, host data, --data) and make the current host's data the checked one (coerced --data values,
    derived paths). Returns the current host's final settings. A bad setting raises a pyinfra error (the run
    stops, exit 1) naming the host, the key and where it came from."""
    from pyinfra import host as current_host
    from pyinfra import state as current_state
    from pyinfra.api.exceptions import PyinfraError

    state = state or current_state
    host = host or current_host
    inventory = state.inventory
    cached = _CHECKED.get(id(inventory))
    if cached is None or cached["inventory"] is not inventory:  # once per run (each host's deploy file asks)
        finals = {}
        try:
            for each in inventory:
                values = each.data.dict()
                origin = {key: _origin(inventory, each, key) for key in values}
                try:
                    finals[each.name] = finalize(host_role(each), values, origin)
                except SettingError as error:
                    raise SettingError(f"{each.name}: {error}") from None
        except SettingError as error:
            _CHECKED[id(inventory)] = {"inventory": inventory, "error": str(error)}
        else:
            _CHECKED[id(inventory)] = {"inventory": inventory, "finals": finals}
    result = _CHECKED[id(inventory)]
    if "error" in result:
        raise PyinfraError(f"settings: {result['error']} (nothing was changed on any host)")
    final = result["finals"][host.name]
    for key, value in final.items():
        if key in SETTINGS and host.data.get(key) != value:
            setattr(host.data, key, value)  # pyinfra's per-host override: what every deploy reads
    return final

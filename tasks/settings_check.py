"""Every setting the deploys read, its kind, and a check run when the inventory loads, before any
connection: a missing or malformed setting stops the run with the key and the file that sets it.

Settings come from group_data/all.py, then group_data/<role>.py, then the inventory's host data (the lab
overrides there); the last file to set a key is the one named in an error.
"""

import ipaddress
import re
import runpy
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Dict, Tuple

from tasks.provision.secrets_check import SecretsError, check_all, metrics_reader_cert, runtime_secrets

GROUP_DATA = Path(__file__).resolve().parent.parent / "group_data"


class SettingError(Exception):
    """A setting is missing or malformed."""


def _positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _port(value):
    return _positive_int(value) and value < 65536


def _abs_path(value):
    return isinstance(value, str) and value.startswith("/") and ".." not in value.split("/")


def _abs_paths(value):
    return isinstance(value, list) and bool(value) and all(_abs_path(item) for item in value)


_PLAIN = re.compile(r"[A-Za-z0-9._@+-]+")


def _synced_paths(value):
    """Absolute paths of plain names only: what the standby's rsync forced command accepts."""
    return _abs_paths(value) and all(
        all(_PLAIN.fullmatch(part) and part not in (".", "..") for part in item.strip("/").split("/"))
        for item in value if item != "/")


def _name(value):
    return isinstance(value, str) and re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", value) is not None


def _text(value):
    return isinstance(value, str) and bool(value.strip())


def _ip(value):
    try:
        ipaddress.ip_address(value if isinstance(value, str) else "")
    except ValueError:
        return False
    return True


def _url(value):
    return isinstance(value, str) and re.match(r"https?://[^/\s]+", value) is not None


def _cidrs(value):
    if not isinstance(value, list):
        return False
    try:
        return all(isinstance(item, str) and ipaddress.ip_network(item, strict=False) for item in value)
    except ValueError:
        return False


def _inbound(value):
    return isinstance(value, list) and all(
        isinstance(item, dict) and set(item) == {"port", "from"} and _port(item["port"]) and _cidrs(item["from"])
        and item["from"] for item in value)


KINDS: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    "port": (_port, "a port number (1-65535)"),
    "seconds": (_positive_int, "a positive whole number"),
    "duration": (lambda value: isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0,
                 "a positive number of seconds (fractions allowed)"),
    "path": (_abs_path, "an absolute path"),
    "paths": (_abs_paths, "a non-empty list of absolute paths"),
    "synced_paths": (_synced_paths, "a non-empty list of absolute paths of plain names (letters, digits, ._@+-)"),
    "name": (_name, "a lower-case name (letters, digits, _ and -)"),
    "text": (_text, "a non-empty string"),
    "url": (_url, "an http(s) URL"),
    "bool": (lambda value: isinstance(value, bool), "true or false"),
    "list": (lambda value: isinstance(value, list), "a list"),
    "hostnames": (lambda value: isinstance(value, dict) and bool(value)
                  and all(target in ("gateway", "scoreboard") for target in value.values()),
                  "a mapping hostname -> gateway|scoreboard"),
    "install": (lambda value: value in ("repo", "none"), "'repo' or 'none'"),
    "sha256": (lambda value: isinstance(value, dict) and all(re.fullmatch(r"[0-9a-f]{64}", str(v))
                                                             for v in value.values()),
               "a mapping architecture -> sha256 hex digest"),
    "secrets": (lambda value: isinstance(value, dict) and all(_text(v) and "/" not in v for v in value.values()),
                "a mapping secret name -> file name"),
    "exec": (lambda value: isinstance(value, str) and value[:1] in ("/", "{"), "a command line (absolute path)"),
    "text_or_empty": (lambda value: isinstance(value, str), "a string (may be empty)"),
    "addresses": (lambda value: isinstance(value, list) and all(_ip(item) for item in value),
                  "a list of IP addresses (may be empty)"),
    "config_keys": (lambda value: isinstance(value, dict) and all(
        isinstance(k, str) and re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", k) for k in value),
        "a mapping of dotted config keys (a.b.c) to values"),
    "cidrs": (_cidrs, "a list of IP addresses or networks (CIDR)"),
    "ports": (lambda value: isinstance(value, list) and bool(value) and all(_port(v) for v in value),
              "a non-empty list of port numbers"),
    "names": (lambda value: isinstance(value, list) and all(_name(v) for v in value), "a list of user names"),
    "inbound": (_inbound, 'a list of {"port": N, "from": [cidr, ...]}'),
    "capabilities": (lambda value: isinstance(value, list)
                     and all(isinstance(v, str) and re.fullmatch(r"CAP_[A-Z_]+", v) for v in value),
                     "a list of capability names (CAP_...)"),
}

SCHEMA = {
    "wirebot_user": "name", "wirebot_service_user": "name", "scoreboard_user": "name", "wirebot_data_root": "path",
    "wirebot_workspace": "path", "wirebot_config_dir": "path", "wirebot_log_dir": "path",
    "wirebot_state_dir": "path", "wirebot_run_dir": "path", "wirebot_agents_dir": "path",
    "gateway_port": "port", "scoreboard_port": "port", "mem0_port": "port", "memory_syncd_port": "port",
    "letta_port": "port", "agent_port": "port", "public_hostnames": "hostnames",
    "agent_keys_dir": "path", "agent_control_socket": "path", "agent_read_timeout_seconds": "seconds",
    "agent_max_connections": "seconds", "agent_metrics_sources": "addresses",
    "gateway_exec": "exec", "gateway_install": "bool", "gateway_nodejs_major": "seconds",
    "gateway_openclaw_version": "text", "gateway_state_dir": "path", "gateway_config_file": "path",
    "gateway_database": "path", "gateway_config": "config_keys", "gateway_ready_timeout_seconds": "seconds",
    "gateway_stop_timeout_seconds": "seconds", "scoreboard_exec": "exec", "scoreboard_events_db": "path",
    "scoreboard_tenant_dir": "path", "cloudflared_unit": "name", "cloudflared_config": "path",
    "cloudflared_metrics": "text", "cloudflared_install": "install", "cloudflared_version": "text",
    "cloudflared_binary": "path", "litestream_version": "text", "litestream_wheel_sha256": "sha256",
    "litestream_binary": "path", "litestream_config": "path", "litestream_socket": "path",
    "litestream_capabilities": "capabilities",
    "litestream_databases": "paths", "litestream_tenant_dir": "path", "litestream_stall_seconds": "seconds",
    "replica_user": "name", "replica_files_user": "name", "replica_root": "path", "replica_key": "path",
    "filesync_paths": "synced_paths", "sshd_dropin": "path",
    "filesync_debounce_seconds": "seconds", "filesync_full_sync_minutes": "seconds",
    "filesync_retry_max_seconds": "seconds", "heartbeat_interval_seconds": "seconds",
    "heartbeat_miss_threshold": "seconds", "heartbeat_clock_window_seconds": "seconds",
    "witness_public_url": "url", "witness_public_host_header": "text_or_empty",
    "witness_cloudflare_api_base": "url", "witness_timeout_seconds": "seconds", "fence_key": "path",
    "secrets_files": "secrets", "secrets_required": "list", "cloudflared_secrets": "text",
    "drill_schedule": "text", "drill_max_age_days": "seconds", "packages_apt": "list", "packages_dnf": "list",
    "packages_update_cache": "bool",
    "fencing_lease_enabled": "bool", "fencing_lease_seconds": "seconds", "fencing_tunnel_ports": "ports",
    "fencing_lease_users": "names", "fencing_watch_seconds": "seconds",
    "fencing_lease_renew_seconds": "duration", "edge_probe_interval_seconds": "duration",
    "edge_probe_failures": "seconds", "firewall_ssh_sources": "cidrs",
    "firewall_agent_sources": "cidrs", "firewall_inbound": "inbound", "firewall_rules_file": "path",
}
ROLE_SCHEMA = {
    "primary": {"replicator_unit": "name", "replicator_config": "path", "drill_command": "list",
                "replicator_capabilities": "capabilities"},
    "standby": {"standby_unit": "name", "standby_config": "path", "standby_capabilities": "capabilities"},
}


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
    """Validate one host's settings and the secrets directory they name; returns the merged settings."""
    values, origin = merged_settings(role, host_data, host_data_file)
    for key, kind in {**SCHEMA, **ROLE_SCHEMA[role]}.items():
        if key not in values:
            raise SettingError(f"{GROUP_DATA / 'all.py'}: setting '{key}' is missing ({KINDS[kind][1]})")
        valid, expected = KINDS[kind]
        if not valid(values[key]):
            raise SettingError(f"{origin[key]}: setting '{key}' must be {expected}, not {values[key]!r}")
    if values["heartbeat_clock_window_seconds"] <= values["heartbeat_interval_seconds"]:
        raise SettingError(f"{origin['heartbeat_clock_window_seconds']}: heartbeat_clock_window_seconds must "
                           "be larger than heartbeat_interval_seconds")
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
    if "secrets_dir" not in values:
        raise SettingError(f"{host_data_file}: 'secrets_dir' is not set for the {role} host")
    try:
        check_all(values["secrets_dir"])
        runtime_secrets(values["secrets_dir"], values["secrets_files"], values["secrets_required"])
        if values["agent_metrics_sources"]:
            metrics_reader_cert(values["secrets_dir"], required=True)
    except SecretsError as error:
        raise SettingError(str(error)) from None
    return values


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
            "end before the heartbeat detector fires (docs/fencing.md)")
    if renew > interval:
        raise SettingError(f"{origin['fencing_lease_renew_seconds']}: fencing_lease_renew_seconds={renew} must not "
                           f"exceed heartbeat_interval_seconds={interval} (lease beats come between heartbeats)")


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

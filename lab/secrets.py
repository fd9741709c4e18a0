"""The lab's secrets directory, laid out like the operator's (see tasks/core/operator_settings.py).

Made once per lab and kept until `lab down`: the tunnel's credentials and cloudflared config for the
lab's made-up tunnel, the agents' HMAC key, the gateway's bearer token, the edge's API token, and a
webhook URL pointing at the edge's local receiver. None of it is real or leaves this machine.
"""

import json
import os
import secrets as random_secrets
import subprocess
from pathlib import Path

import yaml

from lab import settings
from lab.group_data import group_settings

CREDENTIALS_PATH = f"/root/.cloudflared/{settings.TUNNEL_ID}.json"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        path.write_text(text)
    os.chmod(path, 0o600)


def cloudflared_config(hostnames: dict, ports: dict) -> dict:
    """cloudflared's config for the lab tunnel, in the real format, ending in the catch-all rule."""
    ingress = [
        {"hostname": host, "service": f"http://127.0.0.1:{ports[service]}"}
        for host, service in sorted(hostnames.items())
    ]
    ingress.append({"service": "http_status:404"})
    return {"tunnel": settings.TUNNEL_ID, "credentials-file": CREDENTIALS_PATH, "ingress": ingress}


def ensure() -> Path:
    """The lab secrets directory, complete; existing files are kept."""
    data = group_settings("all")
    ports = {"gateway": data["gateway_port"], "scoreboard": data["scoreboard_port"]}
    root = settings.SECRETS_DIR
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    credentials = {
        "AccountTag": settings.ACCOUNT_TAG,
        "TunnelSecret": settings.TUNNEL_SECRET,
        "TunnelID": settings.TUNNEL_ID,
    }
    _write(root / "cloudflared" / "credentials.json", json.dumps(credentials, indent=2) + "\n")
    config = cloudflared_config(data["public_hostnames"], ports)
    _write(root / "cloudflared" / "wirebot.yml", yaml.safe_dump(config, sort_keys=False))
    _write(root / "agent-hmac.key", random_secrets.token_hex(32) + "\n")
    _write(root / "cloudflare-api-token", settings.EDGE_API_TOKEN + "\n")
    _write(root / "discord-webhook.url", f"{settings.EDGE_URL}/lab/webhook/wirebot\n")
    _write(root / "gateway.env", "OPENCLAW_LAB_MODEL_KEY=lab-not-a-real-key\n")
    prometheus_client()
    _write(root / "gateway-token.env", f"OPENCLAW_GATEWAY_TOKEN={random_secrets.token_urlsafe(32)}\n")
    return root


def ensure_in(folder: Path) -> Path:
    """The same secrets made in `folder` instead of the lab's (tests: an operator-shaped directory)."""
    original = settings.SECRETS_DIR
    settings.SECRETS_DIR = Path(folder)
    try:
        return ensure()
    finally:
        settings.SECRETS_DIR = original


def prometheus_client() -> dict:
    """The lab Prometheus' client key and certificate, made once with the operator's documented command
    (tasks/core/secrets.py MAKE_METRICS_READER_CERT); the certificate goes to secrets/prometheus/client.crt, the key
    stays outside the secrets directory as it stays on a real Prometheus server. {"cert_file", "key_file"}."""
    from tasks.core.secrets import MAKE_METRICS_READER_CERT, METRICS_READER_CERT

    folder = settings.SECRETS_DIR.parent / "prometheus"  # the lab's state directory, beside secrets/
    key, cert = folder / "client.key", folder / "client.crt"
    if not (key.exists() and cert.exists()):
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        subprocess.run(["sh", "-c", f"umask 077 && {MAKE_METRICS_READER_CERT} 2>/dev/null"], cwd=folder, check=True)
    _write(settings.SECRETS_DIR / METRICS_READER_CERT, cert.read_text())
    return {"cert_file": str(cert), "key_file": str(key)}


def edge_config() -> dict:
    """What the edge needs to know: the API token and the lab tunnel with its public hostnames."""
    data = group_settings("all")
    return {
        "api_token": settings.EDGE_API_TOKEN,
        "tunnels": {
            settings.TUNNEL_ID: {
                "account_tag": settings.ACCOUNT_TAG,
                "secret": settings.TUNNEL_SECRET,
                "hostnames": sorted(data["public_hostnames"]),
            }
        },
    }

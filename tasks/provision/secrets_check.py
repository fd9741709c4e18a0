"""Checks of the operator's secrets directory, run before any host is touched.

Layout (the operator's, outside git; lab/secrets.py makes a lab one):
    cloudflared/wirebot.yml       cloudflared config: tunnel, credentials-file, ingress (catch-all last)
    cloudflared/credentials.json  the tunnel's credentials: AccountTag, TunnelSecret, TunnelID
    agent-hmac.key                the agents' shared HMAC key (hex, >= 64 characters)
    gateway-token.env             OPENCLAW_GATEWAY_TOKEN=<token>: the gateway's persistent bearer token
                                  (32+ characters, no spaces), given to the gateway as its environment
    discord-webhook.url, cloudflare-api-token, gateway.env   optional
"""

import json
import re
from pathlib import Path
from typing import Dict, List

import yaml


class SecretsError(Exception):
    """A secret is missing or malformed; the message names the file and what is wrong."""


def cloudflared_files(secrets_dir: str, subdir: str = "cloudflared") -> Dict[str, str]:
    """Validate the cloudflared config and credentials; returns their local paths and where they go."""
    folder = Path(secrets_dir) / subdir
    config_path, credentials_path = folder / "wirebot.yml", folder / "credentials.json"
    for path in (config_path, credentials_path):
        if not path.is_file():
            raise SecretsError(f"{path}: missing (the tunnel's cloudflared config and credentials go here)")
    try:
        config = yaml.safe_load(config_path.read_text())
    except yaml.YAMLError as error:
        raise SecretsError(f"{config_path}: not valid YAML: {error}") from None
    if not isinstance(config, dict):
        raise SecretsError(f"{config_path}: expected a mapping")
    for key in ("tunnel", "credentials-file", "ingress"):
        if not config.get(key):
            raise SecretsError(f"{config_path}: '{key}' is required")
    ingress = config["ingress"]
    if not isinstance(ingress, list) or not all(isinstance(rule, dict) and rule.get("service")
                                                 for rule in ingress):
        raise SecretsError(f"{config_path}: 'ingress' must be a list of rules, each with a 'service'")
    if "hostname" in ingress[-1] or "path" in ingress[-1]:
        raise SecretsError(f"{config_path}: the last ingress rule must match all URLs (no hostname or path)")
    if not str(config["credentials-file"]).startswith("/"):
        raise SecretsError(f"{config_path}: 'credentials-file' must be an absolute path on the hosts")
    try:
        credentials = json.loads(credentials_path.read_text())
    except ValueError as error:
        raise SecretsError(f"{credentials_path}: not valid JSON: {error}") from None
    for key in ("AccountTag", "TunnelSecret", "TunnelID"):
        if not isinstance(credentials, dict) or not credentials.get(key):
            raise SecretsError(f"{credentials_path}: '{key}' is required")
    if credentials["TunnelID"] != str(config["tunnel"]):
        raise SecretsError(f"{credentials_path}: TunnelID {credentials['TunnelID']} does not match "
                           f"'tunnel' {config['tunnel']} in {config_path}")
    return {
        "config_src": str(config_path), "credentials_src": str(credentials_path),
        "credentials_dest": str(config["credentials-file"]), "tunnel_id": str(config["tunnel"]),
        "account_tag": str(credentials["AccountTag"]),
    }


def agent_key(secrets_dir: str) -> None:
    """The agents' HMAC key must exist and be at least 32 bytes of hex."""
    path = Path(secrets_dir) / "agent-hmac.key"
    if not path.is_file():
        raise SecretsError(f"{path}: missing (make one: python3 -c 'import secrets; "
                           f"print(secrets.token_hex(32))' > {path}; chmod 600 {path})")
    if not re.fullmatch(r"[0-9a-fA-F]{64,}", path.read_text().strip()):
        raise SecretsError(f"{path}: expected at least 64 hex characters")


GATEWAY_TOKEN_FILE = "gateway-token.env"
GATEWAY_TOKEN_VARIABLE = "OPENCLAW_GATEWAY_TOKEN"


def gateway_token(secrets_dir: str) -> str:
    """The gateway's bearer token from gateway-token.env (one line OPENCLAW_GATEWAY_TOKEN=<token>)."""
    path = Path(secrets_dir) / GATEWAY_TOKEN_FILE
    make = (f"(make one: python3 -c 'import secrets; print(\"{GATEWAY_TOKEN_VARIABLE}=\" + "
            f"secrets.token_urlsafe(32))' > {path}; chmod 600 {path})")
    if not path.is_file():
        raise SecretsError(f"{path}: missing {make}")
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    prefix = GATEWAY_TOKEN_VARIABLE + "="
    if len(lines) != 1 or not lines[0].startswith(prefix):
        raise SecretsError(f"{path}: expected exactly one line {prefix}<token> {make}")
    token = lines[0][len(prefix):]
    if not re.fullmatch(r"[A-Za-z0-9._~+/=-]{32,}", token):
        raise SecretsError(f"{path}: the token must be 32 or more characters without spaces or quotes")
    return token


_FORMATS = {  # what a runtime secret must look like, by its name in the secrets directory
    "agent-hmac.key": (r"[0-9a-fA-F]{64,}", "at least 64 hex characters"),
    "discord-webhook.url": (r"https?://\S+", "one http(s) URL"),
    "cloudflare-api-token": (r"\S+", "one token, no spaces"),
    "gateway.env": (r"(?:[A-Za-z_][A-Za-z0-9_]*=[^\n]*\n?)*", "KEY=value lines"),
    "gateway-token.env": (GATEWAY_TOKEN_VARIABLE + r"=[A-Za-z0-9._~+/=-]{32,}",
                          "one line OPENCLAW_GATEWAY_TOKEN=<32+ characters>"),
}


def runtime_secrets(secrets_dir: str, names: Dict[str, str], required: List[str]) -> List[str]:
    """The runtime secrets (secrets_files) present in the secrets directory, each checked; the deploy
    installs exactly these on both hosts and removes the others. SecretsError names a missing required
    one or a malformed one."""
    present = []
    for name in names:
        path = Path(secrets_dir) / name
        if not path.is_file():
            if name in required:
                raise SecretsError(f"{path}: missing (required)")
            continue
        text = path.read_text()
        pattern, expected = _FORMATS.get(name, (r"[^\n]+\n?", "one non-empty line"))
        content = text.strip() if name != "gateway.env" else "\n".join(
            line for line in text.splitlines() if line.strip() and not line.startswith("#"))
        if not content and name != "gateway.env" or not re.fullmatch(pattern, content):
            raise SecretsError(f"{path}: expected {expected}")
        present.append(name)
    return present


def check_all(secrets_dir: str) -> Dict[str, str]:
    """Every check above; returns the cloudflared facts."""
    if not Path(secrets_dir).is_dir():
        raise SecretsError(f"{secrets_dir}: the secrets directory does not exist")
    agent_key(secrets_dir)
    gateway_token(secrets_dir)
    return cloudflared_files(secrets_dir)

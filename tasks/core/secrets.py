"""Checks of the operator's secrets directory, run before any host is touched.

Layout (the operator's, outside git; lab/secrets.py makes a lab one):
    cloudflared/wirebot.yml       cloudflared config: tunnel, credentials-file, ingress (catch-all last)
    cloudflared/credentials.json  the tunnel's credentials: AccountTag, TunnelSecret, TunnelID
    agent-hmac.key                the agents' shared HMAC key (hex, >= 64 characters)
    gateway-token.env             OPENCLAW_GATEWAY_TOKEN=<token>: the gateway's persistent bearer token
                                  (32+ characters, no spaces), given to the gateway as its environment
    discord-webhook.url, cloudflare-api-token, gateway.env   optional
    prometheus/client.crt         optional: the metrics reader's client certificate (its key stays with
                                  Prometheus); required when agent_metrics_sources is set
"""

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional

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


METRICS_READER_CERT = "prometheus/client.crt"
MAKE_METRICS_READER_CERT = (
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -subj /CN=wirebot-prometheus "
    "-addext basicConstraints=critical,CA:FALSE -addext keyUsage=critical,digitalSignature "
    "-addext extendedKeyUsage=clientAuth -keyout client.key -out client.crt")


def metrics_reader_cert(secrets_dir: str, required: bool = False) -> Optional[Path]:
    """The metrics reader's certificate (secrets_dir/prometheus/client.crt) if present (an error when
    ``required`` and absent): exactly one PEM certificate and no private key, self-signed (the agents pin
    it as its own trust anchor), valid now, for client use, with a P-256/P-384, Ed25519 or >= 2048-bit RSA
    key. Returns its path, or None."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    path = Path(secrets_dir) / METRICS_READER_CERT
    if not path.is_file():
        if required:
            raise SecretsError(f"{path}: missing: agent_metrics_sources is set, so the agents need Prometheus' "
                               f"client certificate (make it on the Prometheus server: {MAKE_METRICS_READER_CERT}; "
                               f"copy client.crt here, the key stays there)")
        return None
    text = path.read_text(errors="replace")
    if "PRIVATE KEY" in text:
        raise SecretsError(f"{path}: holds a private key: only the certificate goes here, the key stays with "
                           "Prometheus (make a new pair: this one has left the Prometheus server)")
    if text.count("-----BEGIN CERTIFICATE-----") != 1:
        raise SecretsError(f"{path}: expected exactly one PEM certificate")
    try:
        cert = x509.load_pem_x509_certificate(text.encode())
    except ValueError as error:
        raise SecretsError(f"{path}: not a valid PEM certificate: {error}") from None
    try:
        cert.verify_directly_issued_by(cert)
    except (InvalidSignature, ValueError, TypeError):
        raise SecretsError(f"{path}: must be self-signed (the agents pin exactly this certificate as its own "
                           "trust anchor)") from None
    now = datetime.now(timezone.utc)
    if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
        raise SecretsError(f"{path}: not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} to "
                           f"{cert.not_valid_after_utc:%Y-%m-%d})")
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = None
    if usages is not None and x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        raise SecretsError(f"{path}: its extendedKeyUsage does not allow clientAuth")
    key = cert.public_key()
    strong = (isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in ("secp256r1", "secp384r1")
              or isinstance(key, ed25519.Ed25519PublicKey)
              or isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048)
    if not strong:
        raise SecretsError(f"{path}: key type not accepted (use P-256 as in: {MAKE_METRICS_READER_CERT})")
    return path


def dns_names(pem_text: str) -> Optional[set]:
    """The DNS subjectAltNames of a PEM certificate (an empty set: none); None when it does not parse."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(pem_text.encode())
    except ValueError:
        return None
    try:
        return set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                   .get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        return set()


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
REQUIRED_SECRETS = ["agent-hmac.key", "gateway-token.env"]  # the agents' heartbeat key, the gateway's token


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
    """Every check above (the metrics reader's certificate when present); returns the cloudflared facts."""
    if not Path(secrets_dir).is_dir():
        raise SecretsError(f"{secrets_dir}: the secrets directory does not exist")
    agent_key(secrets_dir)
    metrics_reader_cert(secrets_dir)
    gateway_token(secrets_dir)
    return cloudflared_files(secrets_dir)

"""Mutual TLS between the two agents, with the peer's certificate pinned as the only trust anchor.

Each host's deploy makes its own key and self-signed certificate on the host (the private key never
leaves it) and installs the other host's certificate as ``peer_cert_file``. A server context requires a
client certificate that chains to that one pinned certificate; a client context accepts only a server
that presents it. Host names are not checked: the trust store holds exactly one self-signed certificate
(CA:FALSE), so a match already names the one peer, whatever address it has. TLS 1.3 only (OpenSSL 1.1.1+ on
both distributions): the handshake encrypts the certificates too, so a capture shows no names.

Settings (both agents' YAML, section ``tls``): cert_file, key_file (this host's), peer_cert_file.
"""

import ssl

from wirebot.common import config


def load_settings(cfg, path):
    """{"cert_file", "key_file", "peer_cert_file"} from the ``tls`` section (all three required)."""
    return {name: config.get(cfg, f"tls.{name}", str, path) for name in ("cert_file", "key_file", "peer_cert_file")}


def _context(purpose, settings):
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3  # both ends are ours; 1.3 also encrypts the certificates
    try:
        ctx.load_cert_chain(settings["cert_file"], settings["key_file"])
    except (OSError, ssl.SSLError) as exc:
        raise config.ConfigError(f"{settings['cert_file']} / {settings['key_file']}: cannot load this host's "
                                 f"TLS certificate and key: {exc}") from None
    try:
        ctx.load_verify_locations(cafile=settings["peer_cert_file"])
    except (OSError, ssl.SSLError) as exc:
        raise config.ConfigError(f"{settings['peer_cert_file']}: cannot load the peer's pinned certificate: "
                                 f"{exc}") from None
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def server_context(settings):
    """Server side: our certificate; a client certificate is required and must be the pinned peer's."""
    return _context(ssl.PROTOCOL_TLS_SERVER, settings)


def client_context(settings):
    """Client side: our certificate as client certificate; the server must present the pinned peer's."""
    ctx = _context(ssl.PROTOCOL_TLS_CLIENT, settings)
    ctx.check_hostname = False  # the pin names the peer (see the module docstring)
    return ctx

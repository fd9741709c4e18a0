"""The agents' two listeners and the settings they share (both agents' YAML).

* the peer listener, ``listen_address:listen_port`` (:8300): mutual TLS with the peer's pinned
  certificate (wirebot.common.tls), only the peer's address admitted; it serves what the peer needs (the
  standby: POST /heartbeat, GET /status /health /metrics; the replicator: GET /status /health /metrics);
  optionally also the metrics reader (Prometheus): only from ``metrics.sources`` and only with exactly
  the pinned ``metrics.cert_file``, served ``GET /metrics`` and nothing else (any other path: 404);
* the local control socket, ``control.socket`` (0600, root or the agent's user only): every route,
  including the control requests (activate, deactivate, trigger-sync, drill), which must also be signed
  with this host's own control key (``secrets.control_key_file``, made on the host, never copied).

Keys: ``tls.cert_file``, ``tls.key_file``, ``tls.peer_cert_file``; ``control.socket``;
``secrets.control_key_file``; ``metrics.sources`` (list of addresses, default []: no metrics reader) and
``metrics.cert_file`` (the reader's pinned client certificate, required when sources are set);
``http.read_timeout_seconds`` (default 10: TLS handshake plus the whole
request); ``http.max_connections`` (default 32 per listener; at the cap the oldest connection still
waiting for its request is closed; connections from the metrics reader's addresses hold at most a quarter of
it and evict only each other).
"""

import ssl

from wirebot.common import config, httpapi, signing, tls
from wirebot.common.log import log

CONTROL_SENDER = "operator"  # the sender name of every control request (the local operator tools)


def load_settings(cfg, path):
    """The shared keys above as a dict (ConfigError names the file and key)."""
    get = config.get
    settings = {
        "tls": tls.load_settings(cfg, path),
        "control_socket": get(cfg, "control.socket", str, path),
        "control_key_file": get(cfg, "secrets.control_key_file", str, path),
        "read_timeout": get(cfg, "http.read_timeout_seconds", float, path, default=httpapi.DEFAULT_READ_TIMEOUT),
        "max_connections": get(cfg, "http.max_connections", int, path, default=httpapi.DEFAULT_MAX_CONNECTIONS),
    }
    if not settings["control_socket"].startswith("/"):
        raise config.ConfigError(f"{path}: control.socket: expected an absolute path")
    if settings["read_timeout"] <= 0 or settings["max_connections"] < 2:
        raise config.ConfigError(f"{path}: http.read_timeout_seconds must be > 0 and http.max_connections >= 2")
    settings["metrics_sources"] = get(cfg, "metrics.sources", list, path, default=[])
    if not all(isinstance(a, str) and a for a in settings["metrics_sources"]):
        raise config.ConfigError(f"{path}: metrics.sources: expected a list of addresses")
    settings["metrics_cert_file"] = get(cfg, "metrics.cert_file", str, path,
                                        default=config.REQUIRED if settings["metrics_sources"] else "")
    return settings


def _cert_der(path, what):
    """The DER bytes of the one PEM certificate in ``path`` (ConfigError naming the file otherwise)."""
    try:
        with open(path) as handle:
            text = handle.read()
        if text.count("-----BEGIN CERTIFICATE-----") != 1 or "PRIVATE KEY" in text:
            raise ValueError("expected exactly one PEM certificate and no key")
        return ssl.PEM_cert_to_DER_cert(text.strip())
    except (OSError, ValueError) as exc:
        raise config.ConfigError(f"{path}: {what}: {exc}") from None


def metrics_routes(routes):
    """What the metrics reader is served out of a listener's ``routes``: GET /metrics, nothing else."""
    return {("GET", "/metrics"): routes[("GET", "/metrics")]}


def _identities(channel, peer_routes, component):
    """(server context, the peer's pinned DER, [the metrics reader's Identity] or []). The reader is
    optional: a problem with its certificate is logged as an error and the listener serves the peer alone
    (it must never stop the heartbeats; Prometheus then sees the target down)."""
    context = tls.server_context(channel["tls"])
    peer_der = _cert_der(channel["tls"]["peer_cert_file"], "the peer's pinned certificate")
    if not channel.get("metrics_sources"):
        return context, peer_der, []
    path = channel["metrics_cert_file"]
    try:
        reader_der = _cert_der(path, "the metrics reader's pinned certificate")
        if reader_der in (peer_der, _cert_der(channel["tls"]["cert_file"], "this host's certificate")):
            raise config.ConfigError(f"{path}: the metrics reader's certificate must be its own, not an agent's")
        reader_context = tls.server_context(channel["tls"])
        try:
            reader_context.load_verify_locations(cafile=path)  # trusted in the handshake; routes by identity
        except (OSError, ssl.SSLError) as exc:
            raise config.ConfigError(f"{path}: cannot load the metrics reader's certificate: {exc}") from None
    except config.ConfigError as exc:
        log(component, "metrics-reader-disabled", level="error", error=str(exc),
            reason="serving the peer only; fix the certificate and deploy")
        return context, peer_der, []
    reader = httpapi.Identity("metrics", channel["metrics_sources"], metrics_routes(peer_routes), reader_der)
    return reader_context, peer_der, [reader]


def control_binding(node_name):
    """Control requests: from the local operator tools to the agent named ``node_name``."""
    return signing.Binding(signing.CONTROL, CONTROL_SENDER, node_name)


def heartbeat_binding(sender, receiver):
    """Heartbeats: from the primary's replicator (``sender``) to the standby agent (``receiver``)."""
    return signing.Binding(signing.HEARTBEAT, sender, receiver)


def serve(channel, address, port, peer_routes, local_routes, allowed_clients, component, max_body=65536):
    """Start both listeners; returns [peer server, local server]. The peer listener requires TLS: the peer
    (``allowed_clients``, its pinned certificate) gets ``peer_routes``, the metrics reader (when
    configured) only their GET /metrics."""
    bounds = {"max_body": max_body, "component": component, "read_timeout": channel["read_timeout"],
              "max_connections": channel["max_connections"]}
    context, peer_der, readers = _identities(channel, peer_routes, component)
    local = httpapi.serve_unix(channel["control_socket"], local_routes, **bounds)
    try:
        peer = httpapi.serve(address, port, peer_routes, tls=context, allowed_clients=allowed_clients,
                             pinned_cert=peer_der, readers=readers, **bounds)
    except (OSError, config.ConfigError):
        local.server_close()
        raise
    return [peer, local]


def stats(servers):
    """{"peer": counts, "local": counts} of the listeners ``serve`` returned (httpapi stats: open
    connections, refused_source, timed_out, evicted, tls_failed, refused_identity, idle_closed); {} before
    they run."""
    return dict(zip(("peer", "local"), (server.stats() for server in servers or ())))


def stop(servers):
    for server in servers or ():
        server.shutdown()
        server.server_close()


def local_target(channel):
    return httpapi.Target.local(channel["control_socket"])


def post_control(channel, node_name, path, payload, timeout, sequence=None):
    """A control request to the local agent over its socket, signed with this host's control key."""
    key = signing.load_key(channel["control_key_file"])
    return httpapi.post_signed(local_target(channel), path, key, control_binding(node_name), payload,
                               signing.next_sequence(0) if sequence is None else sequence, timeout)

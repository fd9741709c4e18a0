"""The agents' two listeners and the settings they share (both agents' YAML).

* the peer listener, ``listen_address:listen_port`` (:8300): mutual TLS with the peer's pinned
  certificate (wirebot.tls), only the peer's address admitted; it serves what the peer needs (the
  standby: POST /heartbeat, GET /status /health /metrics; the replicator: GET /status /health /metrics);
* the local control socket, ``control.socket`` (0600, root or the agent's user only): every route,
  including the control requests (activate, deactivate, trigger-sync, drill), which must also be signed
  with this host's own control key (``secrets.control_key_file``, made on the host, never copied).

Keys: ``tls.cert_file``, ``tls.key_file``, ``tls.peer_cert_file``; ``control.socket``;
``secrets.control_key_file``; ``http.read_timeout_seconds`` (default 10: TLS handshake plus the whole
request); ``http.max_connections`` (default 32 per listener; at the cap the oldest connection still
waiting for its request is closed).
"""

from . import config, httpapi, signing, tls

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
    return settings


def control_binding(node_name):
    """Control requests: from the local operator tools to the agent named ``node_name``."""
    return signing.Binding(signing.CONTROL, CONTROL_SENDER, node_name)


def heartbeat_binding(sender, receiver):
    """Heartbeats: from the primary's replicator (``sender``) to the standby agent (``receiver``)."""
    return signing.Binding(signing.HEARTBEAT, sender, receiver)


def serve(channel, address, port, peer_routes, local_routes, allowed_clients, component, max_body=65536):
    """Start both listeners; returns [peer server, local server]. The peer listener requires TLS."""
    bounds = {"max_body": max_body, "component": component, "read_timeout": channel["read_timeout"],
              "max_connections": channel["max_connections"]}
    local = httpapi.serve_unix(channel["control_socket"], local_routes, **bounds)
    try:
        peer = httpapi.serve(address, port, peer_routes, tls=tls.server_context(channel["tls"]),
                             allowed_clients=allowed_clients, **bounds)
    except (OSError, config.ConfigError):
        local.server_close()
        raise
    return [peer, local]


def stats(servers):
    """{"peer": counts, "local": counts} of the listeners ``serve`` returned (httpapi stats: open
    connections, refused_source, timed_out, evicted, tls_failed); {} before they run."""
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

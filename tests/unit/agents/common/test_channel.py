"""wirebot.common.channel's metrics reader: from its configured addresses and with exactly its pinned certificate,
the peer listener serves it GET /metrics and nothing else; every other pairing of certificate and address
is refused, and the peer keeps everything it had. Loopback addresses stand for hosts (127.0.0.1 the peer,
127.0.0.2 Prometheus, 127.0.0.3 anyone else)."""

import http.client
import ssl
import time

import pytest
from wirebot.common import channel, config

from .. import agenttest

PEER, PROMETHEUS, OTHER = "127.0.0.1", "127.0.0.2", "127.0.0.3"


@pytest.fixture
def calls():
    return []


def _routes(calls):
    def handler(name, status=200, result=None):
        return lambda request: calls.append((name, request.client)) or (status, result or {"ok": name})
    return {("POST", "/heartbeat"): handler("heartbeat", 202), ("GET", "/status"): handler("status"),
            ("GET", "/health"): handler("health"),
            ("GET", "/metrics"): handler("metrics", result="# HELP x y\n# TYPE x gauge\nx 1\n")}


def _start(tmp_path, calls, sources=(PROMETHEUS,), cert="prometheus"):
    cfg = agenttest.channel_config(tmp_path, "standby", "primary")
    cfg["secrets"] = {"control_key_file": cfg.pop("control_key_file")}
    if sources:
        cfg["metrics"] = {"sources": list(sources), "cert_file": agenttest.tls_identities((cert,))[cert]["cert_file"]}
    settings = channel.load_settings(cfg, "standby.yml")
    servers = channel.serve(settings, "127.0.0.1", 0, _routes(calls), {}, [PEER], "test")
    return servers


@pytest.fixture
def listener(tmp_path, calls):
    servers = _start(tmp_path, calls)
    yield servers[0]
    channel.stop(servers)


def _request(server, who, source, method="GET", path="/metrics"):
    """(status, body) of one request as ``who`` (a tls_identities name) from ``source``; (0, b"") when
    the connection is refused or closed."""
    ids = agenttest.tls_identities(("primary", "standby", "stranger", "prometheus"))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(ids["standby"]["cert_file"])
    ctx.load_cert_chain(ids[who]["cert_file"], ids[who]["key_file"])
    conn = http.client.HTTPSConnection("127.0.0.1", server.server_address[1], timeout=5, context=ctx,
                                       source_address=(source, 0))
    try:
        conn.request(method, path, body=b"{}" if method == "POST" else None)
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return 0, b""
    finally:
        conn.close()


def _count(server, key, expected):
    deadline = time.monotonic() + 5
    while server.stats()[key] < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return server.stats()[key]


def test_the_metrics_reader_is_served_metrics_only(listener, calls):
    status, body = _request(listener, "prometheus", PROMETHEUS)
    assert status == 200 and body.startswith(b"# HELP x y")
    for method, path, expected in (("GET", "/status", 404), ("GET", "/health", 404), ("POST", "/heartbeat", 404),
                                   ("POST", "/activate", 404), ("POST", "/metrics", 405),
                                   ("GET", "/metrics/../status", 404)):
        assert _request(listener, "prometheus", PROMETHEUS, method, path)[0] == expected, (method, path)
    assert calls == [("metrics", PROMETHEUS)]


@pytest.mark.parametrize("who,source,refusal", [
    ("prometheus", PEER, "refused_identity"),      # the reader's certificate from the peer's address
    ("prometheus", OTHER, "refused_source"),       # ... from an address configured nowhere
    ("primary", PROMETHEUS, "refused_identity"),   # the peer's certificate from the reader's address
    ("stranger", PROMETHEUS, "tls_failed"),        # a certificate pinned nowhere, from the reader's address
    ("standby", PROMETHEUS, "tls_failed"),         # the server's own certificate
])
def test_every_other_pairing_is_refused(listener, calls, who, source, refusal):
    for path in ("/metrics", "/status"):
        assert _request(listener, who, source, "GET", path) == (0, b"")
    assert _count(listener, refusal, 2) == 2 and calls == []


def test_the_peer_keeps_everything(listener, calls):
    assert _request(listener, "primary", PEER, "POST", "/heartbeat")[0] == 202
    for path in ("/status", "/health", "/metrics"):
        assert _request(listener, "primary", PEER, "GET", path)[0] == 200
    assert [name for name, _ in calls] == ["heartbeat", "status", "health", "metrics"]


def test_without_sources_the_reader_certificate_is_not_even_trusted(tmp_path, calls):
    servers = _start(tmp_path, calls, sources=())
    try:
        assert _request(servers[0], "prometheus", PEER) == (0, b"")
        assert _count(servers[0], "tls_failed", 1) == 1
        assert _request(servers[0], "primary", PEER, "GET", "/status")[0] == 200
    finally:
        channel.stop(servers)


def test_sources_need_the_reader_certificate(tmp_path):
    cfg = agenttest.channel_config(tmp_path, "standby", "primary")
    cfg["secrets"] = {"control_key_file": cfg.pop("control_key_file")}
    cfg["metrics"] = {"sources": [PROMETHEUS]}
    with pytest.raises(config.ConfigError, match="metrics.cert_file is required"):
        channel.load_settings(cfg, "standby.yml")
    cfg["metrics"] = {"sources": "127.0.0.2", "cert_file": "/x"}
    with pytest.raises(config.ConfigError, match="metrics.sources"):
        channel.load_settings(cfg, "standby.yml")


@pytest.mark.parametrize("cert", ["primary", "standby", "missing"])
def test_a_bad_reader_certificate_disables_the_reader_never_the_peer(tmp_path, calls, capsys, cert):
    """The peer's or this host's own certificate as the reader's, or none at all: logged as an error, and
    the listener serves the peer alone (the heartbeats must not stop for an optional reader)."""
    if cert == "missing":
        agenttest.tls_identities(("prometheus",))
    servers = _start(tmp_path, calls, cert="prometheus" if cert == "missing" else cert)
    if cert == "missing":  # the file vanished between the deploy's check and the agent's start
        channel.stop(servers)
        cfg = agenttest.channel_config(tmp_path, "standby", "primary")
        cfg["secrets"] = {"control_key_file": cfg.pop("control_key_file")}
        cfg["metrics"] = {"sources": [PROMETHEUS], "cert_file": str(tmp_path / "gone.crt")}
        servers = channel.serve(channel.load_settings(cfg, "standby.yml"), "127.0.0.1", 0, _routes(calls), {},
                                [PEER], "test")
    try:
        assert '"event": "metrics-reader-disabled"' in capsys.readouterr().out
        assert _request(servers[0], "primary", PEER, "GET", "/status")[0] == 200
        assert _request(servers[0], "prometheus", PROMETHEUS) == (0, b"")
        assert _request(servers[0], "primary", PROMETHEUS, "GET", "/status") == (0, b"")
    finally:
        channel.stop(servers)


def test_a_flood_from_the_readers_address_holds_a_quarter_of_the_cap_and_never_closes_the_peers(tmp_path, calls):
    """max_connections 8: the reader's address holds at most 2 connections and evicts only its own; the
    peer's 4 half-open connections stay open through 30 from the reader's address, and the peer is served."""
    import socket

    cfg = agenttest.channel_config(tmp_path, "standby", "primary", read_timeout=5, max_connections=8)
    cfg["secrets"] = {"control_key_file": cfg.pop("control_key_file")}
    cfg["metrics"] = {"sources": [PROMETHEUS], "cert_file": agenttest.tls_identities(("prometheus",))["prometheus"][
        "cert_file"]}
    servers = channel.serve(channel.load_settings(cfg, "standby.yml"), "127.0.0.1", 0, _routes(calls), {}, [PEER],
                            "test")
    server, socks = servers[0], []
    try:
        def half_open(source):
            sock = socket.create_connection(("127.0.0.1", server.server_address[1]), source_address=(source, 0))
            socks.append(sock)
            return sock

        peers = [half_open(PEER) for _ in range(4)]
        flood = [half_open(PROMETHEUS) for _ in range(30)]
        assert _count(server, "evicted", 28) == 28  # all but the reader's share of 2, and only its own
        assert server.stats()["open"] == 6
        for sock in peers:  # not closed by the server: a read times out instead of returning b""
            sock.settimeout(0.2)
            with pytest.raises(socket.timeout):
                sock.recv(1)
        assert sum(1 for sock in flood[-2:] if _still_open(sock)) == 2
        assert _request(server, "primary", PEER, "GET", "/status")[0] == 200
        assert _request(server, "prometheus", PROMETHEUS)[0] == 200  # evicts a waiting one of its own
    finally:
        for sock in socks:
            sock.close()
        channel.stop(servers)


def _still_open(sock):
    import socket

    sock.settimeout(0.2)
    try:
        return sock.recv(1) != b""
    except socket.timeout:
        return True
    except OSError:
        return False

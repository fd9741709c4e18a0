"""wirebot.common.httpapi: routing, 400/404/405/413/500 answers, and the server stays up; mutual TLS with a
pinned peer, the source filter, read timeouts, the connection cap and the local unix socket."""

import http.client
import json
import os
import socket
import stat
import threading
import time

import pytest
from wirebot.common import httpapi, signing, tls

from .. import agenttest

KEY = bytes(range(32))
BINDING = signing.Binding("control", "operator", "test")


@pytest.fixture
def server():
    seen = []

    def echo(request):
        seen.append(request)
        return 200, {"got": request.json(), "client": request.client, "query": request.query}

    def boom(request):
        raise RuntimeError("kaboom")

    def teapot(request):
        raise httpapi.HttpError(418, "short and stout")

    routes = {
        ("POST", "/echo"): echo,
        ("GET", "/health"): lambda r: (200, {"ok": True}),
        ("GET", "/metrics"): lambda r: (200, "a_metric 1\n"),
        ("GET", "/boom"): boom,
        ("GET", "/teapot"): teapot,
        ("POST", "/signed"): lambda r: (200, {"seq": signing.Verifier(KEY, 60, BINDING).verify(
            r.method, r.path, r.headers, r.body)}),
    }
    srv = httpapi.serve("127.0.0.1", 0, routes, max_body=1024, component="test")
    srv.seen = seen
    yield srv
    srv.shutdown()
    srv.server_close()


def _request(srv, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        conn.close()


def _alive(srv):
    status, _, body = _request(srv, "GET", "/health")
    return status == 200 and json.loads(body) == {"ok": True}


def test_json_roundtrip(server):
    status, ctype, body = _request(server, "POST", "/echo?x=1", body=b'{"a": 1}',
                                   headers={"Content-Type": "application/json"})
    assert status == 200 and ctype == "application/json"
    assert json.loads(body) == {"got": {"a": 1}, "client": "127.0.0.1", "query": {"x": "1"}}


def test_text_result(server):
    status, ctype, body = _request(server, "GET", "/metrics")
    assert status == 200 and ctype.startswith("text/plain") and body == b"a_metric 1\n"


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\xff\xfe", b""])
def test_malformed_body_400(server, body):
    status, _, payload = _request(server, "POST", "/echo", body=body)
    assert status == 400 and "error" in json.loads(payload)
    assert _alive(server)


def test_unknown_path_404(server):
    assert _request(server, "GET", "/nope")[0] == 404
    assert _alive(server)


def test_wrong_method_405(server):
    assert _request(server, "GET", "/echo")[0] == 405
    assert _request(server, "DELETE", "/health")[0] == 405
    assert _alive(server)


def test_oversized_body_413_without_reading_it(server):
    # Claim a huge body but send only a little: the server must answer without waiting for it.
    sock = socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=5)
    try:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n{\"a\":")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    assert data.startswith(b"HTTP/1.1 413")
    assert not server.seen
    assert _alive(server)


def test_body_just_over_limit_413(server):
    assert _request(server, "POST", "/echo", body=b"x" * 1025)[0] == 413
    assert _alive(server)


@pytest.mark.parametrize("length", ["abc", "-5"])
def test_malformed_content_length_400(server, length):
    sock = socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=5)
    try:
        sock.sendall(f"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode())
        data = sock.recv(4096)
    finally:
        sock.close()
    assert data.startswith(b"HTTP/1.1 400")
    assert _alive(server)


def test_handler_exception_500_and_stays_up(server, capsys):
    status, _, body = _request(server, "GET", "/boom")
    assert status == 500 and json.loads(body) == {"error": "internal error"}
    assert "kaboom" in capsys.readouterr().out  # logged, with the error
    assert _alive(server)


def test_http_error_status(server):
    status, _, body = _request(server, "GET", "/teapot")
    assert status == 418 and json.loads(body) == {"error": "short and stout"}


def _plain(srv):
    return httpapi.Target.peer(f"http://127.0.0.1:{srv.server_address[1]}")


def test_post_signed_roundtrip(server):
    status, data = httpapi.post_signed(_plain(server), "/signed", KEY, BINDING, {"a": 1}, 42, timeout=5)
    assert (status, data) == (200, {"seq": 42})
    status, data = httpapi.post_signed(_plain(server), "/signed", bytes(32), BINDING, {"a": 1}, 43, timeout=5)
    assert status == 500  # the route raised SignatureError: unhandled -> 500


def test_post_signed_unreachable():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    target = httpapi.Target.peer(f"http://127.0.0.1:{port}")
    status, data = httpapi.post_signed(target, "/x", KEY, BINDING, {}, 1, timeout=2)
    assert status == 0 and "error" in data


def test_get_json(server):
    status, data = httpapi.get_json(_plain(server), "/health", 5)
    assert (status, data) == (200, {"ok": True})
    status, data = httpapi.get_json(_plain(server), "/nope", 5)
    assert status == 404


# --- mutual TLS --------------------------------------------------------------------------------------

@pytest.fixture
def tls_server():
    """A TLS server as the standby (pinning the primary); yields (server, handled requests)."""
    seen = []
    routes = {("GET", "/status"): lambda r: seen.append(r.client) or (200, {"state": "STANDBY"})}
    srv = httpapi.serve("127.0.0.1", 0, routes, component="test", read_timeout=2,
                        tls=tls.server_context(agenttest.tls_settings("standby", "primary")))
    yield srv, seen
    srv.shutdown()
    srv.server_close()


def _tls_target(srv, me, pinned):
    ctx = tls.client_context(dict(agenttest.tls_identities()[me], peer_cert_file=agenttest.tls_identities()[
        pinned]["cert_file"]))
    return httpapi.Target.peer(f"https://127.0.0.1:{srv.server_address[1]}", ctx)


def test_mutual_tls_admits_the_pinned_peer(tls_server):
    srv, seen = tls_server
    assert httpapi.get_json(_tls_target(srv, "primary", "standby"), "/status", 5) == (200, {"state": "STANDBY"})
    assert seen == ["127.0.0.1"]


@pytest.mark.parametrize("me,pinned", [
    ("stranger", "standby"),  # a client certificate the server does not pin
    ("standby", "standby"),   # the server's own certificate used as a client certificate
    ("primary", "stranger"),  # the client pins another server: it refuses the standby's certificate
])
def test_mutual_tls_refuses_any_other_certificate(tls_server, me, pinned):
    srv, seen = tls_server
    status, answer = httpapi.get_json(_tls_target(srv, me, pinned), "/status", 5)
    assert status == 0 and "error" in answer and seen == []


def test_no_client_certificate_and_plain_http_are_refused(tls_server):
    import ssl

    srv, seen = tls_server
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(agenttest.tls_identities()["standby"]["cert_file"])
    assert httpapi.get_json(httpapi.Target.peer(f"https://127.0.0.1:{srv.server_address[1]}", ctx),
                            "/status", 5)[0] == 0
    assert httpapi.get_json(httpapi.Target.peer(f"http://127.0.0.1:{srv.server_address[1]}"), "/status", 5)[0] == 0
    deadline = time.monotonic() + 5
    while srv.stats()["tls_failed"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen == [] and srv.stats()["tls_failed"] >= 2


def test_a_source_outside_allowed_clients_is_closed_before_tls():
    srv = httpapi.serve("127.0.0.1", 0, {("GET", "/health"): lambda r: (200, {})}, component="test",
                        allowed_clients=["10.0.0.9"])
    try:
        assert httpapi.get_json(_plain(srv), "/health", 5)[0] == 0
        assert srv.stats()["refused_source"] == 1
    finally:
        srv.shutdown()
        srv.server_close()


# --- kept-alive connections (httpapi.Session) -----------------------------------------------------------

@pytest.fixture
def tls_counting():
    """A TLS server as the standby (pinning the primary) that counts requests and refuses /refuse."""
    seen = []
    routes = {("GET", "/status"): lambda r: seen.append(r.path) or (200, {"n": len(seen)}),
              ("GET", "/refuse"): lambda r: (401, {"error": "no"})}
    srv = httpapi.serve("127.0.0.1", 0, routes, component="test", read_timeout=1.0, max_connections=4,
                        tls=tls.server_context(agenttest.tls_settings("standby", "primary")))
    srv.seen = seen
    yield srv
    srv.shutdown()
    srv.server_close()


def _wait_stat(srv, key, value, limit=5.0):
    deadline = time.monotonic() + limit
    while srv.stats()[key] != value and time.monotonic() < deadline:
        time.sleep(0.05)
    return srv.stats()[key]


def test_a_session_sends_many_requests_over_one_tls_connection(tls_counting):
    session = httpapi.Session(_tls_target(tls_counting, "primary", "standby"))
    try:
        answers = [httpapi.get_json(session, "/status", 5) for _ in range(5)]
        assert answers == [(200, {"n": n}) for n in range(1, 6)]
        assert session.opened_total == 1 and tls_counting.stats()["open"] == 1
    finally:
        session.close()
    assert _wait_stat(tls_counting, "open", 0) == 0


def test_an_idle_kept_connection_is_closed_quietly_and_the_session_reconnects(tls_counting, capsys):
    session = httpapi.Session(_tls_target(tls_counting, "primary", "standby"))
    try:
        assert httpapi.get_json(session, "/status", 5)[0] == 200
        assert _wait_stat(tls_counting, "idle_closed", 1) == 1  # bounded by read_timeout like a new one
        assert tls_counting.stats()["open"] == 0 and tls_counting.stats()["timed_out"] == 0
        assert httpapi.get_json(session, "/status", 5) == (200, {"n": 2})  # the same request once more
        assert session.opened_total == 2 and tls_counting.seen == ["/status", "/status"]
    finally:
        session.close()
    assert "connection-refused" not in capsys.readouterr().err


def test_an_error_answer_closes_a_kept_connection(tls_counting):
    session = httpapi.Session(_tls_target(tls_counting, "primary", "standby"))
    try:
        assert httpapi.get_json(session, "/refuse", 5)[0] == 401
        assert _wait_stat(tls_counting, "open", 0) == 0
        assert httpapi.get_json(session, "/status", 5)[0] == 200 and session.opened_total == 2
    finally:
        session.close()


def test_a_session_replaces_its_connection_after_max_age(tls_counting):
    session = httpapi.Session(_tls_target(tls_counting, "primary", "standby"), max_age=0.3)
    try:
        assert httpapi.get_json(session, "/status", 5)[0] == 200
        time.sleep(0.4)
        assert httpapi.get_json(session, "/status", 5)[0] == 200 and session.opened_total == 2
    finally:
        session.close()


def test_plain_http_and_the_unix_socket_never_keep_a_connection(server, tmp_path):
    session = httpapi.Session(_plain(server))
    assert httpapi.get_json(session, "/health", 5)[0] == 200
    assert httpapi.get_json(session, "/health", 5)[0] == 200 and session.opened_total == 2
    path = str(tmp_path / "run" / "agent.sock")
    local = httpapi.serve_unix(path, {("GET", "/health"): lambda r: (200, {})}, component="test")
    try:
        session = httpapi.Session(httpapi.Target.local(path))
        assert [httpapi.get_json(session, "/health", 5)[0] for _ in range(2)] == [200, 200]
        assert session.opened_total == 2
    finally:
        local.shutdown()
        local.server_close()


def test_kept_connections_are_evicted_at_the_cap_like_any_waiting_one(tls_counting):
    sessions = [httpapi.Session(_tls_target(tls_counting, "primary", "standby")) for _ in range(6)]
    try:
        for session in sessions:  # each keeps its connection open after its answer
            assert httpapi.get_json(session, "/status", 5)[0] == 200
        assert tls_counting.stats()["open"] <= 4 and tls_counting.stats()["evicted"] >= 2
        for session in sessions:  # an evicted one reconnects once and gets its answer
            assert httpapi.get_json(session, "/status", 5)[0] == 200
    finally:
        for session in sessions:
            session.close()


def test_a_timeout_on_a_kept_connection_is_not_retried():
    release = threading.Event()
    calls = []
    routes = {("GET", "/slow"): lambda r: (calls.append(1), release.wait(3), (200, {}))[2],
              ("GET", "/fast"): lambda r: (200, {})}
    srv = httpapi.serve("127.0.0.1", 0, routes, component="test",
                        tls=tls.server_context(agenttest.tls_settings("standby", "primary")))
    session = httpapi.Session(_tls_target(srv, "primary", "standby"))
    try:
        assert httpapi.get_json(session, "/fast", 5)[0] == 200
        status, answer = httpapi.get_json(session, "/slow", 0.5)
        assert status == 0 and "timed out" in answer["error"] and calls == [1]
    finally:
        release.set()
        session.close()
        srv.shutdown()
        srv.server_close()


# --- timeouts and the connection cap -------------------------------------------------------------------

@pytest.fixture
def bounded():
    srv = httpapi.serve("127.0.0.1", 0, {("GET", "/health"): lambda r: (200, {"ok": True})}, component="test",
                        read_timeout=1.0, max_connections=4)
    yield srv
    srv.shutdown()
    srv.server_close()


def _closed_after(sock, drip=None, limit=10.0):
    """Seconds until the server closes ``sock`` (sending ``drip`` every 0.2 s meanwhile)."""
    started = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - started < limit:
        try:
            if drip:
                sock.sendall(drip)
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except socket.timeout:
            continue
        except OSError:
            return time.monotonic() - started
    return None


def test_a_half_open_connection_is_closed_after_the_read_timeout(bounded):
    with socket.create_connection(("127.0.0.1", bounded.server_address[1])) as sock:
        waited = _closed_after(sock)
    assert waited is not None and 0.8 <= waited < 3.0
    assert _alive(bounded)


def test_a_slow_drip_does_not_extend_the_read_timeout(bounded):
    with socket.create_connection(("127.0.0.1", bounded.server_address[1])) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\n")
        waited = _closed_after(sock, drip=b"X-Slow: 1\r\n")
    assert waited is not None and waited < 3.0


def test_at_the_cap_the_oldest_waiting_connection_makes_room_for_a_request(bounded):
    idle = [socket.create_connection(("127.0.0.1", bounded.server_address[1])) for _ in range(20)]
    try:
        time.sleep(0.2)
        assert bounded.stats()["open"] <= 4
        for _ in range(5):  # every request gets through although 20 idle connections were opened first
            assert _alive(bounded)
        assert bounded.stats()["evicted"] >= 16
    finally:
        for sock in idle:
            sock.close()


def test_a_busy_request_is_never_evicted():
    release = threading.Event()
    routes = {("GET", "/slow"): lambda r: (release.wait(5), (200, {"done": True}))[1],
              ("GET", "/health"): lambda r: (200, {"ok": True})}
    srv = httpapi.serve("127.0.0.1", 0, routes, component="test", read_timeout=1.0, max_connections=2)
    try:
        result = {}
        thread = threading.Thread(target=lambda: result.update(slow=httpapi.get_json(_plain(srv), "/slow", 10)))
        thread.start()
        time.sleep(0.3)
        idle = [socket.create_connection(("127.0.0.1", srv.server_address[1])) for _ in range(5)]
        time.sleep(1.5)  # past the read timeout: the idle ones are gone, the busy one is not
        release.set()
        thread.join(10)
        assert result["slow"] == (200, {"done": True})
        for sock in idle:
            sock.close()
    finally:
        srv.shutdown()
        srv.server_close()


# --- the local unix socket -----------------------------------------------------------------------------

def test_unix_socket_serves_routes_only_to_its_owner(tmp_path):
    path = str(tmp_path / "run" / "agent.sock")
    srv = httpapi.serve_unix(path, {("GET", "/health"): lambda r: (200, {"client": r.client})}, component="test")
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
        assert httpapi.get_json(httpapi.Target.local(path), "/health", 5) == (200, {"client": "local"})
    finally:
        srv.shutdown()
        srv.server_close()
    again = httpapi.serve_unix(path, {("GET", "/health"): lambda r: (200, {})}, component="test")  # stale socket
    again.shutdown()
    again.server_close()


def test_unix_socket_refuses_to_replace_another_file(tmp_path):
    path = tmp_path / "not-a-socket"
    path.write_text("keep me")
    with pytest.raises(OSError):
        httpapi.serve_unix(str(path), {}, component="test")
    assert path.read_text() == "keep me"


def test_unix_socket_folder_is_made_private_and_must_be_ours(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir(mode=0o777)
    os.chmod(folder, 0o777)
    srv = httpapi.serve_unix(str(folder / "a.sock"), {}, component="test")
    srv.shutdown()
    srv.server_close()
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    link = tmp_path / "link"
    link.symlink_to(folder)
    with pytest.raises(OSError, match="owned by this process"):
        httpapi.serve_unix(str(link / "a.sock"), {}, component="test")

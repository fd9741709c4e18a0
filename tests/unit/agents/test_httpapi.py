"""wirebot.httpapi: routing, 400/404/405/413/500 answers, and the server stays up."""

import http.client
import json
import socket

import pytest
from wirebot import httpapi, signing

KEY = bytes(range(32))


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
        ("POST", "/signed"): lambda r: (200, {"seq": signing.Verifier(KEY, 60).verify(r.headers, r.body)}),
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


def test_post_signed_roundtrip(server):
    url = f"http://127.0.0.1:{server.server_address[1]}/signed"
    status, data = httpapi.post_signed(url, KEY, {"a": 1}, 42, timeout=5)
    assert (status, data) == (200, {"seq": 42})
    status, data = httpapi.post_signed(url, bytes(32), {"a": 1}, 43, timeout=5)
    assert status == 500  # the route raised SignatureError: unhandled -> 500


def test_post_signed_unreachable():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    status, data = httpapi.post_signed(f"http://127.0.0.1:{port}/x", KEY, {}, 1, timeout=2)
    assert status == 0 and "error" in data


def test_get_json(server):
    status, data = httpapi.get_json(f"http://127.0.0.1:{server.server_address[1]}/health", 5)
    assert (status, data) == (200, {"ok": True})
    status, data = httpapi.get_json(f"http://127.0.0.1:{server.server_address[1]}/nope", 5)
    assert status == 404

"""A small JSON HTTP server (ThreadingHTTPServer) and a signed-POST client.

Routes map (method, path) to a handler ``handler(request) -> (status, result)``: dict/list results are
sent as JSON, str as text/plain (for /metrics). The server never dies on a bad request: malformed
Content-Length -> 400, body over ``max_body`` -> 413 (not read), unknown path -> 404, known path with
another method -> 405, handler exception -> 500 (logged).
"""

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import signing
from .log import log


class HttpError(Exception):
    """Raise from a handler to answer ``status`` with {"error": message}."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = int(status)
        self.message = str(message)


class Request:
    """One request as handlers see it."""

    def __init__(self, method, path, query, headers, body, client):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.client = client

    def json(self):
        """The body parsed as a JSON object; HttpError(400) when it is not one."""
        try:
            data = json.loads(self.body.decode("utf-8") if self.body else "")
        except (UnicodeDecodeError, ValueError):
            raise HttpError(400, "body is not valid JSON") from None
        if not isinstance(data, dict):
            raise HttpError(400, "body must be a JSON object")
        return data


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _make_handler(routes, max_body, component):
    paths = {}
    for method, path in routes:
        paths.setdefault(path, set()).add(method.upper())

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "wirebot"
        sys_version = ""

        def log_message(self, format, *args):  # noqa: A002 - silence stderr access log
            pass

        def _send(self, status, result):
            if isinstance(result, str):
                payload = result.encode("utf-8")
                ctype = "text/plain; version=0.0.4; charset=utf-8"
            else:
                payload = json.dumps(result, default=str).encode("utf-8")
                ctype = "application/json"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            if status >= 400:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def _handle(self):
            parsed = urllib.parse.urlsplit(self.path)
            path = parsed.path
            method = self.command.upper()
            client = self.client_address[0] if self.client_address else ""
            length_text = self.headers.get("Content-Length")
            length = 0
            if length_text is not None:
                try:
                    length = int(length_text)
                    if length < 0:
                        raise ValueError
                except ValueError:
                    return self._send(400, {"error": "malformed Content-Length"})
            if length > max_body:
                log(component, "request-refused", level="warning", reason="body too large",
                    client=client, path=path, length=length)
                return self._send(413, {"error": f"body too large (max {max_body} bytes)"})
            body = self.rfile.read(length) if length else b""
            if path not in paths:
                return self._send(404, {"error": "not found"})
            if method not in paths[path]:
                return self._send(405, {"error": "method not allowed"})
            query = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query).items()}
            request = Request(method, path, query, dict(self.headers.items()), body, client)
            try:
                status, result = routes[(method, path)](request)
            except HttpError as exc:
                return self._send(exc.status, {"error": exc.message})
            except Exception as exc:  # noqa: BLE001 - the server must stay up
                log(component, "handler-error", level="error", path=path, method=method,
                    error=f"{type(exc).__name__}: {exc}")
                return self._send(500, {"error": "internal error"})
            return self._send(status, result)

        def do_GET(self):
            self._handle()

        def do_POST(self):
            self._handle()

        def do_PUT(self):
            self._handle()

        def do_DELETE(self):
            self._handle()

        def do_PATCH(self):
            self._handle()

    return Handler


def serve(address, port, routes, max_body=65536, component="api"):
    """Start serving ``routes`` on address:port in a daemon thread; return the server.

    ``server.server_address[1]`` is the bound port (pass port 0 in tests); call ``server.shutdown()``
    and ``server.server_close()`` to stop.
    """
    normalized = {(m.upper(), p): h for (m, p), h in routes.items()}
    server = _Server((address, port), _make_handler(normalized, max_body, component))
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), name=f"{component}-http",
                              daemon=True)
    thread.start()
    log(component, "listening", address=address, port=server.server_address[1])
    return server


def post_signed(url, key, payload, sequence, timeout):
    """POST ``payload`` as JSON with signing headers; return (status, parsed JSON dict).

    Connection failures return (0, {"error": ...}); non-JSON answers return {"raw": text}.
    """
    body = json.dumps(payload, sort_keys=True).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    headers.update(signing.signed_headers(key, body, sequence))
    return _send(urllib.request.Request(url, data=body, headers=headers, method="POST"), timeout)


def get_json(url, timeout, headers=None):
    """GET ``url``; return (status, parsed JSON dict or {"raw": text}); (0, {"error"}) when unreachable."""
    return _send(urllib.request.Request(url, headers=headers or {}, method="GET"), timeout)


def _send(request, timeout):
    """(status, decoded body) of `request`; (0, {"error"}) when the server cannot be reached."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, _decode(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _decode(exc.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return 0, {"error": f"{reason}"}


def _decode(raw):
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {"raw": raw.decode("utf-8", "replace")[:2000]}
    return data if isinstance(data, dict) else {"value": data}

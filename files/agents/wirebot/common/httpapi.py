"""A small JSON HTTP server (ThreadingHTTPServer) and its client, over mutual TLS or a local unix socket.

Routes map (method, path) to a handler ``handler(request) -> (status, result)``: dict/list results are
sent as JSON, str as text/plain (for /metrics). The server never dies on a bad request: malformed
Content-Length -> 400, body over ``max_body`` -> 413 (not read), unknown path -> 404, known path with
another method -> 405, handler exception -> 500 (logged).

Every connection is bounded (a hostile or half-open client costs little and for a short time):
- ``allowed_clients`` (TCP): a connection from any other address is closed at accept, before TLS;
- identities (TCP over TLS): with ``pinned_cert`` and ``readers`` (``Identity``), each connection is served
  the routes of the one identity whose certificate it presented AND whose addresses it comes from; any
  other pairing (a reader's certificate from the peer's address, the peer's from a reader's) is closed
  right after the handshake, before a byte of HTTP is read;
- ``read_timeout``: the TLS handshake plus the whole request (line, headers, body) must arrive within
  this many seconds, or the connection is closed (a watchdog enforces it; slow drips do not extend it);
- ``max_connections``: at the cap, the oldest connection that has not yet delivered a request is closed
  to admit the new one (a completed request is never evicted), so a flood of half-open connections
  cannot lock out the peer's heartbeat; connections from addresses that only readers use hold at most a
  quarter of the cap (at least 1) and may only evict each other, so a flood from a reader's address
  never closes the peer's connections;
- one request per connection (``Connection: close``), except on a TLS listener for a client that asks for
  ``Connection: keep-alive`` (``Session``, the primary's heartbeat sender): after a 2xx/3xx answer the
  connection waits for the next request, bounded exactly like a new one (``read_timeout`` from the answer,
  evictable at the cap), and is closed quietly when that time passes. Any error answer closes it.
"""

import http.client
import json
import os
import socket
import socketserver
import stat
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from wirebot.common import signing
from wirebot.common.log import log

DEFAULT_READ_TIMEOUT = 10.0
DEFAULT_MAX_CONNECTIONS = 32


class HttpError(Exception):
    """Raise from a handler to answer ``status`` with {"error": message}."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = int(status)
        self.message = str(message)


class Request:
    """One request as handlers see it (``client`` is the peer's address, or "local" on the unix socket)."""

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


class Identity:
    """Who may use a TCP listener and for what: connections from ``addresses`` (None: any address the
    listener admits) that present exactly the certificate ``cert_der`` (DER bytes; None: any certificate
    the TLS context accepted, or no TLS) are served ``routes`` and nothing else."""

    def __init__(self, name, addresses, routes, cert_der=None):
        self.name = name
        self.addresses = None if addresses is None else set(addresses)
        self.routes = {(m.upper(), p): h for (m, p), h in routes.items()}
        self.cert_der = cert_der

    def admits(self, client, cert_der):
        return ((self.addresses is None or client in self.addresses)
                and (self.cert_der is None or cert_der == self.cert_der))


class _Conn:
    """One open connection: a duplicate of its descriptor (to shut it down from another thread whatever
    the owning thread did to its own, e.g. handed it to TLS), when it was accepted, and whether it is still
    waiting for its request (only those may be timed out or evicted). Its thread closes ``alias`` last."""

    __slots__ = ("alias", "started", "waiting", "reader_only", "served")

    def __init__(self, sock, reader_only=False):
        self.alias = sock.dup()
        self.started = time.monotonic()
        self.waiting = True
        self.reader_only = reader_only  # from an address only readers use: held to the readers' share
        self.served = 0  # requests answered on it (kept alive): past its read_timeout it is idle, not late

    def kill(self):
        """Shut the connection down: the owning thread's next read or write fails and it ends."""
        try:
            self.alias.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Bounded:
    """The connection bounds of the module docstring, mixed into a socketserver class."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512  # the kernel's accept queue: a burst must not drop the peer's SYN

    def _bound(self, component, read_timeout, max_connections, identities, tls_context, max_body):
        self.component = component
        self.read_timeout = float(read_timeout)
        self.max_connections = max(1, int(max_connections))
        self.identities = [(i, _make_handler(i.routes, max_body, component)) for i in identities]
        addresses = [i.addresses for i in identities]
        self.allowed_clients = None if None in addresses else set().union(*addresses)
        peer = addresses[0]
        self.reader_only = set() if peer is None else set().union(*addresses[1:]) - peer
        self.reader_cap = max(1, self.max_connections // 4)
        self.tls_context = tls_context
        self.keep_alive = tls_context is not None  # only a peer that proved its certificate may keep one open
        self.conns = {}
        self.counts = {"refused_source": 0, "timed_out": 0, "evicted": 0, "tls_failed": 0, "refused_identity": 0,
                       "idle_closed": 0}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._noted = {}
        self._stopping = threading.Event()
        threading.Thread(target=self._watchdog, name=f"{component}-watchdog", daemon=True).start()

    def _note(self, reason, client, detail=""):
        """Count a refused connection; log it at most once per reason every 10 s (a flood is one line)."""
        with self._lock:
            self.counts[reason] += 1
            now = time.monotonic()
            if now - self._noted.get(reason, -60.0) < 10.0:
                return
            self._noted[reason] = now
            total = self.counts[reason]
        log(self.component, "connection-refused", level="warning", reason=reason, client=client,
            detail=str(detail)[:200], total=total)

    def verify_request(self, request, client_address):
        if self.allowed_clients is None:
            return True
        client = client_address[0] if client_address else ""
        if client in self.allowed_clients:
            return True
        self._note("refused_source", client, "not the configured peer or a metrics source")
        return False

    def _handler_for(self, sock, client_address):
        """The handler class of the identity this connection proves (certificate and address), or None."""
        client = _client(client_address)
        cert = sock.getpeercert(binary_form=True) if self.tls_context is not None else None
        for identity, handler in self.identities:
            if identity.admits(client, cert):
                return handler
        return None

    def process_request(self, request, client_address):
        conn = _Conn(request, _client(client_address) in self.reader_only)
        oldest, full = None, False
        with self._lock:
            pool = [c for c in self.conns.values() if c.reader_only or not conn.reader_only]
            if len(self.conns) >= self.max_connections or conn.reader_only and len(pool) >= self.reader_cap:
                waiting = [c for c in pool if c.waiting]
                if waiting:
                    oldest = min(waiting, key=lambda c: c.started)
                    del self.conns[id(oldest)]
                    oldest.kill()
                else:
                    full = True
            if not full:
                self.conns[id(conn)] = conn
        if oldest is not None:
            self._note("evicted", _client(client_address), "connection cap reached: closed the oldest waiting")
        if full:  # every slot is busy answering a request: refuse the newcomer
            self._note("evicted", _client(client_address), "connection cap reached, all connections busy")
            conn.alias.close()
            self.shutdown_request(request)
            return
        request.settimeout(self.read_timeout)
        threading.Thread(target=self._serve_conn, args=(conn, request, client_address), daemon=True,
                         name=f"{self.component}-conn").start()

    def _serve_conn(self, conn, request, client_address):
        sock = request
        try:
            if self.tls_context is not None:
                sock = self.tls_context.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
                try:
                    sock.do_handshake()
                except (OSError, ValueError) as exc:
                    with self._lock:
                        evicted = id(conn) not in self.conns  # already counted as evicted or timed out
                    if not evicted:
                        self._note("tls_failed", _client(client_address), exc)
                    return
            handler = self._handler_for(sock, client_address)
            if handler is None:
                with self._lock:
                    self.conns.pop(id(conn), None)  # counted here, not again as timed out
                self._note("refused_identity", _client(client_address),
                           "certificate not admitted from this address")
                return
            self._local.conn = conn
            handler(sock, client_address, self)
            _linger(sock)
        except Exception as exc:  # noqa: BLE001 - one connection never takes the server down
            with self._lock:
                counted = id(conn) not in self.conns  # the watchdog or an eviction closed it
            if conn.waiting and not counted:
                self._note("timed_out", _client(client_address), exc)
        finally:
            with self._lock:
                self.conns.pop(id(conn), None)
            for handle in (sock, conn.alias):
                try:
                    handle.close()
                except OSError:
                    pass

    def request_read(self):
        """Called by the handler once the request is fully read: from now on it is never evicted."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.waiting = False

    def request_answered(self):
        """Called by the handler after answering on a kept-alive connection: it waits for its next request
        from now on, bounded and evictable like a new connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.served += 1
            conn.started = time.monotonic()
            conn.waiting = True

    def _watchdog(self):
        while not self._stopping.wait(0.5):
            now = time.monotonic()
            with self._lock:
                late = [c for c in self.conns.values() if c.waiting and now - c.started > self.read_timeout]
                for conn in late:
                    del self.conns[id(conn)]
                    if conn.served:
                        self.counts["idle_closed"] += 1
            for conn in late:
                conn.kill()
                if not conn.served:
                    self._note("timed_out", "", f"no complete request within {self.read_timeout:.0f} s")

    def server_close(self):
        self._stopping.set()
        super().server_close()
        with self._lock:
            conns = list(self.conns.values())
        for conn in conns:
            conn.kill()

    def stats(self):
        """{"open": N, "refused_source", "timed_out", "evicted", "tls_failed", "refused_identity",
        "idle_closed"} (counts since start)."""
        with self._lock:
            return dict(self.counts, open=len(self.conns))


def _linger(sock, seconds=1.0, limit=1 << 20):
    """Half-close after the answer and drop what the client still sends (a refused body), so closing does
    not reset the connection before the client has read the answer; bounded in time and bytes."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_WR)
        sock.settimeout(seconds)
        deadline = time.monotonic() + seconds
        while limit > 0 and time.monotonic() < deadline:
            chunk = socket.socket.recv(sock, 65536)
            if not chunk:
                break
            limit -= len(chunk)
    except (OSError, ValueError):
        pass


def _client(client_address):
    return client_address[0] if isinstance(client_address, tuple) and client_address else "local"


class _TcpServer(_Bounded, ThreadingHTTPServer):
    pass


class _UnixServer(_Bounded, socketserver.UnixStreamServer):
    def server_bind(self):
        socketserver.UnixStreamServer.server_bind(self)
        os.chmod(self.server_address, 0o600)


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

        def address_string(self):
            return _client(self.client_address)

        def _send(self, status, result):
            if isinstance(result, str):
                payload = result.encode("utf-8")
                ctype = "text/plain; version=0.0.4; charset=utf-8"
            else:
                payload = json.dumps(result, default=str).encode("utf-8")
                ctype = "application/json"
            keep = (self.server.keep_alive and status < 400
                    and (self.headers.get("Connection") or "").strip().lower() == "keep-alive")
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Connection", "keep-alive" if keep else "close")
            self.close_connection = not keep
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            if keep:
                self.wfile.flush()
                self.server.request_answered()

        def _handle(self):
            parsed = urllib.parse.urlsplit(self.path)
            path = parsed.path
            method = self.command.upper()
            client = _client(self.client_address)
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
            if len(body) < length:
                return self._send(400, {"error": "body shorter than Content-Length"})
            self.server.request_read()
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


def _bind(server):
    """Bind and listen; on failure close the server (and its watchdog) and raise."""
    try:
        server.server_bind()
        server.server_activate()
    except OSError:
        server.server_close()
        raise


def _start(server, component, **where):
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), name=f"{component}-http", daemon=True)
    thread.start()
    log(component, "listening", **where)
    return server


def serve(address, port, routes, max_body=65536, component="api", tls=None, allowed_clients=None,
          read_timeout=DEFAULT_READ_TIMEOUT, max_connections=DEFAULT_MAX_CONNECTIONS, pinned_cert=None,
          readers=()):
    """Serve ``routes`` on address:port (over TLS when ``tls``, an ssl server context, is given) in a
    daemon thread; return the server. ``allowed_clients``: the only addresses admitted (None: all).

    ``pinned_cert`` (DER): ``routes`` only to a client presenting exactly this certificate. ``readers``:
    further ``Identity``s, each served only its own routes; they need TLS and ``pinned_cert`` (else the
    reader's certificate, which the context also trusts, would be served ``routes``).

    ``server.server_address[1]`` is the bound port (pass port 0 in tests); call ``server.shutdown()``
    and ``server.server_close()`` to stop.
    """
    readers = list(readers)
    if readers and (tls is None or pinned_cert is None or any(r.cert_der is None or r.addresses is None
                                                              for r in readers)):
        raise ValueError("readers need TLS, a pinned certificate for the main routes, and each its own "
                         "certificate and addresses")
    if any(r.cert_der == pinned_cert for r in readers):
        raise ValueError("a reader's certificate must differ from the pinned one")
    identities = [Identity("peer", allowed_clients, routes, pinned_cert), *readers]
    server = _TcpServer((address, port), None, bind_and_activate=False)
    server._bound(component, read_timeout, max_connections, identities, tls, max_body)
    _bind(server)
    return _start(server, component, address=address, port=server.server_address[1], tls=tls is not None,
                  allowed_clients=sorted(allowed_clients) if allowed_clients is not None else "any",
                  readers={r.name: sorted(r.addresses) for r in readers})


def serve_unix(path, routes, max_body=65536, component="api", read_timeout=DEFAULT_READ_TIMEOUT,
               max_connections=DEFAULT_MAX_CONNECTIONS):
    """Serve ``routes`` on the unix socket ``path`` (0600, in a 0700 folder made if absent; a stale socket
    left by a previous run is replaced, any other file there is an error). Only this process's user (and
    root) can connect: the socket is the local control channel."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, mode=0o700, exist_ok=True)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise OSError(f"{folder}: the control socket's folder must be a directory owned by this process's user")
    os.chmod(folder, 0o700)  # nobody else may reach the socket or swap it
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None:
        if not stat.S_ISSOCK(mode):
            raise OSError(f"{path} exists and is not a socket")
        os.unlink(path)
    server = _UnixServer(path, None, bind_and_activate=False)
    server._bound(component, read_timeout, max_connections, [Identity("local", None, routes)], None, max_body)
    previous = os.umask(0o177)
    try:
        _bind(server)
    finally:
        os.umask(previous)
    return _start(server, component, socket=path)


# --- client --------------------------------------------------------------------------------------------

class Target:
    """Where requests go: ``Target.peer(url, context)`` (https with our client certificate; http when
    ``context`` is None, tests only) or ``Target.local(socket_path)`` (the agent's unix socket)."""

    def __init__(self, url=None, context=None, socket_path=None):
        self.url = url.rstrip("/") if url else None
        self.context = context
        self.socket_path = socket_path

    @classmethod
    def peer(cls, url, context=None):
        return cls(url=url, context=context)

    @classmethod
    def local(cls, socket_path):
        return cls(socket_path=socket_path)

    def __str__(self):
        return self.url or f"unix:{self.socket_path}"

    def connection(self, timeout):
        if self.socket_path:
            return UnixConnection(self.socket_path, timeout)
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme == "https":
            return http.client.HTTPSConnection(parts.hostname, parts.port or 443, timeout=timeout,
                                               context=self.context)
        return http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)


class UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (the agents' control socket, Litestream's control socket)."""

    def __init__(self, socket_path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Session:
    """One kept-alive connection to ``target`` for one sender (the primary's heartbeat thread): a beat costs
    one round trip instead of three plus a TLS handshake (soak, lab: a fresh connection per beat through
    100 +/- 50 ms each way on a host held to 0.25 CPU arrived too late for a 2 s lease).

    The connection is replaced after ``max_age`` seconds (default 10 minutes: each replacement is a TCP
    and TLS handshake on the beat's path, which a starved host may not finish within the beat's bound; a
    renewed certificate restarts the agents anyway) and whenever the server closes it. A request on a
    reused connection that fails before any answer (the server closed it while idle) is sent again once,
    byte for byte, on a fresh connection: the server never acts on a request it has not read whole, and
    the same signed bytes twice are refused as a replay. A timeout is not retried (the caller's bound
    stands). Pass a Session wherever a Target goes."""

    def __init__(self, target, max_age=600.0):
        self.target = target
        self.max_age = float(max_age)
        self.opened_total = 0  # connections opened (tests, metrics)
        self._conn = None
        self._opened_at = 0.0
        self._lock = threading.Lock()

    def __str__(self):
        return str(self.target)

    def close(self):
        with self._lock:
            self._drop()

    def _drop(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self, timeout):
        """(connection, reused): the open one if young enough, else a new one."""
        if self._conn is not None and (self._conn.sock is None
                                       or time.monotonic() - self._opened_at >= self.max_age):
            self._drop()
        if self._conn is None:
            self._conn = self.target.connection(timeout)
            self._opened_at = time.monotonic()
            self.opened_total += 1
            return self._conn, False
        self._conn.timeout = timeout
        self._conn.sock.settimeout(timeout)
        return self._conn, True

    def call(self, method, path, body=None, headers=None, timeout=10.0):
        headers = dict(headers or {}, Connection="keep-alive")
        with self._lock:
            while True:
                conn, reused = self._connection(timeout)
                try:
                    conn.request(method, path, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                except socket.timeout as exc:  # TimeoutError from 3.10 on; its own OSError subclass on 3.9
                    self._drop()
                    return 0, {"error": f"{type(exc).__name__}: {exc}"}
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    self._drop()
                    if reused:
                        continue  # closed while idle: once more on a fresh connection
                    return 0, {"error": f"{type(exc).__name__}: {exc}"}
                if response.will_close:
                    self._drop()
                return response.status, _decode(data)


def call(target, method, path, body=None, headers=None, timeout=10.0):
    """``method path`` to ``target`` (a Target: a connection of its own; a Session: its kept-alive one);
    (status, parsed JSON dict or {"raw": text}); (0, {"error"}) when the server cannot be reached or the TLS
    handshake fails."""
    if isinstance(target, Session):
        return target.call(method, path, body, headers, timeout)
    conn = target.connection(timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        return response.status, _decode(response.read())
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return 0, {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        conn.close()


def post_signed(target, path, key, binding, payload, sequence, timeout):
    """POST ``payload`` as JSON to ``target`` ``path``, signed for ``binding``; (status, dict)."""
    body = json.dumps(payload, sort_keys=True).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    headers.update(signing.signed_headers(key, binding, "POST", path, body, sequence))
    return call(target, "POST", path, body, headers, timeout)


def get_json(target, path, timeout, headers=None):
    """GET ``path`` from ``target``; (status, dict); (0, {"error"}) when unreachable."""
    return call(target, "GET", path, None, headers, timeout)


def _decode(raw):
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {"raw": raw.decode("utf-8", "replace")[:2000]}
    return data if isinstance(data, dict) else {"value": data}

"""The lab's Cloudflare stand-in ("the edge").

Run as ``python -m lab.edge --listen ADDR --public-port 80 --control-port 7844 --config FILE``.
FILE is JSON: {"api_token": TOKEN, "tunnels": {TUNNEL_ID: {"account_tag": ACCOUNT, "secret": BASE64,
"hostnames": ["wins.wirebot.chat", ...]}}}.

Control port: connector registration (``POST /connectors`` {tunnel_id, account_tag, tunnel_secret,
connector_id, origin_ip, origin_url, version, arch} -> 201; unknown tunnel or wrong secret 401, wrong
account 403, malformed 400. ``POST /connectors/<id>/keepalive`` -> 200, 404 when unknown: register
again. ``DELETE /connectors/<id>`` -> 204). A connector silent for --expiry seconds is expired.
The tunnel-connections API subset: ``GET /client/v4/accounts/<acct>/cfd_tunnel/<tunnel>/connections``
with ``Authorization: Bearer <api_token>`` (else 403, code 10000), in Cloudflare's envelope. Lab introspection
(``GET /lab/connectors`` live connectors; ``GET /lab/history`` connection intervals {connector_id,
tunnel_id, origin_ip, opened_at, closed_at, reason: deregistered|expired|reregistered}; ``GET
/lab/requests?since=TS`` public requests {ts, host, method, path, status, connector_id, origin_ip};
``GET /lab/overlaps?since=TS`` windows {tunnel_id, start, end (null while ongoing), origin_ips,
connector_ids} when two or more distinct origin IPs were registered for one tunnel at once;
``POST /lab/reset`` forgets closed intervals, the request log and the webhooks, keeping live
connectors). A Discord-like webhook receiver for the agents' alerts: ``POST /lab/webhook/<name>`` (JSON
body, at most 64 KiB) -> 204 and recorded as {ts, name, body}; ``GET /lab/webhooks?since=TS`` lists them;
a body that is not JSON is 400 (Discord answers 400 too), a larger one 413.
Times are unix seconds, except the API's RFC 3339 strings.
Public port: a request for a configured hostname goes to one registered connector of its tunnel,
picked at random as Cloudflare does with replicas. No connector: 530 "Error 1033" (Argo Tunnel error).
Unknown hostname: 530 "Error 1016" (Origin DNS error: Cloudflare's answer for a name that points at
no live tunnel). Connector unreachable: 502 "Error 502 Bad gateway".
Lab simplifications: one connection per connector; a closed connection leaves the API at once (no
``is_pending_reconnect`` tracking); the ``/lab/*`` endpoints need no token.
"""

import argparse
import http.client
import json
import random
import re
import secrets
import signal
import socket
import sys
import threading
import time
import uuid
from collections import deque
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from lab import settings

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "content-length"}
WEBHOOK_MAX_BODY = 64 * 1024
IDLE_SECONDS = 30.0  # a kept-alive control connection idle this long is closed (its thread ends)
REGISTER_FIELDS = ("tunnel_id", "account_tag", "tunnel_secret", "connector_id", "origin_ip", "origin_url")


def rfc3339(ts: float) -> str:
    """Unix time `ts` as an RFC 3339 UTC timestamp, as the Cloudflare API writes them."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def load_config(path: str) -> dict:
    """Read and check the edge's JSON config; raise ValueError naming what is wrong."""
    with open(path, encoding="utf-8") as fh:
        config = json.load(fh)
    if not isinstance(config.get("api_token"), str) or not isinstance(config.get("tunnels"), dict):
        raise ValueError(f"{path}: needs a string 'api_token' and an object 'tunnels'")
    for tid, t in config["tunnels"].items():
        if not all(isinstance(t.get(k), str) for k in ("account_tag", "secret")):
            raise ValueError(f"{path}: tunnel {tid} needs string 'account_tag' and 'secret'")
        if not isinstance(t.get("hostnames", []), list):
            raise ValueError(f"{path}: tunnel {tid}: 'hostnames' must be a list")
    return config


class Edge:
    """Registry of connectors, their connection intervals and the public request log."""

    def __init__(self, config: dict, expiry: float = settings.CONNECTOR_EXPIRY_SECONDS,
                 log_path=None, origin_timeout: float = 10.0):
        self.api_token = config["api_token"]
        self.tunnels = config["tunnels"]
        self.hostnames = {h.lower(): tid for tid, t in self.tunnels.items() for h in t.get("hostnames", [])}
        self.expiry = expiry
        self.origin_timeout = origin_timeout
        self.lock = threading.Lock()
        self.connectors = {}  # connector_id -> registration
        self.open_intervals = {}  # connector_id -> its interval in self.intervals
        self.intervals = []
        self.requests = deque(maxlen=100_000)
        self.webhooks = deque(maxlen=10_000)
        self.log_file = open(log_path, "a", encoding="utf-8") if log_path else None
        self.log_lock = threading.Lock()
        self.stopped = threading.Event()

    def _log(self, entry: dict) -> None:
        with self.log_lock:
            if self.log_file:  # None once stopped: late events are dropped, not written to a closed file
                self.log_file.write(json.dumps(entry) + "\n")
                self.log_file.flush()

    def _close(self, cid: str, reason: str, now: float) -> None:
        """Drop connector `cid` and close its interval (call with the lock held)."""
        conn = self.connectors.pop(cid)
        interval = self.open_intervals.pop(cid)
        interval.update(closed_at=now, reason=reason)
        self._log({"kind": "connector", "event": "closed", **interval})
        sys.stderr.write(f"edge: connector {cid} ({conn['origin_ip']}) closed: {reason}\n")

    def register(self, body) -> tuple:
        """Register a connector; return (HTTP status, JSON reply)."""
        if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in REGISTER_FIELDS):
            return 400, {"error": f"JSON object with string fields {', '.join(REGISTER_FIELDS)} required"}
        tunnel = self.tunnels.get(body["tunnel_id"])
        if tunnel is None:
            return 401, {"error": f"Unauthorized: Tunnel not found: {body['tunnel_id']}"}
        if not secrets.compare_digest(body["account_tag"], tunnel["account_tag"]):
            return 403, {"error": "Forbidden: account tag does not own this tunnel"}
        if not secrets.compare_digest(body["tunnel_secret"], tunnel["secret"]):
            return 401, {"error": "Unauthorized: Invalid tunnel secret"}
        if not body["origin_url"].startswith("http://"):
            return 400, {"error": "origin_url must be an http:// URL"}
        cid, now = body["connector_id"], time.time()
        with self.lock:
            if cid in self.connectors:
                self._close(cid, "reregistered", now)
            self.connectors[cid] = {
                "connector_id": cid, "tunnel_id": body["tunnel_id"], "origin_ip": body["origin_ip"],
                "origin_url": body["origin_url"].rstrip("/"), "version": str(body.get("version", "")),
                "arch": str(body.get("arch", "")), "conn_uuid": str(uuid.uuid4()),
                "opened_at": now, "last_seen": now}
            interval = {"connector_id": cid, "tunnel_id": body["tunnel_id"], "origin_ip": body["origin_ip"],
                        "opened_at": now, "closed_at": None, "reason": None}
            self.open_intervals[cid] = interval
            self.intervals.append(interval)
        self._log({"kind": "connector", "event": "opened", **interval})
        sys.stderr.write(f"edge: connector {cid} registered from {body['origin_ip']}\n")
        return 201, {"connector_id": cid, "expiry_seconds": self.expiry}

    def keepalive(self, cid: str) -> tuple:
        with self.lock:
            conn = self.connectors.get(cid)
            if conn is None:
                return 404, {"error": f"unknown connector {cid}: register again"}
            conn["last_seen"] = time.time()
        return 200, {"ok": True, "expiry_seconds": self.expiry}

    def deregister(self, cid: str) -> tuple:
        with self.lock:
            if cid not in self.connectors:
                return 404, {"error": f"unknown connector {cid}"}
            self._close(cid, "deregistered", time.time())
        return 204, None

    def reap_forever(self) -> None:
        """Expire connectors whose last keepalive is older than the expiry, until stop()."""
        while not self.stopped.wait(min(0.1, self.expiry / 5)):
            now = time.time()
            with self.lock:
                for cid in [c for c, v in self.connectors.items() if now - v["last_seen"] > self.expiry]:
                    self._close(cid, "expired", now)

    def pick(self, tid: str):
        """One registered connector of tunnel `tid`, at random, or None."""
        with self.lock:
            live = [dict(c) for c in self.connectors.values() if c["tunnel_id"] == tid]
        return random.choice(live) if live else None

    def record(self, entry: dict) -> None:
        with self.lock:
            self.requests.append(entry)
        self._log({"kind": "request", **entry})

    def current(self) -> list:
        with self.lock:
            return sorted((dict(c) for c in self.connectors.values()), key=lambda c: c["opened_at"])

    def history(self) -> list:
        with self.lock:
            return [dict(i) for i in self.intervals]

    def requests_since(self, since: float) -> list:
        with self.lock:
            return [dict(r) for r in self.requests if r["ts"] >= since]

    def webhook(self, name: str, raw: bytes) -> tuple:
        """Record a webhook POST to `name` (the agents' Discord alerts); return (HTTP status, reply)."""
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, {"message": "body is not JSON"}
        entry = {"ts": time.time(), "name": name, "body": body}
        with self.lock:
            self.webhooks.append(entry)
        self._log({"kind": "webhook", **entry})
        return 204, None

    def webhooks_since(self, since: float) -> list:
        with self.lock:
            return [dict(w) for w in self.webhooks if w["ts"] >= since]

    def reset(self) -> None:
        """Forget closed intervals, the request log and the webhooks; live connectors' intervals stay."""
        with self.lock:
            self.intervals = [i for i in self.intervals if i["closed_at"] is None]
            self.requests.clear()
            self.webhooks.clear()

    def overlaps(self, since: float = 0.0) -> list:
        """Windows when two or more distinct origin IPs were registered for one tunnel at once."""
        found = []
        for tid in sorted({i["tunnel_id"] for i in self.history()}):
            events = []
            for i in (i for i in self.history() if i["tunnel_id"] == tid):
                events.append((i["opened_at"], 1, i["origin_ip"], i["connector_id"]))
                closed = i["closed_at"] if i["closed_at"] is not None else float("inf")
                events.append((closed, 0, i["origin_ip"], i["connector_id"]))  # closes sort first
            live, window = {}, None  # connector_id -> origin_ip
            for ts, opening, ip, cid in sorted(events):
                if opening:
                    live[cid] = ip
                else:
                    live.pop(cid, None)
                distinct = set(live.values())
                if window is None and len(distinct) >= 2:
                    window = {"tunnel_id": tid, "start": ts, "end": None, "origin_ips": set(),
                              "connector_ids": set()}
                if window is not None:
                    window["origin_ips"] |= distinct
                    window["connector_ids"] |= set(live)
                    if len(distinct) < 2:
                        window["end"] = ts if ts != float("inf") else None
                        found.append(window)
                        window = None
        return [dict(w, origin_ips=sorted(w["origin_ips"]), connector_ids=sorted(w["connector_ids"]))
                for w in found if w["end"] is None or w["end"] >= since]

    def api_connections(self, tid: str) -> list:
        """The `result` of Cloudflare's GET .../cfd_tunnel/<tid>/connections."""
        return [{"id": c["connector_id"], "arch": c["arch"], "version": c["version"],
                 "run_at": rfc3339(c["opened_at"]), "features": [], "config_version": 0,
                 "conns": [{"id": c["conn_uuid"], "uuid": c["conn_uuid"], "colo_name": "lab",
                            "is_pending_reconnect": False, "opened_at": rfc3339(c["opened_at"]),
                            "origin_ip": c["origin_ip"], "client_id": c["connector_id"],
                            "client_version": c["version"]}]}
                for c in self.current() if c["tunnel_id"] == tid]

    def stop(self) -> None:
        self.stopped.set()
        with self.log_lock:
            if self.log_file:
                self.log_file.close()
                self.log_file = None


def envelope(result=None, errors=()) -> dict:
    """Cloudflare's v4 API response envelope."""
    return {"success": not errors, "errors": list(errors), "messages": [], "result": result}


class Handler(BaseHTTPRequestHandler):
    """Shared helpers; subclasses route. `self.server.edge` is the Edge."""

    def version_string(self) -> str:
        return "cloudflare"  # as Cloudflare's edge answers

    def log_message(self, fmt, *args) -> None:  # the request log replaces the access log
        pass

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def reply(self, status: int, body=b"", ctype="application/json", headers=()) -> None:
        if not isinstance(body, bytes):
            body = b"" if body is None else json.dumps(body, indent=1).encode()
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if status != 204:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and status != 204:
            self.wfile.write(body)


class ControlHandler(Handler):
    """Registration, the Cloudflare API subset and lab introspection. HTTP/1.1: a connector keeps its
    connection open for its keepalives (as cloudflared keeps its QUIC connection); one idle for
    IDLE_SECONDS is closed."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_SECONDS

    API = re.compile(r"^/client/v4/accounts/([^/]+)/cfd_tunnel/([^/]+)/connections$")

    def do_POST(self) -> None:
        edge, path = self.server.edge, urlsplit(self.path).path
        webhook = re.match(r"^/lab/webhook/([A-Za-z0-9._-]{1,64})$", path)
        if webhook and int(self.headers.get("Content-Length") or 0) > WEBHOOK_MAX_BODY:
            self.close_connection = True  # the body is not read
            return self.reply(413, {"message": f"body larger than {WEBHOOK_MAX_BODY} bytes"})
        raw = self.read_body()
        if webhook:
            return self.reply(*edge.webhook(webhook.group(1), raw))
        if path == "/connectors":
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                return self.reply(400, {"error": "body is not JSON"})
            return self.reply(*edge.register(body))
        m = re.match(r"^/connectors/([^/]+)/keepalive$", path)
        if m:
            return self.reply(*edge.keepalive(m.group(1)))
        if path == "/lab/reset":
            edge.reset()
            return self.reply(200, {"ok": True})
        self.reply(404, {"error": f"no such endpoint: POST {path}"})

    def do_DELETE(self) -> None:
        m = re.match(r"^/connectors/([^/]+)$", urlsplit(self.path).path)
        if not m:
            return self.reply(404, {"error": "no such endpoint"})
        self.reply(*self.server.edge.deregister(m.group(1)))

    def do_GET(self) -> None:
        edge, url = self.server.edge, urlsplit(self.path)
        query = parse_qs(url.query)
        try:
            since = float(query.get("since", ["0"])[0])
        except ValueError:
            return self.reply(400, {"error": "since must be a unix timestamp"})
        lab = {"/lab/connectors": edge.current, "/lab/history": edge.history,
               "/lab/requests": lambda: edge.requests_since(since),
               "/lab/overlaps": lambda: edge.overlaps(since),
               "/lab/webhooks": lambda: edge.webhooks_since(since)}
        if url.path in lab:
            return self.reply(200, lab[url.path]())
        m = self.API.match(url.path)
        if not m:
            return self.reply(404, {"error": f"no such endpoint: GET {url.path}"})
        auth = self.headers.get("Authorization", "")
        if not secrets.compare_digest(auth.encode(), f"Bearer {edge.api_token}".encode()):
            return self.reply(403, envelope(None, [{"code": 10000, "message": "Authentication error"}]))
        account, tid = m.groups()
        tunnel = edge.tunnels.get(tid)
        if tunnel is None or tunnel["account_tag"] != account:
            return self.reply(404, envelope(None, [{"code": 1003, "message": f"Tunnel not found: {tid}"}]))
        self.reply(200, envelope(edge.api_connections(tid)))


class PublicHandler(Handler):
    """Routes public hostnames to a random registered connector of their tunnel."""

    def proxy(self) -> None:
        edge, ray = self.server.edge, f"{secrets.token_hex(8)}-LAB"
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
        body, tid = self.read_body(), edge.hostnames.get(host)
        conn = edge.pick(tid) if tid else None
        entry = {"ts": time.time(), "host": host, "method": self.command, "path": self.path, "status": 530,
                 "connector_id": conn["connector_id"] if conn else None,
                 "origin_ip": conn["origin_ip"] if conn else None}
        if tid is None:
            reply = (530, f"error code: 1016\nError 1016 Origin DNS error: {host} is not a lab hostname\n"
                     .encode(), "text/plain", [("Cf-Ray", ray)])
        elif conn is None:
            reply = (530, f"error code: 1033\nError 1033 Argo Tunnel error: no connector is registered "
                     f"for {host}\n".encode(), "text/plain", [("Cf-Ray", ray)])
        else:
            reply = self.forward(conn, body, ray)
        entry["status"] = reply[0]
        edge.record(entry)  # before replying: whoever sees the response finds it in the request log
        self.reply(*reply)

    def forward(self, conn: dict, body: bytes, ray: str) -> tuple:
        """Relay this request to the connector's origin URL; return the reply to send."""
        cf = [("Cf-Ray", ray), ("X-Lab-Origin", conn["origin_ip"])]
        target = urlsplit(conn["origin_url"])
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers.update({"Cf-Ray": ray, "Cf-Connecting-Ip": self.client_address[0],
                        "X-Forwarded-For": self.client_address[0], "X-Forwarded-Proto": "http",
                        "Content-Length": str(len(body)), "Connection": "close"})
        try:
            upstream = http.client.HTTPConnection(target.hostname, target.port or 80,
                                                  timeout=self.server.edge.origin_timeout)
            upstream.request(self.command, self.path, body=body, headers=headers)
            resp = upstream.getresponse()
            data = resp.read()
            upstream.close()
        except (OSError, http.client.HTTPException) as exc:
            return (502, f"Error 502 Bad gateway: connector {conn['connector_id']} at "
                    f"{conn['origin_url']} is unreachable ({exc})\n".encode(), "text/plain", cf)
        own = HOP_BY_HOP | {"content-type", "server", "date"}  # reply() sets these
        passed = [(k, v) for k, v in resp.getheaders() if k.lower() not in own]
        return resp.status, data, resp.getheader("Content-Type", "application/octet-stream"), passed + cf

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = proxy


class ControlServer(ThreadingHTTPServer):
    """The control port's server: it knows its open (kept-alive) connections, so that stopping the edge
    cuts them as a vanished edge would, instead of leaving connectors talking to a stopped edge."""

    def __init__(self, *args, **kwargs):
        self.open_connections = set()
        self.accepted = 0  # connections accepted since start (tests: a connector keeps one)
        self.open_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address):
        with self.open_lock:
            self.open_connections.add(request)
            self.accepted += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.open_lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        with self.open_lock:
            connections = list(self.open_connections)
        for request in connections:
            try:
                request.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class EdgeServers:
    """The public and control servers of one Edge, bound at construction, serving after start()."""

    def __init__(self, edge: Edge, listen: str, public_port: int, control_port: int):
        self.edge = edge
        self.public = ThreadingHTTPServer((listen, public_port), PublicHandler)
        self.control = ControlServer((listen, control_port), ControlHandler)
        for server in (self.public, self.control):
            server.daemon_threads = True
            server.edge = edge
        self.threads = []

    @property
    def ports(self) -> tuple:
        """(public port, control port) actually bound."""
        return self.public.server_address[1], self.control.server_address[1]

    def start(self) -> "EdgeServers":
        for target, args in ((self.public.serve_forever, (0.1,)), (self.control.serve_forever, (0.1,)),
                             (self.edge.reap_forever, ())):
            thread = threading.Thread(target=target, args=args, daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def stop(self) -> None:
        self.edge.stop()
        for server in (self.public, self.control):
            if self.threads:
                server.shutdown()
            server.server_close()
        self.control.cut_connections()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.edge", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", metavar="ADDR", default=settings.address("edge"),
                        help="address both servers bind (default: %(default)s)")
    parser.add_argument("--public-port", metavar="PORT", type=int, default=settings.EDGE_PUBLIC_PORT,
                        help="port for public hostnames (default: %(default)s)")
    parser.add_argument("--control-port", metavar="PORT", type=int, default=settings.EDGE_CONTROL_PORT,
                        help="port for registration, the API and /lab (default: %(default)s)")
    parser.add_argument("--config", required=True, metavar="FILE", help="JSON file: api_token and tunnels")
    parser.add_argument("--expiry", metavar="SECONDS", type=float, default=settings.CONNECTOR_EXPIRY_SECONDS,
                        help="seconds without keepalive before a connector is expired (default: %(default)s)")
    parser.add_argument("--origin-timeout", metavar="SECONDS", type=float, default=10.0,
                        help="seconds to wait for a connector's answer before 502 (default: %(default)s)")
    parser.add_argument("--log", metavar="FILE",
                        help="append connector events and public requests here as JSON lines")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except (OSError, ValueError) as exc:
        parser.exit(1, f"edge: bad config: {exc}\n")
    servers = EdgeServers(Edge(config, args.expiry, args.log, args.origin_timeout),
                          args.listen, args.public_port, args.control_port).start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sys.stderr.write(f"edge: public on {args.listen}:{servers.ports[0]}, control on "
                     f"{args.listen}:{servers.ports[1]}\n")
    while not stop.wait(0.5):
        pass
    servers.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""cloudflared stand-in for the Wirebot lab, installed on lab hosts as /usr/bin/cloudflared.

Usage (like the real CLI):
  cloudflared --version
  cloudflared [--no-autoupdate] [--metrics ADDR] [--config FILE] tunnel [--metrics ADDR] run
      [--credentials-file FILE] [NAME]

Reads the real config (YAML): `tunnel`, `credentials-file` (JSON with AccountTag, TunnelSecret,
TunnelID; `run --credentials-file` or $TUNNEL_CRED_FILE take precedence, as in cloudflared),
`ingress` (ending in a catch-all rule) and `metrics` (default: the first free port of
127.0.0.1:20241-20245, as cloudflared does). Without --config it looks for config.yml/config.yaml in
~/.cloudflared, ~/.cloudflare-warp, ~/cloudflare-warp, /etc/cloudflared, /usr/local/etc/cloudflared.

Lab-only inputs (not in the real config):
  CLOUDFLARED_LAB_EDGE / file /etc/cloudflared-lab/edge-url   edge URL (default http://10.213.0.4:7844)
  CLOUDFLARED_LAB_ORIGIN_IP / file /etc/cloudflared-lab/origin-ip   address the edge reaches us at
      (default: this host's source address toward the edge, i.e. its primary address on that route)
  CLOUDFLARED_LAB_PROXY_PORT   port of the local ingress proxy (default 7845)

Instead of a QUIC connection it registers over HTTP with the edge (retrying "in up to 1s", doubling) and sends a
keepalive every second on ONE kept-alive connection, as cloudflared pings its QUIC connection every second
(MaxIdlePingPeriod): a lost packet costs a TCP retransmission, not a new handshake per keepalive (10 % loss
on the path to the edge made every third keepalive pay a lost SYN's 1 s and the edge expired a healthy
connector). A call without an answer within the idle timeout - 5 s (cloudflared's MaxIdleTimeout), or the
edge's own expiry when smaller, as QUIC takes the smaller of both ends' - closes that connection; the next
call opens a new one. It re-registers when the edge has forgotten it, serves the edge's requests
on <origin-ip>:<proxy-port> through the ingress rules, and deregisters on SIGTERM/SIGINT (exit 0).
Metrics server: /ready (200 once registered, else 503), /metrics (Prometheus text), /healthcheck.
Standard library plus PyYAML only; no imports from the lab package.
"""

import argparse
import http.client
import json
import os
import platform
import random
import re
import signal
import socket
import ssl
import sys
import threading
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import yaml

VERSION = "2025.4.0-lab"
DEFAULT_EDGE = "http://10.213.0.4:7844"  # lab.settings.EDGE_URL; this file cannot import the lab
LAB_DIR = "/etc/cloudflared-lab"
SEARCH_DIRS = ["~/.cloudflared", "~/.cloudflare-warp", "~/cloudflare-warp", "/etc/cloudflared",
               "/usr/local/etc/cloudflared"]
INTERVAL = 1.0  # seconds between registration attempts and keepalives (cloudflared's MaxIdlePingPeriod)
IDLE_TIMEOUT = 5.0  # seconds without an answer before the connection counts as lost (its MaxIdleTimeout)
MAX_RETRY = 64.0  # the cap of the randomized retry backoff after failures in a row ("up to 1m4s")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "content-length"}
ERR_LAST_RULE = ("The last ingress rule must match all URLs "
                 "(i.e. it should not have a hostname or path filter)")
ERR_WILDCARD = ('Hostname patterns can have at most one wildcard character ("*") and it can only be used '
                'for subdomains, e.g. "*.example.com"')


def log(level: str, msg: str, **fields) -> None:
    """One cloudflared-style log line on stderr: `<time> INF message key=value ...`."""
    ts = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    extra = "".join(f" {k}={v}" for k, v in fields.items())
    sys.stderr.write(f"{ts} {level} {msg}{extra}\n")
    sys.stderr.flush()


def die(msg: str) -> None:
    log("ERR", msg)
    sys.exit(1)


def lab_value(env: str, name: str, default=None):
    """A lab-only input: environment variable `env`, else file LAB_DIR/`name`, else `default`."""
    if os.environ.get(env):
        return os.environ[env].strip()
    try:
        with open(os.path.join(LAB_DIR, name), encoding="utf-8") as fh:
            return fh.read().strip() or default
    except OSError:
        return default


def find_file(names) -> str:
    for d in SEARCH_DIRS:
        for n in names:
            path = os.path.join(os.path.expanduser(d), n)
            if os.path.isfile(path):
                return path
    return ""


def load_config(path) -> dict:
    path = path or find_file(["config.yml", "config.yaml"])
    if not path:
        die(f"Cannot determine default configuration path. No file [config.yml config.yaml] in {SEARCH_DIRS}")
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as fh:
            config = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError) as exc:
        die(f"Cannot load configuration file {path}: {exc}")
    if not isinstance(config, dict):
        die(f"Configuration file {path} must be a YAML mapping")
    log("INF", f"Using configuration file {path}")
    return config


def load_credentials(config: dict, tunnel: str, given: str = None) -> dict:
    """The tunnel's credentials (`given`: the command line's or the environment's file, else the config's),
    checked: exits 1 with a clear message when unusable."""
    path = given or config.get("credentials-file") or find_file([f"{tunnel}.json"])
    path = os.path.expanduser(str(path))
    if not os.path.isfile(path):
        die(f"Tunnel credentials file '{path}' doesn't exist or is not a file")
    try:
        with open(path, encoding="utf-8") as fh:
            creds = json.load(fh)
    except (OSError, ValueError) as exc:
        die(f"Tunnel credentials file '{path}' is not valid JSON: {exc}")
    if not isinstance(creds, dict):
        die(f"Tunnel credentials file '{path}' must hold a JSON object")
    for field in ("AccountTag", "TunnelSecret", "TunnelID"):
        if not isinstance(creds.get(field), str) or not creds[field]:
            die(f"Tunnel credentials file '{path}' lacks {field}")
    if creds["TunnelID"].lower() != str(tunnel).lower():
        die(f"Tunnel ID {tunnel} does not match TunnelID {creds['TunnelID']} in credentials file '{path}'")
    return creds


def parse_service(text: str, n: int) -> tuple:
    """('status', code) | ('http', scheme, host, port) | ('hello',)."""
    if text == "hello_world":
        return ("hello",)
    m = re.fullmatch(r"http_status:(\d{3})", text)
    if m:
        return ("status", int(m.group(1)))
    url = urlsplit(text)
    if url.scheme in ("http", "https") and url.hostname:
        if url.path not in ("", "/"):
            die(f"Rule #{n}: {text} is an invalid address, ingress rules don't support proxying to a "
                "different path on the origin service")
        return ("http", url.scheme, url.hostname, url.port or (443 if url.scheme == "https" else 80))
    die(f"Rule #{n}: service {text!r} is not supported by the lab stand-in "
        "(use http://, https://, http_status:NNN or hello_world)")


def parse_ingress(rules) -> list:
    """Validate ingress rules as cloudflared does; return [(hostname|None, path regex|None, service)]."""
    if not rules:
        log("WRN", "No ingress rules were defined in provided config (if any) nor from the cli, "
            "cloudflared will return 503 for all incoming HTTP requests")
        return [(None, None, ("status", 503))]
    if not isinstance(rules, list):
        die("ingress must be a list of rules")
    parsed = []
    for n, rule in enumerate(rules, 1):
        if not isinstance(rule, dict) or "service" not in rule:
            die(f"Rule #{n} is missing a service")
        host = str(rule.get("hostname") or "").lower() or None
        host = None if host == "*" else host
        if host and ":" in host:
            die("Hostname cannot contain a port")
        if host and "*" in host and (host.count("*") > 1 or not host.startswith("*.")):
            die(ERR_WILDCARD)
        try:
            path = re.compile(str(rule["path"])) if rule.get("path") else None
        except re.error as exc:
            die(f"Rule #{n}: invalid path regex: {exc}")
        parsed.append((host, path, parse_service(str(rule["service"]), n)))
    for n, (host, path, _) in enumerate(parsed[:-1], 1):
        if host is None and path is None:
            die(f"Rule #{n} is matching all URLs, but it's not the last rule. Rules after it are unreachable")
    if parsed[-1][0] is not None or parsed[-1][1] is not None:
        die(ERR_LAST_RULE)
    return parsed


def match_rule(rules: list, host: str, path: str) -> tuple:
    """The service of the first rule matching `host` and `path` (the last rule matches all)."""
    for rule_host, rule_path, service in rules:
        wildcard = rule_host and rule_host.startswith("*.") and host.endswith(rule_host[1:])
        if rule_host and host != rule_host and not wildcard:
            continue
        if rule_path and not rule_path.search(path):
            continue
        return service
    return ("status", 404)


class Connector:
    """Registration, keepalive and deregistration with the edge; the state /ready reports."""

    def __init__(self, edge_url: str, creds: dict, origin_ip: str, proxy_port: int):
        edge = urlsplit(edge_url)
        self.edge_host, self.edge_port = edge.hostname, edge.port or 7844
        self.creds, self.origin_ip, self.proxy_port = creds, origin_ip, proxy_port
        self.connector_id = str(uuid.uuid4())
        self.ready = False
        self.registered_once = False
        self.requests = 0
        self.last_reply = ""
        self.stop = threading.Event()
        self.conn = None  # the kept-alive connection to the edge (the run thread's)
        # as QUIC's: the smaller of ours and the edge's (its registration answer's expiry_seconds)
        self.idle_timeout = IDLE_TIMEOUT

    def call(self, method: str, path: str, body=None, fresh: bool = False) -> int:
        """One request to the edge on the kept-alive connection (``fresh``: on a connection of its own, for
        the shutdown's deregistration while the run thread may still hold the kept one); no answer within
        the idle timeout is a lost connection."""
        conn = None if fresh else self.conn
        if conn is None:
            conn = http.client.HTTPConnection(self.edge_host, self.edge_port, timeout=self.idle_timeout)
        if not fresh:
            self.conn = conn
        if conn.sock is not None:
            conn.sock.settimeout(self.idle_timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            self.last_reply = resp.read().decode(errors="replace").strip()
            if resp.will_close:
                conn.close()
            self._note_expiry()
            return resp.status
        except BaseException:
            conn.close()
            raise
        finally:
            if fresh:
                conn.close()

    def _note_expiry(self) -> None:
        """Take the edge's idle timeout (``expiry_seconds`` in its answers) when it is the smaller: a
        connection the edge has given up on must not be waited on longer (QUIC's idle timeout is the minimum
        of both ends')."""
        try:
            expiry = float(json.loads(self.last_reply).get("expiry_seconds"))
        except (ValueError, TypeError, AttributeError):
            return
        if expiry > 0:
            self.idle_timeout = min(IDLE_TIMEOUT, expiry)

    def register(self) -> bool:
        status = self.call("POST", "/connectors", {
            "tunnel_id": self.creds["TunnelID"], "account_tag": self.creds["AccountTag"],
            "tunnel_secret": self.creds["TunnelSecret"], "connector_id": self.connector_id,
            "origin_ip": self.origin_ip, "origin_url": f"http://{self.origin_ip}:{self.proxy_port}",
            "version": VERSION, "arch": f"linux_{platform.machine()}"})
        if status != 201:
            log("ERR", "Failed to register tunnel connection", connIndex=0, status=status,
                error=self.last_reply)
            return False
        self.ready = self.registered_once = True
        log("INF", "Registered tunnel connection", connIndex=0, connection=self.connector_id, event=0,
            ip=self.edge_host, location="lab", protocol="http")
        return True

    def run(self) -> None:
        """Until stop: register when not ready, else keepalive; re-register when the edge forgot us. After a
        failure it retries as cloudflared does: "Retrying connection in up to 1s", a random wait below a cap
        that doubles with each failure in a row (up to MAX_RETRY) and starts over once registered."""
        cap = INTERVAL
        while not self.stop.is_set():
            try:
                if not self.ready:
                    failed = not self.register()
                elif self.call("POST", f"/connectors/{self.connector_id}/keepalive") != 200:
                    self.ready = False
                    log("WRN", "Connection terminated by the edge; re-registering", connIndex=0)
                    continue
                else:
                    failed = False
            except (OSError, http.client.HTTPException) as exc:
                if self.ready:
                    log("ERR", "Lost connection with the edge", connIndex=0, error=f'"{exc}"')
                else:
                    log("ERR", "Unable to reach the edge", connIndex=0,
                        edge=f"{self.edge_host}:{self.edge_port}", error=f'"{exc}"')
                self.ready, failed = False, True
            if failed:
                log("INF", f"Retrying connection in up to {cap:g}s", connIndex=0, event=0, ip=self.edge_host)
                self.stop.wait(random.uniform(0, cap))
                cap = min(2 * cap, MAX_RETRY)
            else:
                cap = INTERVAL
                self.stop.wait(INTERVAL)

    def deregister(self) -> None:
        if not self.registered_once:
            return
        try:
            self.call("DELETE", f"/connectors/{self.connector_id}", fresh=True)
            log("INF", "Unregistered tunnel connection", connIndex=0, event=0, ip=self.edge_host)
        except (OSError, http.client.HTTPException) as exc:
            log("ERR", "Failed to unregister tunnel connection", connIndex=0, error=f'"{exc}"')
        self.ready = False


class ProxyHandler(BaseHTTPRequestHandler):
    """Serves the edge's requests through the ingress rules (`self.server.rules`)."""

    def log_message(self, fmt, *args) -> None:
        pass

    def send(self, status: int, body: bytes = b"", headers=(), relayed: bool = False) -> None:
        if relayed:  # the origin's own Server and Date headers pass through
            self.log_request(status)
            self.send_response_only(status)
        else:
            self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self) -> None:
        self.server.connector.requests += 1
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
        service = match_rule(self.server.rules, host, urlsplit(self.path).path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        if service[0] == "status":
            return self.send(service[1])
        if service[0] == "hello":
            return self.send(200, f"Hello from the lab cloudflared on {socket.gethostname()}\n".encode(),
                             [("Content-Type", "text/plain")])
        _, scheme, origin_host, port = service
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers.update({"Content-Length": str(len(body)), "Connection": "close"})
        try:
            if scheme == "https":
                conn = http.client.HTTPSConnection(origin_host, port, timeout=30,
                                                   context=ssl._create_unverified_context())
            else:
                conn = http.client.HTTPConnection(origin_host, port, timeout=30)
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            conn.close()
        except (OSError, http.client.HTTPException) as exc:
            log("ERR", "", error=f'"Unable to reach the origin service. The service may be down or it may '
                f'not be responding to traffic from cloudflared: {exc}"', connIndex=0,
                originService=f"{scheme}://{origin_host}:{port}")
            return self.send(502, b"Bad Gateway\n", [("Content-Type", "text/plain")])
        self.send(resp.status, data, [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP],
                  relayed=True)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = handle_any


class MetricsHandler(BaseHTTPRequestHandler):
    """/ready, /metrics and /healthcheck of `self.server.connector`."""

    def log_message(self, fmt, *args) -> None:
        pass

    def do_GET(self) -> None:
        c, path = self.server.connector, urlsplit(self.path).path
        if path == "/ready":
            status = 200 if c.ready else 503
            body = json.dumps({"status": status, "readyConnections": int(c.ready),
                               "connectorId": c.connector_id})
        elif path == "/metrics":
            status = 200
            body = (f'# TYPE build_info gauge\nbuild_info{{version="{VERSION}"}} 1\n'
                    "# TYPE cloudflared_tunnel_ha_connections gauge\n"
                    f"cloudflared_tunnel_ha_connections {int(c.ready)}\n"
                    "# TYPE cloudflared_tunnel_total_requests counter\n"
                    f"cloudflared_tunnel_total_requests {c.requests}\n")
        elif path == "/healthcheck":
            status, body = 200, "OK\n"
        else:
            status, body = 404, "404 page not found\n"
        data = body.encode()
        self.send_response(status)
        ctype = "application/json" if path == "/ready" else "text/plain; charset=utf-8"
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve(handler, host: str, port: int, **attrs) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    for k, v in attrs.items():
        setattr(server, k, v)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def start_metrics(addr, connector: Connector) -> ThreadingHTTPServer:
    """The metrics server on `addr`, or on the first free port of 127.0.0.1:20241-20245 (else random)."""
    candidates = [("127.0.0.1", p) for p in range(20241, 20246)] + [("127.0.0.1", 0)]
    if addr:
        host, _, port = str(addr).rpartition(":")
        candidates = [(host or "0.0.0.0", int(port))]
    for host, port in candidates:
        try:
            server = serve(MetricsHandler, host, port, connector=connector)
        except OSError as exc:
            error = exc
            continue
        log("INF", f"Starting metrics server on {host}:{server.server_address[1]}/metrics")
        return server
    die(f"Cannot start the metrics server on {addr}: {error}")


def origin_address(edge_url: str) -> str:
    ip = lab_value("CLOUDFLARED_LAB_ORIGIN_IP", "origin-ip")
    if ip:
        return ip
    edge = urlsplit(edge_url)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # connect() on UDP sends nothing
        s.connect((edge.hostname, edge.port or 7844))
        return s.getsockname()[0]


def parse_args(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="cloudflared", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--version", "-v", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="{tunnel,version}")
    sub.add_parser("version", help="print the version and exit")
    t = sub.add_parser("tunnel", help="run a tunnel (only `tunnel run` is supported)")
    for parser, pre in ((p, "g"), (t, "t")):
        parser.add_argument("--config", dest=f"{pre}_config", metavar="FILE", help="YAML config file")
        parser.add_argument("--metrics", dest=f"{pre}_metrics", metavar="ADDR",
                            help="host:port of the metrics server (overrides `metrics` in the config)")
        parser.add_argument("--no-autoupdate", dest=f"{pre}_noauto", action="store_true",
                            help="accepted; the stand-in never updates itself")
        parser.add_argument("--loglevel", dest=f"{pre}_loglevel", metavar="LEVEL",
                            help="accepted and ignored")
    run = t.add_subparsers(dest="tunnel_command", metavar="{run}").add_parser(
        "run", help="run the tunnel (the default when `tunnel` has no subcommand)")
    run.add_argument("--credentials-file", "--cred-file", dest="credentials_file", metavar="FILE",
                     default=os.environ.get("TUNNEL_CRED_FILE") or None,
                     help="tunnel credentials JSON (overrides `credentials-file` in the config)")
    run.add_argument("name", nargs="?", help="tunnel UUID; overrides `tunnel` in the config")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.version or args.command == "version":
        print(f"cloudflared version {VERSION} (built lab stand-in)")
        return 0
    if args.command != "tunnel":
        die("Use `cloudflared tunnel run` (see --help)")
    config = load_config(getattr(args, "t_config", None) or args.g_config)
    tunnel = getattr(args, "name", None) or config.get("tunnel")
    if not tunnel:
        die('"cloudflared tunnel run" requires the ID or name of the tunnel to run as the last command line '
            "argument or in the configuration file.")
    creds = load_credentials(config, str(tunnel), getattr(args, "credentials_file", None))
    rules = parse_ingress(config.get("ingress"))
    edge_url = lab_value("CLOUDFLARED_LAB_EDGE", "edge-url", DEFAULT_EDGE)
    log("INF", f"Starting tunnel tunnelID={creds['TunnelID']}")
    log("INF", f"Version {VERSION}", edge=edge_url)
    connector = Connector(edge_url, creds, origin_address(edge_url),
                          int(os.environ.get("CLOUDFLARED_LAB_PROXY_PORT") or 7845))
    try:
        proxy = serve(ProxyHandler, connector.origin_ip, connector.proxy_port, rules=rules,
                      connector=connector)
    except OSError as exc:
        die(f"Cannot listen for the edge on {connector.origin_ip}:{connector.proxy_port}: {exc}")
    metrics_addr = getattr(args, "t_metrics", None) or args.g_metrics or config.get("metrics")
    metrics = start_metrics(metrics_addr, connector)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _: connector.stop.set())
    worker = threading.Thread(target=connector.run, daemon=True)
    worker.start()
    while not connector.stop.wait(0.5):
        pass
    log("INF", "Initiating graceful shutdown due to signal")
    worker.join(timeout=10)
    connector.deregister()
    for server in (proxy, metrics):
        server.shutdown()
        server.server_close()
    log("INF", "Tunnel server stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

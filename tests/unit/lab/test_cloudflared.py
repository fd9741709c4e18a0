"""lab/standins/cloudflared.py (the cloudflared stand-in) as a subprocess against lab/edge.py on loopback:
its configuration checks, registration, serving, readiness and re-registration."""

import json
import os
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import yaml

from lab import settings
from lab.edge import Edge, EdgeServers
from lab.loopback import free_port, standin_argv
from tasks.core.wait import wait_for

HOST = "wins.wirebot.chat"
LAST_RULE = "The last ingress rule must match all URLs (i.e. it should not have a hostname or path filter)"


def write_tunnel(tmp_path: Path, origin_port: int = 9, metrics_port: int = 0, tunnel=settings.TUNNEL_ID,
                 creds=None, ingress=None) -> Path:
    """A cloudflared config and credentials file in tmp_path; returns the config path."""
    creds_path = tmp_path / f"{settings.TUNNEL_ID}.json"
    if creds is None:
        creds = {"AccountTag": settings.ACCOUNT_TAG, "TunnelSecret": settings.TUNNEL_SECRET,
                 "TunnelID": settings.TUNNEL_ID}
    creds_path.write_text(creds if isinstance(creds, str) else json.dumps(creds))
    if ingress is None:
        ingress = [{"hostname": HOST, "path": "^/teapot", "service": "http_status:418"},
                   {"hostname": "*.wirebot.chat", "service": f"http://127.0.0.1:{origin_port}"},
                   {"service": "http_status:404"}]
    config = {"tunnel": tunnel, "credentials-file": str(creds_path), "ingress": ingress}
    if metrics_port:
        config["metrics"] = f"127.0.0.1:{metrics_port}"
    path = tmp_path / "wirebot.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def cloudflared_env(control_port: int, proxy_port: int) -> dict:
    return {"CLOUDFLARED_LAB_EDGE": f"http://127.0.0.1:{control_port}",
            "CLOUDFLARED_LAB_ORIGIN_IP": "127.0.0.1", "CLOUDFLARED_LAB_PROXY_PORT": str(proxy_port)}


def run_cloudflared(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(standin_argv("cloudflared.py", *args), text=True,
                          capture_output=True, timeout=20, env={**os.environ, **(env or {})})


def test_cloudflared_version():
    result = run_cloudflared("--version")
    assert result.returncode == 0 and result.stdout.startswith("cloudflared version ")


@pytest.mark.parametrize("change, message", [
    ({"tunnel": "0a1b2c3d-0000-4000-8000-0000000000ff"}, "does not match TunnelID"),
    ({"creds": {"TunnelSecret": settings.TUNNEL_SECRET, "TunnelID": settings.TUNNEL_ID}}, "lacks AccountTag"),
    ({"creds": {"AccountTag": settings.ACCOUNT_TAG, "TunnelID": settings.TUNNEL_ID}}, "lacks TunnelSecret"),
    ({"creds": "{not json"}, "is not valid JSON"),
    ({"ingress": [{"hostname": HOST, "service": "http://127.0.0.1:9"}]}, LAST_RULE),
    ({"ingress": [{"hostname": HOST, "path": "^/x", "service": "http://127.0.0.1:9"},
                  {"path": "^/y", "service": "http_status:404"}]}, LAST_RULE),
    ({"ingress": [{"hostname": "a.*.chat", "service": "http://127.0.0.1:9"}, {"service": "http_status:404"}]},
     "at most one wildcard"),
])
def test_cloudflared_rejects_bad_config(tmp_path, change, message):
    config = write_tunnel(tmp_path, **change)
    result = run_cloudflared("--no-autoupdate", "--config", config, "tunnel", "run",
                             env=cloudflared_env(free_port(), free_port()))
    assert result.returncode == 1 and message in result.stderr


def test_cloudflared_rejects_missing_credentials(tmp_path):
    config = write_tunnel(tmp_path)
    (tmp_path / f"{settings.TUNNEL_ID}.json").unlink()
    result = run_cloudflared("--config", config, "tunnel", "run",
                             env=cloudflared_env(free_port(), free_port()))
    assert result.returncode == 1 and "doesn't exist" in result.stderr


class OriginHandler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        data = json.dumps({"origin": "scoreboard", "path": self.path, "host": self.headers["Host"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def tunnel_lab(tmp_path, spawn):
    """An edge bound (not yet serving) on loopback, a loopback origin, and a cloudflared subprocess."""
    tunnel = {"account_tag": settings.ACCOUNT_TAG, "secret": settings.TUNNEL_SECRET,
              "hostnames": [HOST, "api.wirebot.chat", "other.example.org"]}
    edge = Edge({"api_token": settings.EDGE_API_TOKEN, "tunnels": {settings.TUNNEL_ID: tunnel}}, expiry=3.0)
    servers = EdgeServers(edge, "127.0.0.1", 0, 0)
    origin = ThreadingHTTPServer(("127.0.0.1", 0), OriginHandler)
    origin.daemon_threads = True
    threading.Thread(target=origin.serve_forever, args=(0.05,), daemon=True).start()
    metrics_port = free_port()
    config = write_tunnel(tmp_path, origin.server_address[1], metrics_port)
    proc = spawn("cloudflared.py", "--no-autoupdate", "--config", config, "tunnel", "run",
                 env=cloudflared_env(servers.ports[1], free_port()))

    class Lab:
        pass

    lab = Lab()
    lab.edge, lab.servers, lab.proc = edge, servers, proc
    lab.ready = f"http://127.0.0.1:{metrics_port}/ready"
    lab.public = f"http://127.0.0.1:{servers.ports[0]}"
    yield lab
    servers.stop()
    origin.shutdown()
    origin.server_close()


def wait_ready(lab, status: int) -> dict:
    """Poll cloudflared's /ready until it answers `status`; return its JSON."""
    def check():
        resp = requests.get(lab.ready, timeout=2)
        return resp.json() if resp.status_code == status else None

    return wait_for(check, 10, 0.05, f"cloudflared's /ready to answer {status}", ignore=(requests.ConnectionError,))


def test_cloudflared_registers_serves_and_deregisters(tunnel_lab):
    lab = tunnel_lab
    assert wait_ready(lab, 503)["readyConnections"] == 0
    lab.servers.start()
    body = wait_ready(lab, 200)
    assert body["status"] == 200 and body["readyConnections"] == 1
    (conn,) = lab.edge.current()
    assert conn["connector_id"] == body["connectorId"] and conn["origin_ip"] == "127.0.0.1"

    resp = requests.get(f"{lab.public}/v1/scoreboard?x=1", headers={"Host": HOST}, timeout=5)
    assert resp.status_code == 200 and resp.headers["X-Lab-Origin"] == "127.0.0.1"
    assert resp.headers["Server"] == "cloudflare" and resp.headers["Cf-Ray"].endswith("-LAB")
    assert resp.json() == {"origin": "scoreboard", "path": "/v1/scoreboard?x=1", "host": HOST}
    wildcard = requests.get(f"{lab.public}/", headers={"Host": "api.wirebot.chat"}, timeout=5)
    assert wildcard.status_code == 200 and wildcard.json()["host"] == "api.wirebot.chat"
    assert requests.get(f"{lab.public}/teapot", headers={"Host": HOST}, timeout=5).status_code == 418
    assert requests.get(f"{lab.public}/", headers={"Host": "other.example.org"}, timeout=5).status_code == 404
    metrics = requests.get(lab.ready.replace("/ready", "/metrics"), timeout=5).text
    assert "cloudflared_tunnel_ha_connections 1" in metrics

    lab.proc.send_signal(signal.SIGTERM)
    assert lab.proc.wait(10) == 0
    assert lab.edge.current() == []
    assert [h["reason"] for h in lab.edge.history()] == ["deregistered"]
    assert "Registered tunnel connection connIndex=0" in Path(lab.proc.log_path).read_text()


def test_cloudflared_reregisters_when_the_edge_forgets_and_reports_a_lost_edge(tunnel_lab):
    lab = tunnel_lab
    lab.servers.start()
    wait_ready(lab, 200)
    (first,) = lab.edge.current()
    lab.edge.deregister(first["connector_id"])  # as if the edge had restarted
    wait_for(lambda: lab.edge.current(), 10, 0.05, "cloudflared registered again")
    assert [h["reason"] for h in lab.edge.history()] == ["deregistered", None]
    lab.servers.stop()
    assert wait_ready(lab, 503)["readyConnections"] == 0
    lab.proc.send_signal(signal.SIGTERM)
    assert lab.proc.wait(10) == 0


def test_cloudflared_keeps_one_connection_to_the_edge_for_its_keepalives(tunnel_lab):
    """As cloudflared pings one QUIC connection: keepalives share the registration's connection (a lost
    packet is a TCP retransmission, not a new handshake per keepalive); the edge cutting it is a lost edge."""
    lab = tunnel_lab
    lab.servers.start()
    wait_ready(lab, 200)
    accepted = lab.servers.control.accepted
    (conn,) = lab.edge.current()
    seen = conn["last_seen"]
    wait_for(lambda: lab.edge.current()[0]["last_seen"] >= seen + 2.5, 10, 0.1, "three more keepalives")
    assert lab.servers.control.accepted == accepted == 1
    lab.servers.control.cut_connections()  # the connection dies: the next keepalive opens a new one
    wait_for(lambda: lab.servers.control.accepted == 2, 10, 0.1, "a new connection to the edge")
    assert [c["connector_id"] for c in lab.edge.current()] == [conn["connector_id"]]


def test_cloudflared_waits_no_longer_than_the_edges_expiry_for_a_keepalive(tunnel_lab):
    """Its idle timeout is the smaller of its own 5 s and the edge's expiry (3 s here), as QUIC takes the
    smaller of both ends': an edge that stops answering is a lost edge before the edge forgets it for long."""
    lab = tunnel_lab
    lab.servers.start()
    wait_ready(lab, 200)
    hang = threading.Event()
    answer = lab.edge.keepalive
    lab.edge.keepalive = lambda cid: (hang.wait(20), answer(cid))[1]  # the edge goes silent
    try:
        started = time.monotonic()
        wait_ready(lab, 503)
        assert time.monotonic() - started < 3.0 + 1.0 + 1.0  # timeout + one keepalive interval + polling
    finally:
        hang.set()

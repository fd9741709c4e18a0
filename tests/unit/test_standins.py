"""The stand-in scripts (lab/standins/*.py) as subprocesses on loopback, with a temporary directory."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import yaml

from lab import settings
from lab.edge import Edge, EdgeServers

ROOT = Path(__file__).resolve().parents[2]

STANDINS = ROOT / "lab" / "standins"
HOST = "wins.wirebot.chat"
LAST_RULE = "The last ingress rule must match all URLs (i.e. it should not have a hostname or path filter)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 10.0, step: float = 0.05):
    """Poll `predicate` (connection errors count as not yet) until truthy; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except requests.ConnectionError:
            value = None
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout}s")


@pytest.fixture
def spawn(tmp_path):
    """Factory: start a stand-in script; its stderr goes to a file; terminated after the test."""
    procs = []

    def start(script: str, *args, env=None):
        log = open(tmp_path / f"{script}-{len(procs)}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, str(STANDINS / script), *map(str, args)], stdout=log,
                                stderr=log, env={**os.environ, **(env or {})})
        proc.log_path = log.name
        procs.append((proc, log))
        return proc

    yield start
    for proc, log in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


# --- scoreboard -------------------------------------------------------------------------------------


@pytest.fixture
def scoreboard(spawn, tmp_path):
    port, db, tenants = free_port(), tmp_path / "sb" / "events.db", tmp_path / "sb" / "tenants"
    args = ("--bind", "127.0.0.1", "--port", port, "--db", db, "--tenants", tenants, "--name", "lab-primary")
    proc = spawn("scoreboard.py", *args)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: requests.get(f"{url}/health", timeout=2).ok)

    class Scoreboard:
        pass

    sb = Scoreboard()
    sb.url, sb.db, sb.tenants, sb.proc, sb.args = url, db, tenants, proc, args
    return sb


def count_rows(db: Path, event_id: str) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM events WHERE id = ?", (event_id,)).fetchone()[0]


def test_scoreboard_is_idempotent(scoreboard):
    event = {"id": str(uuid.uuid4()), "type": "ship", "payload": {"title": "v1"}}
    first = requests.post(f"{scoreboard.url}/v1/events", json=event, timeout=5)
    again = requests.post(f"{scoreboard.url}/v1/events", json=event, timeout=5)
    assert (first.status_code, first.json()["duplicate"]) == (201, False)
    assert (again.status_code, again.json()["duplicate"]) == (200, True)
    assert count_rows(scoreboard.db, event["id"]) == 1
    board = requests.get(f"{scoreboard.url}/v1/scoreboard", timeout=5).json()
    assert board == {"score": 10, "events": 1, "host": "lab-primary"}
    (stored,) = requests.get(f"{scoreboard.url}/v1/events", params={"limit": 5}, timeout=5).json()
    assert stored["payload"] == {"title": "v1"} and stored["received_by"] == "lab-primary"


def test_scoreboard_scores_by_type(scoreboard):
    for kind in ("ship", "intent", "complete", "other"):
        requests.post(f"{scoreboard.url}/v1/events", json={"id": str(uuid.uuid4()), "type": kind}, timeout=5)
    assert requests.get(f"{scoreboard.url}/v1/scoreboard", timeout=5).json()["score"] == 10 + 2 + 5 + 1


def test_scoreboard_tenant_db_and_wal(scoreboard):
    event = {"id": str(uuid.uuid4()), "type": "intent", "tenant": "acme-co"}
    assert requests.post(f"{scoreboard.url}/v1/events", json=event, timeout=5).status_code == 201
    tenant_db = scoreboard.tenants / "acme-co.db"
    assert count_rows(tenant_db, event["id"]) == 1 and count_rows(scoreboard.db, event["id"]) == 1
    for db in (scoreboard.db, tenant_db):
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    board = requests.get(f"{scoreboard.url}/v1/scoreboard", params={"tenant": "acme-co"}, timeout=5).json()
    assert board["score"] == 2 and board["events"] == 1
    missing = requests.get(f"{scoreboard.url}/v1/scoreboard", params={"tenant": "nobody"}, timeout=5)
    assert missing.status_code == 404


@pytest.mark.parametrize("body", [
    b"{not json", b"[]", json.dumps({"type": "ship"}).encode(),
    json.dumps({"id": "not-a-uuid", "type": "ship"}).encode(),
    json.dumps({"id": str(uuid.uuid4())}).encode(),
    json.dumps({"id": str(uuid.uuid4()), "type": "ship", "tenant": "../etc"}).encode(),
    json.dumps({"id": str(uuid.uuid4()), "type": "ship", "tenant": "Acme"}).encode(),
])
def test_scoreboard_rejects_bad_events(scoreboard, body):
    resp = requests.post(f"{scoreboard.url}/v1/events", data=body, timeout=5)
    assert resp.status_code == 400 and resp.json()["error"]
    assert requests.get(f"{scoreboard.url}/v1/scoreboard", timeout=5).json()["events"] == 0


def test_scoreboard_rejects_big_bodies(scoreboard):
    payload = "x" * (1 << 20)
    body = json.dumps({"id": str(uuid.uuid4()), "type": "ship", "payload": payload}).encode()
    assert requests.post(f"{scoreboard.url}/v1/events", data=body, timeout=10).status_code == 413
    health = requests.get(f"{scoreboard.url}/health", timeout=5).json()
    assert health == {"ok": True, "db": str(scoreboard.db)}


def test_scoreboard_uses_a_db_replaced_while_stopped(scoreboard, spawn, tmp_path):
    requests.post(f"{scoreboard.url}/v1/events", json={"id": str(uuid.uuid4()), "type": "ship"}, timeout=5)
    scoreboard.proc.send_signal(signal.SIGTERM)
    assert scoreboard.proc.wait(10) == 0
    restored = tmp_path / "restored.db"
    with sqlite3.connect(restored) as conn:  # a restore: another file, not in WAL mode
        conn.execute("CREATE TABLE events(id TEXT PRIMARY KEY, type TEXT NOT NULL, tenant TEXT, payload TEXT "
                     "NOT NULL, score_delta INTEGER NOT NULL, created_at TEXT NOT NULL, received_at TEXT NOT "
                     "NULL, received_by TEXT NOT NULL)")
        conn.executemany("INSERT INTO events VALUES (?, 'complete', NULL, '{}', 5, 't', 't', 'standby')",
                         [(str(uuid.uuid4()),), (str(uuid.uuid4()),)])
    for suffix in ("-wal", "-shm"):
        Path(f"{scoreboard.db}{suffix}").unlink(missing_ok=True)
    os.replace(restored, scoreboard.db)
    spawn("scoreboard.py", *scoreboard.args)
    board = wait_for(lambda: requests.get(f"{scoreboard.url}/v1/scoreboard", timeout=2).json())
    assert (board["score"], board["events"]) == (10, 2)


# --- the lab's model server (the real gateways' model provider) ------------------------------------


@pytest.fixture
def model_server(tmp_path):
    """lab/model_server.py in-process on loopback; 127.0.0.1 is named "standby"."""
    from lab.model_server import Server

    log = tmp_path / "model.jsonl"
    server = Server(("127.0.0.1", 0), {"127.0.0.1": "standby"}, str(log))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", log
    server.shutdown()
    server.server_close()


def test_model_server_answers_deterministically_and_names_the_gateway(model_server):
    url, log = model_server
    request = {"model": "wirebot-lab-model", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>> x "
                                      "<<<END_OPENCLAW_INTERNAL_CONTEXT>>> are you up?"}]}]}
    first = requests.post(f"{url}/v1/chat/completions", json=request, timeout=5)
    second = requests.post(f"{url}/v1/chat/completions", json=request, timeout=5).json()
    body = first.json()
    assert first.status_code == 200 and body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    (choice,) = body["choices"]
    assert choice["message"] == {"role": "assistant",
                                 "content": "Wirebot lab model, via the standby gateway: are you up?"}
    assert second["choices"] == body["choices"] and second["id"] == body["id"]
    assert [json.loads(line)["host"] for line in log.read_text().splitlines()] == ["standby", "standby"]
    models = requests.get(f"{url}/v1/models", timeout=5).json()
    assert [m["id"] for m in models["data"]] == ["wirebot-lab-model"]


def test_model_server_streams_server_sent_events(model_server):
    url, _ = model_server
    request = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hello"}]}
    resp = requests.post(f"{url}/v1/chat/completions", json=request, timeout=5)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "text/event-stream"
    events = [line[len("data: "):] for line in resp.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "Wirebot lab model, via the standby gateway: hello"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("body", [b"{oops", b"{}", json.dumps({"model": "m", "messages": []}).encode(),
                                  json.dumps({"model": "m", "messages": [{"content": "x"}]}).encode()])
def test_model_server_rejects_malformed_chat(model_server, body):
    url, _ = model_server
    resp = requests.post(f"{url}/v1/chat/completions", data=body, timeout=5)
    assert resp.status_code == 400 and resp.json()["error"]["message"]


# --- cloudflared ------------------------------------------------------------------------------------


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
    return subprocess.run([sys.executable, str(STANDINS / "cloudflared.py"), *map(str, args)], text=True,
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

    return wait_for(check)


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
    wait_for(lambda: lab.edge.current())
    assert [h["reason"] for h in lab.edge.history()] == ["deregistered", None]
    lab.servers.stop()
    assert wait_ready(lab, 503)["readyConnections"] == 0
    lab.proc.send_signal(signal.SIGTERM)
    assert lab.proc.wait(10) == 0

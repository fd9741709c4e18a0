"""The edge (lab/edge.py) in-process on loopback: registration, routing, expiry, the API and overlaps."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
import requests

from lab import settings
from lab.edge import Edge, EdgeServers
from lab.loopback import free_port
from tasks.core.wait import wait_for

HOST = "wins.wirebot.chat"
UNKNOWN_TUNNEL = "0a1b2c3d-0000-4000-8000-0000000000ff"  # made up, like the lab's own
# origin_ip values are labels the edge records; all traffic goes to loopback origin URLs
PRIMARY, STANDBY, OTHER = settings.address("primary"), settings.address("standby"), "10.213.0.9"


def edge_config() -> dict:
    tunnel = {"account_tag": settings.ACCOUNT_TAG, "secret": settings.TUNNEL_SECRET,
              "hostnames": [HOST, "api.wirebot.chat"]}
    return {"api_token": settings.EDGE_API_TOKEN, "tunnels": {settings.TUNNEL_ID: tunnel}}




class OriginHandler(BaseHTTPRequestHandler):
    """Answers with JSON describing the request and the origin's name."""

    def log_message(self, *args) -> None:
        pass

    def answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        data = json.dumps({"origin": self.server.name, "method": self.command, "path": self.path,
                           "host": self.headers.get("Host"), "body": body.decode(),
                           "cf_ray": self.headers.get("Cf-Ray")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = answer


@pytest.fixture
def make_edge():
    """Factory: an edge on 127.0.0.1 ephemeral ports; stopped after the test."""
    started = []

    def make(expiry: float = 5.0):
        servers = EdgeServers(Edge(edge_config(), expiry=expiry), "127.0.0.1", 0, 0).start()
        started.append(servers)
        public, control = servers.ports
        return SimpleNamespace(edge=servers.edge, public=f"http://127.0.0.1:{public}",
                               control=f"http://127.0.0.1:{control}")

    yield make
    for servers in started:
        servers.stop()


@pytest.fixture
def origin():
    """Factory: a tiny HTTP origin on loopback; returns its URL."""
    servers = []

    def make(name: str) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), OriginHandler)
        server.daemon_threads, server.name = True, name
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


def register(lab, cid: str, origin_ip: str, origin_url: str, **override) -> requests.Response:
    body = {"tunnel_id": settings.TUNNEL_ID, "account_tag": settings.ACCOUNT_TAG,
            "tunnel_secret": settings.TUNNEL_SECRET, "connector_id": cid, "origin_ip": origin_ip,
            "origin_url": origin_url, "version": "test", "arch": "linux_x86_64", **override}
    return requests.post(f"{lab.control}/connectors", json=body, timeout=5)


def public_get(lab, path: str = "/", host: str = HOST) -> requests.Response:
    return requests.get(f"{lab.public}{path}", headers={"Host": host}, timeout=5)


def connectors(lab) -> list:
    return requests.get(f"{lab.control}/lab/connectors", timeout=5).json()


def test_requests_spread_over_all_connectors(make_edge, origin):
    lab = make_edge()
    for name, ip in (("a", PRIMARY), ("b", STANDBY), ("c", OTHER)):
        assert register(lab, f"conn-{name}", ip, origin(name)).status_code == 201
    served = {}
    for i in range(200):
        resp = public_get(lab, f"/v1/scoreboard?n={i}")
        assert resp.status_code == 200
        assert resp.headers["Cf-Ray"].endswith("-LAB")
        body = resp.json()
        assert body["host"] == HOST and body["path"] == f"/v1/scoreboard?n={i}"
        served[body["origin"]] = served.get(body["origin"], 0) + 1
        assert resp.headers["X-Lab-Origin"] == {"a": PRIMARY, "b": STANDBY, "c": OTHER}[body["origin"]]
    assert set(served) == {"a", "b", "c"} and sum(served.values()) == 200


def test_body_method_and_query_are_forwarded(make_edge, origin):
    lab = make_edge()
    register(lab, "conn-a", PRIMARY, origin("a"))
    resp = requests.post(f"{lab.public}/v1/events?x=1", data=b'{"k": 1}',
                         headers={"Host": f"{HOST}:80", "Content-Type": "application/json"}, timeout=5)
    body = resp.json()
    assert (resp.status_code, body["method"], body["path"], body["body"]) == (200, "POST", "/v1/events?x=1",
                                                                              '{"k": 1}')
    assert body["cf_ray"] == resp.headers["Cf-Ray"]


def test_no_connector_is_530_error_1033_and_unknown_host_is_530_1016(make_edge):
    lab = make_edge()
    resp = public_get(lab)
    assert resp.status_code == 530 and "1033" in resp.text
    resp = public_get(lab, host="nowhere.example.org")
    assert resp.status_code == 530 and "1016" in resp.text


def test_unreachable_connector_is_502_and_logged(make_edge):
    lab = make_edge()
    register(lab, "conn-dead", PRIMARY, f"http://127.0.0.1:{free_port()}")
    resp = public_get(lab, "/x")
    assert resp.status_code == 502 and "Error 502 Bad gateway" in resp.text
    log = requests.get(f"{lab.control}/lab/requests", timeout=5).json()
    assert [(e["status"], e["connector_id"]) for e in log] == [(502, "conn-dead")]


def test_silent_connector_expires_within_expiry(make_edge, origin):
    lab = make_edge(expiry=0.5)
    url = origin("a")
    t0 = time.monotonic()
    register(lab, "alive", PRIMARY, url)
    register(lab, "silent", STANDBY, url)
    stop = threading.Event()

    def keep_alive():
        while not stop.wait(0.1):
            requests.post(f"{lab.control}/connectors/alive/keepalive", timeout=5).raise_for_status()

    pinger = threading.Thread(target=keep_alive, daemon=True)
    pinger.start()
    try:
        wait_for(lambda: [c["connector_id"] for c in connectors(lab)] == ["alive"], timeout=3)
        assert time.monotonic() - t0 >= 0.45
        time.sleep(0.7)  # longer than the expiry: the connector with keepalives stays
        assert [c["connector_id"] for c in connectors(lab)] == ["alive"]
    finally:
        stop.set()
        pinger.join()
    assert requests.post(f"{lab.control}/connectors/silent/keepalive", timeout=5).status_code == 404
    history = requests.get(f"{lab.control}/lab/history", timeout=5).json()
    assert [(h["connector_id"], h["reason"]) for h in history if h["closed_at"]] == [("silent", "expired")]


def test_delete_deregisters_at_once(make_edge, origin):
    lab = make_edge()
    register(lab, "conn-a", PRIMARY, origin("a"))
    assert public_get(lab).status_code == 200
    assert requests.delete(f"{lab.control}/connectors/conn-a", timeout=5).status_code == 204
    assert connectors(lab) == []
    assert public_get(lab).status_code == 530
    history = requests.get(f"{lab.control}/lab/history", timeout=5).json()
    assert [(h["connector_id"], h["reason"]) for h in history] == [("conn-a", "deregistered")]
    assert requests.delete(f"{lab.control}/connectors/conn-a", timeout=5).status_code == 404


def test_reregistration_replaces_the_connection(make_edge, origin):
    lab = make_edge()
    url = origin("a")
    register(lab, "conn-a", PRIMARY, url)
    register(lab, "conn-a", PRIMARY, url)
    assert len(connectors(lab)) == 1
    history = requests.get(f"{lab.control}/lab/history", timeout=5).json()
    assert [h["reason"] for h in history] == ["reregistered", None]


@pytest.mark.parametrize("override, status", [
    ({"tunnel_secret": "d3Jvbmc="}, 401),
    ({"tunnel_id": UNKNOWN_TUNNEL}, 401),
    ({"account_tag": "someone-else"}, 403),
    ({"connector_id": None}, 400),
])
def test_bad_credentials_are_rejected(make_edge, override, status):
    lab = make_edge()
    resp = register(lab, "conn-x", PRIMARY, "http://127.0.0.1:9", **override)
    assert resp.status_code == status and resp.json()["error"]
    assert connectors(lab) == []


def test_malformed_registration_is_400(make_edge):
    lab = make_edge()
    assert requests.post(f"{lab.control}/connectors", data=b"{not json", timeout=5).status_code == 400


def api_url(lab, account=settings.ACCOUNT_TAG, tunnel=settings.TUNNEL_ID) -> str:
    return f"{lab.control}/client/v4/accounts/{account}/cfd_tunnel/{tunnel}/connections"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": settings.EDGE_API_TOKEN}])
def test_api_needs_the_token(make_edge, headers):
    lab = make_edge()
    resp = requests.get(api_url(lab), headers=headers, timeout=5)
    assert resp.status_code == 403
    assert resp.json() == {"success": False, "errors": [{"code": 10000, "message": "Authentication error"}],
                           "messages": [], "result": None}


def test_api_lists_connections_like_cloudflare(make_edge, origin):
    lab = make_edge()
    auth = {"Authorization": f"Bearer {settings.EDGE_API_TOKEN}"}
    empty = requests.get(api_url(lab), headers=auth, timeout=5).json()
    assert empty == {"success": True, "errors": [], "messages": [], "result": []}
    register(lab, "conn-a", PRIMARY, origin("a"))
    body = requests.get(api_url(lab), headers=auth, timeout=5).json()
    assert body["success"] is True and len(body["result"]) == 1
    client = body["result"][0]
    assert {"id", "arch", "version", "run_at", "features", "config_version", "conns"} <= set(client)
    assert (client["id"], client["arch"], client["version"]) == ("conn-a", "linux_x86_64", "test")
    (conn,) = client["conns"]
    assert conn["origin_ip"] == PRIMARY and conn["client_id"] == "conn-a" and conn["colo_name"] == "lab"
    assert conn["is_pending_reconnect"] is False and conn["opened_at"].endswith("Z")
    assert conn["uuid"] == conn["id"]
    missing = requests.get(api_url(lab, tunnel=UNKNOWN_TUNNEL), headers=auth, timeout=5)
    assert missing.status_code == 404 and missing.json()["success"] is False


def overlaps(lab, since: float = 0) -> list:
    return requests.get(f"{lab.control}/lab/overlaps", params={"since": since}, timeout=5).json()


def test_two_origins_at_once_is_one_overlap(make_edge, origin):
    lab = make_edge()
    url = origin("a")
    register(lab, "p", PRIMARY, url)
    register(lab, "s", STANDBY, url)
    requests.delete(f"{lab.control}/connectors/s", timeout=5)
    (window,) = overlaps(lab)
    assert window["origin_ips"] == sorted([PRIMARY, STANDBY]) and window["connector_ids"] == ["p", "s"]
    assert window["tunnel_id"] == settings.TUNNEL_ID and window["end"] >= window["start"]
    assert overlaps(lab, since=window["end"] + 1) == []


def test_ongoing_overlap_has_no_end(make_edge, origin):
    lab = make_edge()
    url = origin("a")
    register(lab, "p", PRIMARY, url)
    register(lab, "s", STANDBY, url)
    (window,) = overlaps(lab, since=time.time() + 100)
    assert window["end"] is None


def test_sequential_origins_and_same_origin_twice_are_no_overlap(make_edge, origin):
    lab = make_edge()
    url = origin("a")
    register(lab, "p", PRIMARY, url)
    requests.delete(f"{lab.control}/connectors/p", timeout=5)
    register(lab, "s", STANDBY, url)
    register(lab, "s2", STANDBY, url)  # two connectors of one host are not a split brain
    requests.delete(f"{lab.control}/connectors/s", timeout=5)
    assert overlaps(lab) == []


def test_reset_keeps_live_connectors(make_edge, origin):
    lab = make_edge()
    url = origin("a")
    register(lab, "p", PRIMARY, url)
    register(lab, "old", STANDBY, url)
    requests.delete(f"{lab.control}/connectors/old", timeout=5)
    public_get(lab)
    assert requests.post(f"{lab.control}/lab/reset", timeout=5).status_code == 200
    history = requests.get(f"{lab.control}/lab/history", timeout=5).json()
    assert [h["connector_id"] for h in history] == ["p"]
    assert requests.get(f"{lab.control}/lab/requests", timeout=5).json() == []
    register(lab, "s", STANDBY, url)
    assert len(overlaps(lab)) == 1


def test_request_log_records_the_origin(make_edge, origin):
    lab = make_edge()
    register(lab, "conn-a", PRIMARY, origin("a"))
    t0 = time.time()
    public_get(lab, "/health")
    public_get(lab, host="api.wirebot.chat")
    entries = requests.get(f"{lab.control}/lab/requests", params={"since": t0}, timeout=5).json()
    fields = ("host", "method", "path", "status", "connector_id", "origin_ip")
    assert [tuple(e[f] for f in fields) for e in entries] == [
        (HOST, "GET", "/health", 200, "conn-a", PRIMARY),
        ("api.wirebot.chat", "GET", "/", 200, "conn-a", PRIMARY)]
    assert all(e["ts"] >= t0 for e in entries)
    later = {"since": time.time() + 10}
    assert requests.get(f"{lab.control}/lab/requests", params=later, timeout=5).json() == []


def test_log_file_gets_json_lines(tmp_path, origin):
    log = tmp_path / "edge.jsonl"
    servers = EdgeServers(Edge(edge_config(), expiry=5, log_path=str(log)), "127.0.0.1", 0, 0).start()
    try:
        lab = SimpleNamespace(public=f"http://127.0.0.1:{servers.ports[0]}",
                              control=f"http://127.0.0.1:{servers.ports[1]}")
        register(lab, "conn-a", PRIMARY, origin("a"))
        public_get(lab)
    finally:
        servers.stop()
    kinds = [json.loads(line)["kind"] for line in log.read_text().splitlines()]
    assert kinds == ["connector", "request"]


def webhooks(lab, since: float = 0) -> list:
    return requests.get(f"{lab.control}/lab/webhooks", params={"since": since}, timeout=5).json()


def test_webhook_receiver_records_alerts_like_discord(make_edge):
    lab = make_edge()
    t0 = time.time()
    url = f"{lab.control}/lab/webhook/wirebot"
    resp = requests.post(url, json={"content": "[wirebot standby] activated: standby is ACTIVE"}, timeout=5)
    assert resp.status_code == 204  # what Discord answers without ?wait=true
    assert requests.post(url, data=b"{not json", timeout=5).status_code == 400
    assert requests.post(url, data=b"x" * (64 * 1024 + 1), timeout=5).status_code == 413
    (hook,) = webhooks(lab, since=t0)
    assert hook["name"] == "wirebot" and hook["ts"] >= t0
    assert hook["body"] == {"content": "[wirebot standby] activated: standby is ACTIVE"}
    assert webhooks(lab, since=time.time() + 10) == []
    assert requests.post(f"{lab.control}/lab/webhook/../x", json={}, timeout=5).status_code == 404
    requests.post(f"{lab.control}/lab/reset", timeout=5)
    assert webhooks(lab) == []

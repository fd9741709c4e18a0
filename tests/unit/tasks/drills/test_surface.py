"""The drill's synthetic surface against a loopback hub: the lab's scoreboard stand-in on 127.0.0.1 behind
a switchable gate that plays the edge (forward, Cloudflare's 530, a dropped connection, a lost ack)."""

import http.client
import random
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tasks.drills import report
from tasks.drills.surface import ERROR, OFFLINE, ONLINE, Backoff, Hub, Surface, classify

ROOT = Path(__file__).resolve().parents[4]
HOST = "api.wirebot.chat"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def scoreboard(tmp_path):
    """The lab's scoreboard stand-in on 127.0.0.1 with a tmp database: (port, db path)."""
    port, db = free_port(), tmp_path / "hub" / "events.db"
    log = open(tmp_path / "scoreboard.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, str(ROOT / "lab/standins/scoreboard.py"), "--bind", "127.0.0.1",
                             "--port", str(port), "--db", str(db), "--tenants", str(tmp_path / "hub" / "t"),
                             "--name", "loopback-hub"], stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline and proc.poll() is None, "scoreboard stand-in did not start"
            time.sleep(0.05)
    yield port, db
    proc.terminate()
    proc.wait(10)
    log.close()


class Gate:
    """The edge in front of the hub: mode "forward" | "530" | "drop" (close, no answer) | "lose-ack"
    (forward, then close without answering) | "400"; `posts` counts the POSTs it saw."""

    def __init__(self, hub_port: int):
        gate = self
        self.mode, self.posts, self.hub_port = "forward", 0, hub_port

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                gate.posts += 1
                body = self.rfile.read(int(self.headers["Content-Length"]))
                mode = gate.mode
                if mode in ("forward", "lose-ack"):
                    conn = http.client.HTTPConnection("127.0.0.1", gate.hub_port, timeout=5)
                    conn.request("POST", self.path, body, {"Content-Type": "application/json"})
                    answer = conn.getresponse()
                    status, data = answer.status, answer.read()
                    conn.close()
                    if mode == "forward":
                        return self._reply(status, data)
                if mode in ("drop", "lose-ack"):
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return None
                if mode == "530":
                    return self._reply(530, b"error code: 1033")
                return self._reply(400, b'{"error": "bad event"}')

            def _reply(self, status, data):
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gate(scoreboard):
    g = Gate(scoreboard[0])
    g.db = scoreboard[1]
    yield g
    g.close()


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


def hub_ids(db) -> list:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM events")]


def make(tmp_path, gate, **kwargs) -> Surface:
    hub = Hub(gate.url, host_header=HOST, timeout=5)
    return Surface(str(tmp_path / "surface.db"), hub, tag="drill-test", rng=random.Random(7), **kwargs)


def test_events_are_written_locally_first_then_acknowledged(tmp_path, gate):
    surface = make(tmp_path, gate, clock=Clock())
    gate.mode = "530"
    eid = surface.create_event()
    assert surface.event(eid)["synced_at"] is None and surface.queued() == 1  # stored before any POST
    assert gate.posts == 0
    gate.mode = "forward"
    assert surface.sync_once() == 1
    assert surface.event(eid)["synced_at"] is not None and surface.queued() == 0
    assert surface.state == ONLINE and hub_ids(gate.db) == [eid]
    assert len(eid) == 36 and eid[14] == "4"  # UUID v4


def test_offline_queues_then_drains_in_order_with_transitions(tmp_path, gate):
    clock = Clock()
    surface = make(tmp_path, gate, clock=clock, batch=3)
    surface.create_event()
    surface.sync_once()
    gate.mode = "530"
    ids = [surface.create_event() for _ in range(7)]
    assert surface.sync_once() == 0
    assert surface.state == OFFLINE and surface.queued() == 7
    assert surface.sync_once() == 0 and gate.posts == 2  # backing off: no POST before next_try
    gate.mode = "forward"
    clock.now = surface.next_try
    assert surface.sync_once() == 3 and surface.state == "syncing"
    while surface.queued():
        surface.sync_once()
    assert surface.state == ONLINE
    assert [t["state"] for t in surface.transitions()] == ["offline", "online", "offline", "syncing", "online"]
    assert set(ids) <= set(hub_ids(gate.db))
    with sqlite3.connect(gate.db) as conn:  # drained in creation order
        order = [r[0] for r in conn.execute("SELECT id FROM events ORDER BY rowid")]
    assert order[1:] == ids


def test_a_dropped_connection_is_offline(tmp_path, gate):
    surface = make(tmp_path, gate, clock=Clock())
    gate.mode = "drop"
    surface.create_event()
    surface.sync_once()
    assert surface.state == OFFLINE and surface.queued() == 1


def test_backoff_is_exponential_and_capped():
    rng = random.Random(1)
    exact = Backoff(base=0.5, cap=4.0, jitter=0.0)
    assert [exact.delay(n, rng) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    jittered = Backoff(base=0.5, cap=4.0, jitter=0.5)
    delays = [jittered.delay(n, rng) for n in range(1, 200)]
    assert max(delays) <= 4.0 and min(delays[5:]) >= 2.0
    assert len({round(d, 6) for d in delays[5:]}) > 100  # jitter spreads retries


def test_surface_backoff_grows_to_the_cap_and_resets(tmp_path, gate):
    clock = Clock()
    surface = make(tmp_path, gate, clock=clock, backoff=Backoff(base=0.25, cap=2.0, jitter=0.0))
    gate.mode = "530"
    surface.create_event()
    for _ in range(8):
        clock.now = max(clock.now, surface.next_try)
        surface.sync_once()
    assert surface.delays == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    gate.mode = "forward"
    clock.now = surface.next_try
    surface.sync_once()
    assert surface.failures == 0 and surface.state == ONLINE


def test_a_retried_post_never_doubles(tmp_path, gate):
    """The ack is lost after the hub stored the event: the retry carries the same UUID, the hub answers
    200 duplicate, the surface marks it synced, and the hub holds it once."""
    clock = Clock()
    surface = make(tmp_path, gate, clock=clock)
    gate.mode = "lose-ack"
    eid = surface.create_event()
    surface.sync_once()
    assert surface.state == OFFLINE and hub_ids(gate.db) == [eid]
    gate.mode = "forward"
    clock.now = surface.next_try
    assert surface.sync_once() == 1
    assert surface.event(eid)["attempts"] == 2 and surface.queued() == 0
    assert report.verdict(surface.event_ids(), hub_ids(gate.db))["exactly_once"]


def test_a_refused_event_is_an_error_not_offline(tmp_path, gate):
    surface = make(tmp_path, gate, clock=Clock())
    gate.mode = "400"
    surface.create_event()
    surface.sync_once()
    assert surface.state == ERROR and surface.queued() == 1


def test_an_answer_that_is_not_an_ack():
    eid = "7d0e5f5c-2c43-4b6e-9a35-3f7b1b7e0a11"
    assert classify(201, b'{"id": "7D0E5F5C-2C43-4B6E-9A35-3F7B1B7E0A11"}', eid)[0] == "ack"
    assert classify(200, b'{"id": "00000000-0000-4000-8000-000000000000"}', eid)[0] == "unreachable"
    assert classify(200, b"<html>captive portal</html>", eid)[0] == "unreachable"
    assert classify(530, b"error code: 1033", eid)[0] == "unreachable"
    assert classify(404, b"", eid)[0] == "rejected"


def test_background_thread_through_an_outage(tmp_path, gate):
    """Real clock: events at a steady rate before, during and after an outage; all arrive exactly once."""
    surface = make(tmp_path, gate, rate=40.0, backoff=Backoff(base=0.05, cap=0.2, jitter=0.5)).start()
    assert surface.wait_for(lambda s: s.stats()["synced"] >= 5, timeout=10)
    gate.mode = "530"
    assert surface.wait_for(lambda s: s.state == OFFLINE, timeout=10)
    outage_started = time.time()
    assert surface.wait_for(lambda s: s.queued() >= 10, timeout=10)
    gate.mode = "forward"
    assert surface.wait_for(lambda s: s.state == ONLINE, timeout=10)
    time.sleep(0.3)
    assert surface.finish(timeout=10)
    during = surface.event_ids(created_after=outage_started)
    assert len(during) >= 10
    result = report.verdict(surface.event_ids(), hub_ids(gate.db))
    print(surface.stats(), result)
    assert result["exactly_once"] and result["created"] == surface.stats()["created"]
    assert surface.stats()["max_backoff_seconds"] <= 0.2
    states = [t["state"] for t in surface.transitions()]
    assert states[:3] == ["offline", "online", "offline"] and states[-1] == "online"
    surface.close()


def test_every_nth_generated_event_is_a_tenants_and_the_record_header_names_who_served(tmp_path, scoreboard):
    """The lab's playbook tests drive this surface too: tenant events reach the tenant's database, and the
    value of an answer header (the lab edge's origin; here the stand-in's Server header) is kept per ack."""
    port, db = scoreboard
    hub = Hub(f"http://127.0.0.1:{port}", HOST, timeout=5, record_header="Server")
    with Surface(str(tmp_path / "surface.db"), hub, tag="t", rate=50, tenant="acme", tenant_every=3) as surface:
        surface.start()
        assert surface.wait_for(lambda s: s.stats()["synced"] >= 7, timeout=10)
        assert surface.finish(timeout=10)
        acked, tenant_ids = surface.acknowledged(), surface.event_ids(tenant="acme")
        assert list(acked) == surface.event_ids() and len(acked) >= 7
        assert tenant_ids == surface.event_ids()[::3]  # the 1st, 4th, 7th ... generated event
        assert all(served.startswith("wirebot-scoreboard-lab") for served in acked.values())
        assert surface.event(tenant_ids[0])["tenant"] == "acme" and surface.event(surface.event_ids()[1])["tenant"] \
            is None
    with sqlite3.connect(db.parent / "t" / "acme.db") as conn:
        assert sorted(r[0] for r in conn.execute("SELECT id FROM events")) == sorted(tenant_ids)
    assert sorted(hub_ids(db)) == sorted(acked)


def test_without_a_record_header_nothing_is_recorded_and_tenant_needs_its_period(tmp_path, gate):
    surface = make(tmp_path, gate, clock=Clock())
    surface.create_event()
    surface.sync_once()
    assert list(surface.acknowledged().values()) == [None]
    with pytest.raises(ValueError, match="tenant and tenant_every"):
        make(tmp_path, gate, tenant="acme")


def test_a_store_from_before_the_tenant_columns_is_upgraded(tmp_path, gate):
    path = tmp_path / "surface.db"
    with sqlite3.connect(path) as conn:  # the schema as the drill made it before
        conn.executescript("CREATE TABLE events(id TEXT PRIMARY KEY, seq INTEGER NOT NULL, type TEXT NOT NULL, "
                           "payload TEXT NOT NULL, created_at REAL NOT NULL, synced_at REAL, attempts INTEGER NOT "
                           "NULL DEFAULT 0, offline INTEGER NOT NULL DEFAULT 0);")
    surface = make(tmp_path, gate, clock=Clock())
    eid = surface.create_event(tenant="acme")
    assert surface.sync_once() == 1 and surface.event(eid)["tenant"] == "acme"

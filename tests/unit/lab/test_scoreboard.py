"""lab/standins/scoreboard.py (the Wirebot scoreboard stand-in) as a subprocess on loopback, with a temporary
directory: idempotent inserts, scores, tenant databases, refusals, a database replaced while stopped."""

import json
import os
import signal
import sqlite3
import uuid
from pathlib import Path

import pytest
import requests

from lab.loopback import free_port
from tasks.core.wait import wait_for


@pytest.fixture
def scoreboard(spawn, tmp_path):
    port, db, tenants = free_port(), tmp_path / "sb" / "events.db", tmp_path / "sb" / "tenants"
    args = ("--bind", "127.0.0.1", "--port", port, "--db", db, "--tenants", tenants, "--name", "lab-primary")
    proc = spawn("scoreboard.py", *args)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: requests.get(f"{url}/health", timeout=2).ok, 10, 0.05, "the scoreboard's /health",
             ignore=(requests.ConnectionError,))

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
    board = wait_for(lambda: requests.get(f"{scoreboard.url}/v1/scoreboard", timeout=2).json(), 10, 0.05,
                     "the restarted scoreboard", ignore=(requests.ConnectionError,))
    assert (board["score"], board["events"]) == (10, 2)

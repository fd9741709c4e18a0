#!/usr/bin/python3
"""Scoreboard stand-in for the Wirebot lab: a UUID-keyed, idempotent event store on SQLite (WAL).

Endpoints:
  POST /v1/events       {"id": UUID, "type": str, "tenant"?: [a-z0-9-]{1,64}, "payload"?: any,
                         "created_at"?: str} -> 201 {"id", "duplicate": false, "score_delta"} when new,
                         200 {"id", "duplicate": true} when the id is already stored (insert-or-ignore);
                         with a tenant the event also goes into TENANTS/<tenant>.db (same schema).
                         Bad JSON, missing/invalid id, type or tenant -> 400; body over 1 MiB -> 413.
  GET  /v1/scoreboard[?tenant=T]    {"score": sum of score_delta, "events": count, "host": NAME}
  GET  /v1/events?limit=N[&tenant=T] the N (default 50, max 1000) most recently received events
  GET  /health                      {"ok": true, "db": path}
Ids are stored in canonical lowercase UUID form. Score delta by type: ship 10, complete 5, intent 2,
anything else 1. The database is opened per request, so a database replaced on disk (a restore or a
failback merge) is what the next request sees: no restart or reload is needed.
Standard library only; runs as a single file on the lab hosts.
"""

import argparse
import json
import os
import re
import signal
import socket
import sqlite3
import sys
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MAX_BODY = 1 << 20
DRAIN_LIMIT = 8 << 20  # larger bodies are not read: the connection is closed after the 413
TENANT = re.compile(r"[a-z0-9-]{1,64}")
SCORES = {"ship": 10, "complete": 5, "intent": 2}
SCHEMA = """CREATE TABLE IF NOT EXISTS events(
    id TEXT PRIMARY KEY, type TEXT NOT NULL, tenant TEXT, payload TEXT NOT NULL,
    score_delta INTEGER NOT NULL, created_at TEXT NOT NULL, received_at TEXT NOT NULL,
    received_by TEXT NOT NULL)"""
COLUMNS = ("id", "type", "tenant", "payload", "score_delta", "created_at", "received_at", "received_by")


def score_delta(event_type: str) -> int:
    return SCORES.get(event_type, 1)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def connect(path: str) -> sqlite3.Connection:
    """Open `path` in WAL mode with the events table present."""
    db = sqlite3.connect(path, timeout=10)
    db.execute("PRAGMA busy_timeout=10000")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(SCHEMA)
    return db


def validate(event) -> str:
    """Why `event` cannot be stored, or "" when it can."""
    if not isinstance(event, dict):
        return "body must be a JSON object"
    if not isinstance(event.get("id"), str):
        return "'id' (a UUID string) is required"
    try:
        uuid.UUID(event["id"])
    except ValueError:
        return f"'id' is not a UUID: {event['id'][:64]!r}"
    if not isinstance(event.get("type"), str) or not 0 < len(event["type"]) <= 64:
        return "'type' must be a string of 1-64 characters"
    tenant = event.get("tenant")
    if tenant is not None and not (isinstance(tenant, str) and TENANT.fullmatch(tenant)):
        return "'tenant' must match [a-z0-9-]{1,64}"
    created = event.get("created_at")
    if created is not None and not (isinstance(created, str) and len(created) <= 64):
        return "'created_at' must be a string"
    return ""


class Store:
    """The main database and the tenant databases, opened per call."""

    def __init__(self, db_path: str, tenants_dir: str, name: str):
        self.db_path, self.tenants_dir, self.name = db_path, tenants_dir, name

    def tenant_path(self, tenant: str) -> str:
        return os.path.join(self.tenants_dir, f"{tenant}.db")

    def add(self, event: dict) -> tuple:
        """Store a validated event idempotently; return (status, reply)."""
        eid = str(uuid.UUID(event["id"]))
        row = (eid, event["type"], event.get("tenant"), json.dumps(event.get("payload", {})),
               score_delta(event["type"]), event.get("created_at") or utc_now(), utc_now(), self.name)
        sql = f"INSERT OR IGNORE INTO events({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        paths = [self.db_path] + ([self.tenant_path(event["tenant"])] if event.get("tenant") else [])
        inserted = []
        for path in paths:  # the tenant insert runs even for a duplicate: it repairs a half-done earlier try
            db = connect(path)
            try:
                with db:
                    inserted.append(db.execute(sql, row).rowcount == 1)
            finally:
                db.close()
        if inserted[0]:
            return 201, {"id": eid, "duplicate": False, "score_delta": row[4]}
        return 200, {"id": eid, "duplicate": True}

    def open_for_read(self, tenant):
        if tenant is None:
            return connect(self.db_path)
        if not TENANT.fullmatch(tenant):
            raise ValueError("'tenant' must match [a-z0-9-]{1,64}")
        if not os.path.exists(self.tenant_path(tenant)):
            raise LookupError(f"no such tenant: {tenant}")
        return connect(self.tenant_path(tenant))

    def scoreboard(self, tenant=None) -> dict:
        db = self.open_for_read(tenant)
        try:
            score, count = db.execute("SELECT COALESCE(SUM(score_delta), 0), COUNT(*) FROM events").fetchone()
        finally:
            db.close()
        return {"score": score, "events": count, "host": self.name}

    def recent(self, limit: int, tenant=None) -> list:
        db = self.open_for_read(tenant)
        try:
            rows = db.execute(f"SELECT {', '.join(COLUMNS)} FROM events "
                              "ORDER BY received_at DESC, rowid DESC LIMIT ?", (limit,)).fetchall()
        finally:
            db.close()
        events = [dict(zip(COLUMNS, r)) for r in rows]
        for e in events:
            e["payload"] = json.loads(e["payload"])
        return events


class Handler(BaseHTTPRequestHandler):
    """HTTP front of `self.server.store`."""

    server_version = "wirebot-scoreboard-lab"

    def log_message(self, fmt, *args) -> None:
        sys.stderr.write(f"scoreboard: {self.address_string()} {fmt % args}\n")

    def reply(self, status: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        store, url = self.server.store, urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if url.path == "/health":
                connect(store.db_path).close()
                return self.reply(200, {"ok": True, "db": store.db_path})
            if url.path == "/v1/scoreboard":
                return self.reply(200, store.scoreboard(query.get("tenant")))
            if url.path == "/v1/events":
                limit = min(max(int(query.get("limit", "50")), 1), 1000)
                return self.reply(200, store.recent(limit, query.get("tenant")))
        except ValueError as exc:
            return self.reply(400, {"error": str(exc)})
        except LookupError as exc:
            return self.reply(404, {"error": str(exc)})
        except sqlite3.Error as exc:
            return self.reply(503, {"ok": False, "error": f"database: {exc}"})
        self.reply(404, {"error": f"no route for GET {url.path}"})

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/v1/events":
            return self.reply(404, {"error": f"no route for POST {self.path}"})
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            return self.reply(411, {"error": "send a Content-Length"})
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return self.reply(400, {"error": "bad Content-Length"})
        if length > MAX_BODY:
            if length <= DRAIN_LIMIT:
                self.rfile.read(length)
            self.close_connection = True
            return self.reply(413, {"error": f"body larger than {MAX_BODY} bytes"})
        try:
            event = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            return self.reply(400, {"error": "body is not valid JSON"})
        problem = validate(event)
        if problem:
            return self.reply(400, {"error": problem})
        try:
            self.reply(*self.server.store.add(event))
        except sqlite3.Error as exc:
            self.reply(503, {"error": f"database: {exc}"})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="scoreboard", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bind", metavar="ADDR", default="0.0.0.0",
                        help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", metavar="PORT", type=int, default=8100,
                        help="port to listen on (default: %(default)s)")
    parser.add_argument("--db", metavar="FILE", default="/data/wirebot/scoreboard/events.db",
                        help="main events database (default: %(default)s)")
    parser.add_argument("--tenants", metavar="DIR", default="/data/wirebot/scoreboard/tenants",
                        help="directory of per-tenant databases (default: %(default)s)")
    parser.add_argument("--name", metavar="NAME", default=socket.gethostname(),
                        help="host name stored as received_by and reported (default: this host's name)")
    args = parser.parse_args(argv)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(args.db)), exist_ok=True)
        os.makedirs(args.tenants, exist_ok=True)
        connect(args.db).close()
    except (OSError, sqlite3.Error) as exc:
        parser.exit(1, f"scoreboard: cannot open {args.db}: {exc}\n")
    server = ThreadingHTTPServer((args.bind, args.port), Handler)
    server.daemon_threads = True
    server.store = Store(args.db, args.tenants, args.name)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.stderr.write(f"scoreboard: {args.name} listening on {args.bind}:{server.server_address[1]}, "
                     f"db {args.db}\n")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

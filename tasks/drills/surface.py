"""A synthetic local-first surface: the seed's event sync (section 3) on a local SQLite store.

Each event gets a UUID v4 and is written locally first, together with its row in the sync queue, in one
transaction (so an event is never only in memory). The sync loop POSTs the queue in order to the hub's
public endpoint (``POST {url}/v1/events`` with ``Host: api.wirebot.chat`` when the URL is an address);
a 200/201 reply naming the event's id is the acknowledgement: the event is marked synced and leaves the
queue. Anything else leaves it queued, and the next try waits a capped exponential backoff:
``min(cap, base * 2**(failures-1))``, shortened by up to ``jitter`` (a fraction) at random. A retried
POST reuses the event's id, so the hub's UUID dedup makes retries harmless (200 "duplicate" is an ack).

The indicator follows seed section 10, and every change is recorded with its time (``transitions``):
``online`` (queue empty, last POST acknowledged), ``syncing`` (acknowledged, queue still draining),
``offline`` (hub unreachable: no connection, timeout, 5xx or Cloudflare's 52x/530) and ``error`` (the
hub refused an event with a 4xx: a bug, not an outage; the event stays queued).

`Surface.start()` runs the loop in a background thread that also creates events at a steady `rate`
(events per second) while `generating` is set; `finish(timeout)` stops creating and waits for the
queue to drain. Every `tenant_every`-th generated event carries `tenant` (the hub then also writes it to
that tenant's database). A Hub with `record_header` keeps that answer header's value with each
acknowledged event (`acknowledged()`: who served it; the lab tests name the lab edge's origin header).

The one synthetic surface: the drill (tasks/drill.py), the lab's playbook tests and the loss bench all
drive this class. Control-machine code (Python 3.11, stdlib only, so it runs under pyinfra's gevent).
"""

import json
import random
import sqlite3
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from tasks.core.wait import WaitTimeout, wait_for

ONLINE, SYNCING, OFFLINE, ERROR = "online", "syncing", "offline", "error"
ACK, UNREACHABLE, REJECTED = "ack", "unreachable", "rejected"
SCHEMA = """
CREATE TABLE IF NOT EXISTS events(id TEXT PRIMARY KEY, seq INTEGER NOT NULL, type TEXT NOT NULL,
    payload TEXT NOT NULL, created_at REAL NOT NULL, synced_at REAL, attempts INTEGER NOT NULL DEFAULT 0,
    offline INTEGER NOT NULL DEFAULT 0, tenant TEXT, served_by TEXT);
CREATE TABLE IF NOT EXISTS sync_queue(qid INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE
    REFERENCES events(id), enqueued_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT);
CREATE TABLE IF NOT EXISTS transitions(at REAL NOT NULL, state TEXT NOT NULL, detail TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff: base, cap in seconds; jitter a fraction 0..1 taken off at random."""

    base: float = 0.5
    cap: float = 5.0
    jitter: float = 0.25

    def delay(self, failures: int, rng: random.Random) -> float:
        """Seconds to wait after `failures` consecutive failures (>= 1); never more than `cap`."""
        raw = min(self.cap, self.base * 2 ** max(0, failures - 1))
        return raw * (1.0 - self.jitter * rng.random())


@dataclass(frozen=True)
class Hub:
    """Where events go: `url` (scheme://host[:port]) with an optional Host header (the lab's edge);
    `record_header`: an answer header whose value is kept with each acknowledged event ("" for none)."""

    url: str
    host_header: str = ""
    timeout: float = 3.0
    record_header: str = ""

    def post_event(self, event: dict) -> tuple:
        """(outcome, detail, recorded): ACK, UNREACHABLE or REJECTED, what happened, and the value of the
        `record_header` answer header (None when unset or absent), for one POST."""
        body = json.dumps(event).encode()
        request = urllib.request.Request(f"{self.url.rstrip('/')}/v1/events", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        if self.host_header:
            request.add_header("Host", self.host_header)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, raw, headers = response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            status, raw, headers = error.code, error.read(), error.headers
        except (OSError, ValueError) as error:  # refused, reset, timeout, DNS, a closed connection
            return UNREACHABLE, f"no answer: {error}", None
        recorded = headers.get(self.record_header) if self.record_header and headers is not None else None
        return (*classify(status, raw, event["id"]), recorded)


def classify(status: int, raw: bytes, event_id: str) -> tuple:
    """(outcome, detail) for the hub's HTTP answer `status`/`raw` to the POST of `event_id`."""
    if status in (200, 201):
        try:
            acked = str(uuid.UUID(json.loads(raw).get("id", "")))
        except (ValueError, TypeError, AttributeError):
            return UNREACHABLE, f"HTTP {status} without an acknowledgement (not the hub?)"
        if acked == str(uuid.UUID(event_id)):
            return ACK, f"HTTP {status}" + (" (duplicate)" if status == 200 else "")
        return UNREACHABLE, f"HTTP {status} acknowledged another id ({acked})"
    text = " ".join(raw[:160].decode(errors="replace").split())[:120]
    if status in (408, 425, 429) or status >= 500:
        return UNREACHABLE, f"HTTP {status}: {text}"
    return REJECTED, f"HTTP {status}: {text}"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Surface:
    """The surface's store, its indicator and its sync loop; thread-safe (one lock around the store)."""

    def __init__(self, db_path: str, hub: Hub, tag: str, rate: float = 2.0, backoff: Backoff = None,
                 event_type: str = "fire-drill", batch: int = 20, clock=time.time, rng=None,
                 tenant: str = "", tenant_every: int = 0):
        if tenant_every < 0 or bool(tenant) != bool(tenant_every):
            raise ValueError(f"Surface: give tenant and tenant_every > 0 together (not {tenant!r}, {tenant_every})")
        self.hub, self.tag, self.rate, self.backoff = hub, tag, rate, backoff or Backoff()
        self.event_type, self.batch, self.clock = event_type, batch, clock
        self.tenant, self.tenant_every = tenant, tenant_every
        self.rng = rng or random.Random()
        self.lock = threading.RLock()
        self.db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        self.db.executescript(SCHEMA)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(events)")}
        for column in ("tenant", "served_by"):  # a store made before these columns existed
            if column not in columns:
                self.db.execute(f"ALTER TABLE events ADD COLUMN {column} TEXT")
        self.state = OFFLINE  # until the hub acknowledges something
        self.failures, self.next_try = 0, 0.0
        self.generating = threading.Event()
        self.stopping = threading.Event()
        self.thread = None
        self.delays = []  # every backoff delay chosen, in order (the drill reports the largest)
        self._transition(OFFLINE, "surface started: nothing acknowledged yet")

    # --- the local store ---
    def create_event(self, event_type: str = None, extra: dict = None, tenant: str = None) -> str:
        """Write a new event (UUID v4, for `tenant` when given) and its queue row locally; returns its id.
        Never touches the hub."""
        with self.lock:
            now = self.clock()
            seq = self.db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM events").fetchone()[0]
            eid = str(uuid.uuid4())
            payload = json.dumps({"drill": self.tag, "seq": seq, **(extra or {})}, sort_keys=True)
            self.db.execute("BEGIN IMMEDIATE")
            offline = int(self.state in (OFFLINE, ERROR) and self.failures > 0)  # created during an outage
            self.db.execute("INSERT INTO events(id, seq, type, payload, created_at, offline, tenant) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (eid, seq, event_type or self.event_type, payload, now, offline, tenant or None))
            self.db.execute("INSERT INTO sync_queue(event_id, enqueued_at) VALUES (?, ?)", (eid, now))
            self.db.execute("COMMIT")
        return eid

    def queued(self) -> int:
        with self.lock:
            return self.db.execute("SELECT COUNT(*) FROM sync_queue").fetchone()[0]

    def event_ids(self, created_after: float = None, created_before: float = None, tenant: str = None) -> list:
        """Ids of the events created in [after, before) (all of them by default), only `tenant`'s when
        given, in creation order."""
        with self.lock:
            rows = self.db.execute("SELECT id FROM events WHERE created_at >= ? AND created_at < ? "
                                   "AND (? IS NULL OR tenant = ?) ORDER BY seq",
                                   (created_after or 0.0, created_before or float("inf"), tenant, tenant)).fetchall()
        return [r[0] for r in rows]

    def acknowledged(self) -> dict:
        """{event id: the hub's `record_header` value at its acknowledgement (None without one)} for every
        acknowledged event, in creation order."""
        with self.lock:
            rows = self.db.execute("SELECT id, served_by FROM events WHERE synced_at IS NOT NULL "
                                   "ORDER BY seq").fetchall()
        return dict(rows)

    def event(self, event_id: str) -> dict:
        """The local record of one event ({} when unknown)."""
        keys = ("id", "seq", "type", "payload", "created_at", "synced_at", "attempts", "tenant", "served_by")
        with self.lock:
            row = self.db.execute(f"SELECT {', '.join(keys)} FROM events WHERE id = ?", (event_id,)).fetchone()
        return dict(zip(keys, row)) if row else {}

    def transitions(self) -> list:
        """Every indicator change: [{"at": unix seconds, "state", "detail"}], oldest first."""
        with self.lock:
            rows = self.db.execute("SELECT at, state, detail FROM transitions ORDER BY rowid").fetchall()
        return [{"at": at, "state": state, "detail": detail} for at, state, detail in rows]

    def stats(self) -> dict:
        with self.lock:
            created, synced, retried, waited, attempts = self.db.execute(
                "SELECT COUNT(*), COUNT(synced_at), SUM(attempts > 1), SUM(offline OR attempts > 1), "
                "COALESCE(SUM(attempts), 0) FROM events").fetchone()
        return {"state": self.state, "created": created, "synced": synced, "queued": self.queued(),
                "retried": retried or 0, "waited": waited or 0, "posts": attempts,
                "max_backoff_seconds": round(max(self.delays or [0]), 3)}

    def _transition(self, state: str, detail: str) -> None:
        with self.lock:
            self.db.execute("INSERT INTO transitions(at, state, detail) VALUES (?, ?, ?)",
                            (self.clock(), state, detail))
            self.state = state

    # --- sync ---
    def _wire_event(self, event_id: str) -> dict:
        row = self.event(event_id)
        event = {"id": row["id"], "type": row["type"], "payload": json.loads(row["payload"]),
                 "created_at": iso(row["created_at"])}
        if row["tenant"]:
            event["tenant"] = row["tenant"]
        return event

    def sync_once(self) -> int:
        """POST up to `batch` queued events in order (unless backing off); returns how many were acked."""
        if self.clock() < self.next_try:
            return 0
        acked = 0
        for _ in range(self.batch):
            with self.lock:
                row = self.db.execute("SELECT event_id FROM sync_queue ORDER BY qid LIMIT 1").fetchone()
            if row is None:
                break
            event = self._wire_event(row[0])
            outcome, detail, recorded = self.hub.post_event(event)
            with self.lock:
                self.db.execute("UPDATE events SET attempts = attempts + 1 WHERE id = ?", (event["id"],))
                if outcome == ACK:
                    self.db.execute("BEGIN IMMEDIATE")
                    self.db.execute("UPDATE events SET synced_at = ?, served_by = ? WHERE id = ?",
                                    (self.clock(), recorded, event["id"]))
                    self.db.execute("DELETE FROM sync_queue WHERE event_id = ?", (event["id"],))
                    self.db.execute("COMMIT")
                else:
                    self.db.execute("UPDATE sync_queue SET attempts = attempts + 1, last_error = ? "
                                    "WHERE event_id = ?", (detail, event["id"]))
            if outcome != ACK:
                self.failures += 1
                delay = self.backoff.delay(self.failures, self.rng)
                self.delays.append(delay)
                self.next_try = self.clock() + delay
                state = OFFLINE if outcome == UNREACHABLE else ERROR
                if state != self.state:
                    self._transition(state, f"{detail}; {self.queued()} queued, retry in {delay:.2f}s")
                return acked
            acked += 1
            self.failures, self.next_try = 0, 0.0
        state = ONLINE if self.queued() == 0 else SYNCING
        if acked and state != self.state:
            self._transition(state, f"hub acknowledged {acked}; {self.queued()} queued")
        return acked

    # --- the background thread ---
    def start(self, generate: bool = True) -> "Surface":
        if generate:
            self.generating.set()
        self.thread = threading.Thread(target=self._loop, name="drill-surface", daemon=True)
        self.thread.start()
        return self

    def _loop(self) -> None:
        next_create, generated = self.clock(), 0
        while not self.stopping.is_set():
            now = self.clock()
            if self.generating.is_set() and self.rate > 0 and now >= next_create:
                tenant = self.tenant if self.tenant_every and generated % self.tenant_every == 0 else None
                self.create_event(tenant=tenant)  # the 1st, then every tenant_every-th: the tenant's
                generated += 1
                next_create = max(next_create + 1.0 / self.rate, now - 1.0 / self.rate)
            if self.queued():
                self.sync_once()
            wake = [self.next_try] if self.queued() else []
            if self.generating.is_set() and self.rate > 0:
                wake.append(next_create)
            pause = min(wake, default=self.clock() + 0.2) - self.clock()
            self.stopping.wait(min(max(pause, 0.01), 0.2))

    def wait_for(self, condition, timeout: float, interval: float = 0.1) -> bool:
        """Poll `condition(self)` until true (True) or `timeout` seconds pass (False)."""
        try:
            return bool(wait_for(lambda: condition(self), timeout, interval, "a surface condition"))
        except WaitTimeout:
            return False

    def __enter__(self) -> "Surface":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def finish(self, timeout: float) -> bool:
        """Stop creating events, wait up to `timeout` s for the queue to drain, stop the thread."""
        self.generating.clear()
        drained = self.wait_for(lambda s: s.queued() == 0, timeout)
        self.stop()
        return drained

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=10)

    def close(self) -> None:
        self.stop()
        with self.lock:
            self.db.close()

"""Litestream supervision: replication lag per database and a stall detector.

Lag is the age of the oldest commit on the primary that is not yet in the replica (0 when every commit
is). A commit is seen as a change of the database's ``-wal`` file (inode, size, mtime), stat'ed every
``sample_seconds`` (0.1 s); its time is the file's mtime (when SQLite wrote it, not when it was seen).
While a commit is unreplicated the same tick asks ``POST /sync`` (``wait: false``): that makes
Litestream copy the WAL into a local LTX file at once (its own WAL check runs about once a second) and
answers the local TXID, which now holds every commit seen so far, and the replicated TXID. A commit is
replicated once the replicated TXID reaches the TXID it got, at the ``last_sync_at`` that ``GET /list``
then names (the end of the replica sync that did it, when that is since the previous tick; else the
tick). So ``lag_last_seconds`` (the lag at which the latest commit was replicated) is exact to a few
milliseconds and the live ``lag_seconds`` errs high by at most a tick, at any write rate; reading it
costs nothing while the databases are idle (a stat per database per tick).
The slow poll (``poll_seconds``) still asks every database for the stall detector and the records; for a
database whose WAL was never seen change (just started) lag falls back to now - last_sync_at.

Litestream itself runs as litestream.service (systemd restarts it). This module only asks its
control socket (``socket: {enabled: true, path: ...}`` in litestream.yml), an HTTP API on a unix
socket. Verified against Litestream 0.5.17:

* ``POST /sync`` body ``{"path": DB, "wait": false}`` (optional ``"timeout": seconds``) -> 200
  ``{"status": "no_change"|"synced_local"|"synced", "path", "txid": int, "replicated_txid": int}``;
  ``wait: true`` blocks until the replica has it (status "synced"). Unknown DB -> 404
  ``{"error": "database not found: ..."}``; bad body -> 400; replica failure -> 500 ``{"error"}``.
  ``replicated_txid`` is 0 while the replica's position cannot be read.
* ``GET /list`` -> ``{"databases": [{"path", "status": "replicating"|"open"|"stopped",
  "last_sync_at": RFC 3339 with nanoseconds, omitted before the first successful replica sync}]}``.

TXIDs are JSON integers on the socket (Litestream prints them as 16 hex digits in logs and LTX file
names); ``parse_txid`` accepts both.
"""

import calendar
import glob
import http.client
import json
import os
import re
import threading
import time

from wirebot.common.httpapi import UnixConnection
from wirebot.common.log import log

COMPONENT = "litestream"


class LitestreamError(Exception):
    """The control socket is unreachable or answered an error."""


def parse_txid(value):
    """A TXID as int: JSON integers as they are, strings as hex ("000000000000000a" -> 10)."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a txid: {value!r}")
    if isinstance(value, int):
        return value
    return int(str(value), 16)


_RFC3339 = re.compile(r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?([Zz]|[+-]\d\d:\d\d)$")


def parse_time(text):
    """RFC 3339 timestamp (any number of fraction digits, as Go writes them) -> unix seconds."""
    match = _RFC3339.match(text or "")
    if not match:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    year, month, day, hour, minute, sec, frac, zone = match.groups()
    seconds = calendar.timegm((int(year), int(month), int(day), int(hour), int(minute), int(sec)))
    if frac:
        seconds += int(frac) / (10 ** len(frac))
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return float(seconds)


def _json_body(body):
    try:
        data = json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)
    except (UnicodeDecodeError, ValueError):
        raise LitestreamError(f"control socket answered non-JSON: {body[:200]!r}") from None
    if not isinstance(data, dict):
        raise LitestreamError(f"control socket answered a non-object: {data!r}")
    return data


def parse_sync(status, body):
    """``POST /sync`` answer -> {"status", "txid", "replicated_txid"}; LitestreamError on errors."""
    data = _json_body(body)
    if status != 200:
        raise LitestreamError("HTTP {}: {}".format(status, data.get("error", data)))
    try:
        return {"status": str(data.get("status", "")), "txid": parse_txid(data["txid"]),
                "replicated_txid": parse_txid(data["replicated_txid"])}
    except (KeyError, ValueError) as exc:
        raise LitestreamError(f"unexpected /sync answer {data!r}: {exc}") from None


def parse_list(status, body):
    """``GET /list`` answer -> {path: {"status", "last_sync_at": unix seconds or None}}."""
    data = _json_body(body)
    if status != 200:
        raise LitestreamError("HTTP {}: {}".format(status, data.get("error", data)))
    result = {}
    for entry in data.get("databases") or []:
        if not isinstance(entry, dict) or "path" not in entry:
            continue
        last = entry.get("last_sync_at")
        try:
            last = parse_time(last) if last else None
        except ValueError:
            last = None
        result[entry["path"]] = {"status": entry.get("status"), "last_sync_at": last}
    return result


def db_record(sync, last_sync_at, now):
    """Per-DB lag record (pure): txid, replicated_txid, lag_txids, last_sync_at and lag_seconds
    (now - last_sync_at while the replica is behind, else 0; None when behind and never synced)."""
    lag = max(0, sync["txid"] - sync["replicated_txid"])
    if lag == 0:
        lag_seconds = 0.0
    elif last_sync_at is None:
        lag_seconds = None
    else:
        lag_seconds = round(max(0.0, now - last_sync_at), 3)
    return {"txid": sync["txid"], "replicated_txid": sync["replicated_txid"], "lag_txids": lag,
            "last_sync_at": last_sync_at, "lag_seconds": lag_seconds, "sync_status": sync["status"],
            "error": None}


class CommitLag:
    """The age of the oldest unreplicated commit of one database (pure: fed with observations).

    ``committed(at)`` records a commit made at ``at`` (the WAL's mtime); ``synced(txid, replicated,
    now)`` an answer of ``POST /sync``: every commit recorded before it is in local TXID ``txid`` at the
    latest; the commits whose TXID the replica has are done. ``lag(now)`` is now - the oldest pending
    commit (0.0 when none); ``last`` the lag at which the latest commit was replicated and ``peak`` the
    largest such lag since ``take_peak()`` last read it.
    """

    def __init__(self):
        self.pending = []  # [[commit time, txid or None]], oldest first
        self.last = None
        self.peak = 0.0
        self.checked_at = None  # when synced() was last called

    def committed(self, at):
        if not self.pending or self.pending[-1][1] is not None:  # one untagged entry is enough
            self.pending.append([at, None])

    def completes(self, replicated_txid):
        """Whether an answer with this replicated TXID would complete a pending commit."""
        return any(e[1] is not None and replicated_txid is not None and e[1] <= replicated_txid
                   for e in self.pending)

    def synced(self, txid, replicated_txid, now, replicated_at=None):
        """``replicated_at``: when the replica sync that completed them ended, if known (else now)."""
        for entry in self.pending:
            if entry[1] is None:
                entry[1] = txid
        done = [e for e in self.pending if replicated_txid is not None and e[1] <= replicated_txid]
        if done:
            self.last = round(max(0.0, (replicated_at or now) - done[0][0]), 3)
            self.peak = max(self.peak, self.last)
            self.pending = [e for e in self.pending if e not in done]
        self.checked_at = now

    def lag(self, now):
        return round(max(0.0, now - self.pending[0][0]), 3) if self.pending else 0.0

    def take_peak(self, now):
        """The largest lag since the previous call (including the oldest pending commit's age)."""
        peak, self.peak = max(self.peak, self.lag(now)), 0.0
        return peak


class WalWatch:
    """Sees commits as changes of ``<db>-wal`` (inode, size, mtime). ``check()`` returns the commit's time
    (the mtime, unix seconds) when the file changed since the previous call, else None; the first call
    only takes the baseline."""

    def __init__(self, db):
        self.path = db + "-wal"
        self.seen = None

    def check(self):
        try:
            st = os.stat(self.path)
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            key, st = None, None
        first, changed = self.seen is None, key != self.seen
        self.seen = key if key is not None else ()
        if first or not changed or st is None:
            return None
        return st.st_mtime_ns / 1e9


def discover(dbs, tenant_dir):
    """The configured DBs followed by every ``*.db`` in ``tenant_dir`` (sorted, no duplicates)."""
    result = list(dbs)
    if tenant_dir:
        for path in sorted(glob.glob(os.path.join(tenant_dir, "*.db"))):
            if path not in result:
                result.append(path)
    return result


class StallDetector:
    """Alert when a DB is behind and its replicated_txid has not moved for ``stall_seconds``.

    ``observe(db, txid, replicated_txid, now)`` returns "stalled", "recovered" or None; txid None
    (the socket could not tell) counts as no progress. Progress = replicated_txid caught up with
    txid, or increased since the previous observation; the clock starts when a DB falls behind.
    """

    def __init__(self, stall_seconds):
        self.stall_seconds = float(stall_seconds)
        self._seen = {}  # db -> {"replicated": int, "progress_at": float, "stalled": bool}

    def observe(self, db, txid, replicated_txid, now):
        seen = self._seen.get(db)
        if seen is None:
            seen = self._seen[db] = {"replicated": replicated_txid, "progress_at": now,
                                     "behind": False, "stalled": False}
        caught_up = txid is not None and replicated_txid is not None and replicated_txid >= txid
        moved = (replicated_txid is not None and seen["replicated"] is not None
                 and replicated_txid > seen["replicated"])
        if replicated_txid is not None:
            seen["replicated"] = replicated_txid
        if not caught_up and not seen["behind"]:
            seen["progress_at"] = now   # the clock starts when the DB falls behind
        seen["behind"] = not caught_up
        if caught_up or moved:
            seen["progress_at"] = now
            if seen["stalled"]:
                seen["stalled"] = False
                return "recovered"
            return None
        if not seen["stalled"] and now - seen["progress_at"] >= self.stall_seconds:
            seen["stalled"] = True
            return "stalled"
        return None

    def stalled(self, db):
        return bool(self._seen.get(db, {}).get("stalled"))

    def since(self, db):
        """When ``db`` last made progress (unix seconds) or None if never observed."""
        return self._seen.get(db, {}).get("progress_at")


class ControlClient:
    """HTTP client of Litestream's control socket at ``socket_path``."""

    def __init__(self, socket_path, timeout=10.0):
        self.socket_path = socket_path
        self.timeout = timeout

    def request(self, method, path, payload=None, timeout=None):
        """(status, raw body); LitestreamError when the socket is unreachable."""
        conn = UnixConnection(self.socket_path, timeout or self.timeout)
        try:
            body = json.dumps(payload).encode() if payload is not None else None
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise LitestreamError(f"control socket {self.socket_path}: {exc}") from None
        finally:
            conn.close()

    def sync(self, db, wait=False, timeout=None):
        payload = {"path": db, "wait": bool(wait)}
        if wait and timeout:
            payload["timeout"] = int(timeout)
        return parse_sync(*self.request("POST", "/sync", payload,
                                        timeout=(timeout + 5) if wait and timeout else None))

    def list(self):
        return parse_list(*self.request("GET", "/list"))


class Monitor:
    """Polls every DB through the control socket; keeps records, alerts on stalls.

    ``state`` is "starting", "ok", "lagging" (some DB behind), "stalled" (some DB stalled) or
    "unreachable" (the socket did not answer).
    """

    def __init__(self, client, dbs, tenant_dir, stall_seconds, alerter=None, sample_seconds=0.1):
        self.client = client
        self.sample_seconds = sample_seconds  # WAL check period: the lag's resolution
        self.lags = {}    # db -> CommitLag
        self.watches = {}  # db -> WalWatch
        self.dbs = list(dbs)
        self.tenant_dir = tenant_dir
        self.detector = StallDetector(stall_seconds)
        self.alerter = alerter
        self.records = {}
        self.state = "starting"
        self.reason = "not polled yet"
        self._lock = threading.Lock()
        self._force = threading.Event()

    def request_sync(self):
        """Ask the next poll to sync with wait=true (POST /trigger-sync)."""
        self._force.set()

    def poll(self, now=None):
        """One observation of every DB; returns the new records."""
        wait = self._force.is_set()
        self._force.clear()
        now = time.time() if now is None else now
        records = {}
        try:
            listing = self.client.list()
        except LitestreamError as exc:
            listing = None
            self._set_state("unreachable", str(exc))
        for db in discover(self.dbs, self.tenant_dir):
            try:
                if listing is None:
                    raise LitestreamError("control socket unreachable")
                sync = self.client.sync(db, wait=wait, timeout=30 if wait else None)
                record = db_record(sync, listing.get(db, {}).get("last_sync_at"), now)
                event = self.detector.observe(db, sync["txid"], sync["replicated_txid"], now)
            except LitestreamError as exc:
                record = {"txid": None, "replicated_txid": None, "lag_txids": None, "last_sync_at": None,
                          "lag_seconds": None, "sync_status": None, "error": str(exc)}
                event = self.detector.observe(db, None, None, now)
            if record["lag_seconds"] is None and record["lag_txids"] != 0:
                since = self.detector.since(db)
                record["lag_seconds"] = round(now - since, 3) if since is not None else None
            with self._lock:
                tracked = self.lags.get(db)
                if tracked is not None and record["error"] is None:
                    tracked.synced(record["txid"], record["replicated_txid"], now)
                    record["lag_seconds"] = tracked.lag(now)
            record["stalled"] = self.detector.stalled(db)
            records[db] = record
            self._alert(db, event, record)
        with self._lock:
            self.records = records
        if listing is not None:
            if any(r["stalled"] for r in records.values()):
                self._set_state("stalled", "a database stopped advancing")
            elif any(r["error"] or r["lag_txids"] for r in records.values()):
                self._set_state("lagging", "a database is behind its replica or errored")
            else:
                self._set_state("ok", "all databases replicated")
        return records

    def _alert(self, db, event, record):
        if event == "stalled":
            log(COMPONENT, "db-stalled", level="warning", db=db, reason="replicated_txid not advancing",
                **{k: record[k] for k in ("txid", "replicated_txid", "error")})
            if self.alerter:
                self.alerter.send("litestream-stalled", f"replication of {db} stopped advancing",
                                  db=db, txid=record["txid"], replicated_txid=record["replicated_txid"])
        elif event == "recovered":
            log(COMPONENT, "db-recovered", db=db, txid=record["txid"])
            if self.alerter:
                self.alerter.send("litestream-recovered", f"replication of {db} is advancing again",
                                  db=db, txid=record["txid"])

    def _set_state(self, state, reason):
        if state != self.state:
            log(COMPONENT, "state", frm=self.state, to=state, reason=reason)
            self.state = state
        self.reason = reason

    def sample(self, now=None):
        """One tick of the lag: stat every known database's WAL; for those with unreplicated commits ask
        ``POST /sync`` (no wait). Errors leave the commits pending (their age keeps growing)."""
        with self._lock:
            dbs = list(self.records)
        for db in dbs:
            watch = self.watches.setdefault(db, WalWatch(db))
            at = watch.check()
            with self._lock:
                tracked = self.lags.setdefault(db, CommitLag()) if at is not None else self.lags.get(db)
                if at is not None:
                    tracked.committed(at)
                busy = tracked is not None and tracked.pending
            if not busy:
                continue
            try:
                sync = self.client.sync(db, wait=False)
            except LitestreamError:
                continue
            when = time.time() if now is None else now
            replicated_at = None
            with self._lock:
                completes, previous = tracked.completes(sync["replicated_txid"]), tracked.checked_at
            if completes:  # the replica sync that did it ended at last_sync_at, if that is since our last look
                try:
                    at = self.client.list().get(db, {}).get("last_sync_at")
                except LitestreamError:
                    at = None
                if at is not None and previous is not None and previous < at <= when:
                    replicated_at = at
            with self._lock:
                tracked.synced(sync["txid"], sync["replicated_txid"], when, replicated_at)

    def snapshot(self, now=None):
        """{db: record} as last polled, lag_seconds live: the age of the oldest unreplicated commit
        now, lag_last_seconds the lag at which the latest commit was replicated."""
        now = time.time() if now is None else now
        with self._lock:
            result = {db: dict(record) for db, record in self.records.items()}
            for db, record in result.items():
                tracked = self.lags.get(db)
                if tracked is not None and record.get("error") is None:
                    record["lag_seconds"] = tracked.lag(now)
                    record["lag_last_seconds"] = tracked.last
            return result

    def run(self, stop, interval):
        """Poll every ``interval`` seconds (or at once when a sync is requested) and sample the lag every
        ``sample_seconds`` until ``stop``."""
        while not stop.is_set():
            try:
                self.poll()
            except Exception as exc:  # noqa: BLE001 - keep supervising
                log(COMPONENT, "poll-error", level="error", error=f"{type(exc).__name__}: {exc}")
            deadline = time.monotonic() + interval
            while not stop.is_set() and not self._force.is_set() and time.monotonic() < deadline:
                tick = time.monotonic() + self.sample_seconds
                try:
                    self.sample()
                except Exception as exc:  # noqa: BLE001 - keep supervising
                    log(COMPONENT, "sample-error", level="error", error=f"{type(exc).__name__}: {exc}")
                stop.wait(min(max(0.0, tick - time.monotonic()), max(0.0, deadline - time.monotonic())))

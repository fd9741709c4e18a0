"""wirebot.primary.litestream: parsing of real control-socket answers, lag math, stall detection, and the
real Litestream 0.5.17 binary replicating to a file replica under a temp dir."""

import functools
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest
from wirebot.primary import litestream

from tasks.core.wait import wait_for

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "litestream"
BINARY = Path(__file__).resolve().parents[4] / ".venv" / "bin" / "litestream"


def fixture(name):
    data = json.loads((FIXTURES / (name + ".json")).read_text())
    return data["status"], data["body"].encode()


# -- parsing captured outputs ---------------------------------------------------------------------

def test_parse_sync_answers():
    assert litestream.parse_sync(*fixture("sync_no_change")) == {
        "status": "no_change", "txid": 1, "replicated_txid": 1}
    assert litestream.parse_sync(*fixture("sync_synced_local")) == {
        "status": "synced_local", "txid": 5, "replicated_txid": 4}
    assert litestream.parse_sync(*fixture("sync_synced_wait"))["status"] == "synced"
    assert litestream.parse_sync(*fixture("sync_replica_unreadable"))["replicated_txid"] == 0


@pytest.mark.parametrize("name, words", [
    ("sync_not_found", "HTTP 404: database not found"),
    ("sync_bad_body", "HTTP 400: invalid request body"),
    ("sync_no_path", "HTTP 400: path required"),
    ("sync_replica_error", "HTTP 500: sync database"),
])
def test_parse_sync_errors(name, words):
    with pytest.raises(litestream.LitestreamError, match=words):
        litestream.parse_sync(*fixture(name))


def test_parse_sync_rejects_garbage():
    with pytest.raises(litestream.LitestreamError):
        litestream.parse_sync(200, b"<html>")
    with pytest.raises(litestream.LitestreamError):
        litestream.parse_sync(200, b'{"status": "synced"}')


def test_parse_list_with_nanosecond_times():
    parsed = litestream.parse_list(*fixture("list"))
    assert set(parsed) == {"/tmp/lsprobe/a.db", "/tmp/lsprobe/tenants/one.db"}
    assert parsed["/tmp/lsprobe/a.db"]["status"] == "replicating"
    assert parsed["/tmp/lsprobe/a.db"]["last_sync_at"] == pytest.approx(1795722247.563575724)
    assert litestream.parse_list(*fixture("list_never_synced")) == {
        "/tmp/lsprobe2/b.db": {"status": "replicating", "last_sync_at": None}}


def test_parse_time_and_txid():
    assert litestream.parse_time("1970-01-01T00:00:01Z") == 1.0
    assert litestream.parse_time("1970-01-01T01:00:00.5+01:00") == 0.5
    with pytest.raises(ValueError):
        litestream.parse_time("yesterday")
    assert litestream.parse_txid(26) == 26
    assert litestream.parse_txid("000000000000001a") == 26
    with pytest.raises(ValueError):
        litestream.parse_txid(True)


# -- lag math and discovery -------------------------------------------------------------------------

def test_db_record_lag():
    behind = litestream.parse_sync(*fixture("sync_synced_local"))
    rec = litestream.db_record(behind, last_sync_at=1000.0, now=1012.5)
    assert rec["lag_txids"] == 1 and rec["lag_seconds"] == 12.5 and rec["last_sync_at"] == 1000.0
    clean = litestream.parse_sync(*fixture("sync_no_change"))
    assert litestream.db_record(clean, 1000.0, 5000.0)["lag_seconds"] == 0
    never = litestream.db_record(behind, None, 1.0)
    assert never["lag_seconds"] is None and never["lag_txids"] == 1


def test_discover_tenants(tmp_path):
    (tmp_path / "b.db").write_text("")
    (tmp_path / "a.db").write_text("")
    (tmp_path / "a.db-wal").write_text("")
    assert litestream.discover(["/x/main.db", str(tmp_path / "a.db")], str(tmp_path)) == [
        "/x/main.db", str(tmp_path / "a.db"), str(tmp_path / "b.db")]
    assert litestream.discover(["/x/main.db"], "") == ["/x/main.db"]


# -- stall detector -----------------------------------------------------------------------------------

def test_stall_detector_alerts_once_and_recovers():
    d = litestream.StallDetector(stall_seconds=120)
    assert d.observe("db", 5, 5, now=0) is None
    assert d.observe("db", 6, 5, now=10) is None          # fell behind at t=10: the clock starts
    assert d.observe("db", 9, 5, now=129) is None
    assert d.observe("db", 9, 5, now=130) == "stalled"    # 120 s behind without replicated moving
    assert d.stalled("db")
    assert d.observe("db", 10, 5, now=500) is None        # alert only once
    assert d.observe("db", 10, 7, now=501) == "recovered"  # replicated moved
    assert not d.stalled("db")


def test_stall_detector_progress_resets_clock_and_unknown_counts_as_no_progress():
    d = litestream.StallDetector(stall_seconds=60)
    d.observe("db", 2, 1, now=0)
    assert d.observe("db", 4, 2, now=50) is None          # moved: progress at t=50
    assert d.observe("db", 6, 2, now=100) is None
    assert d.observe("db", 7, 0, now=110) == "stalled"    # replica position unreadable (0)
    assert d.observe("db", 8, 8, now=111) == "recovered"  # caught up
    assert d.observe("x", None, None, now=0) is None
    assert d.observe("x", None, None, now=60) == "stalled"


def test_idle_caught_up_database_never_stalls():
    d = litestream.StallDetector(stall_seconds=1)
    assert all(d.observe("db", 3, 3, now=t) is None for t in range(0, 100, 10))


class FakeClient:
    def __init__(self, answers, listing=None):
        self.answers = answers
        self.listing = listing or {}

    def list(self):
        if self.listing is None:
            raise litestream.LitestreamError("control socket /x: [Errno 2] No such file or directory")
        return self.listing

    def sync(self, db, wait=False, timeout=None):
        answer = self.answers[db]
        if isinstance(answer, Exception):
            raise answer
        return answer


class Alerts:
    def __init__(self):
        self.sent = []

    def send(self, kind, message, **fields):
        self.sent.append((kind, fields.get("db")))


def test_monitor_states_and_alerts():
    client = FakeClient({"/a.db": {"status": "synced_local", "txid": 5, "replicated_txid": 4},
                         "/b.db": litestream.LitestreamError("HTTP 404: database not found: /b.db")},
                        {"/a.db": {"status": "replicating", "last_sync_at": 990.0}})
    alerts = Alerts()
    mon = litestream.Monitor(client, ["/a.db", "/b.db"], "", stall_seconds=30, alerter=alerts)
    recs = mon.poll(now=1000.0)
    assert mon.state == "lagging"
    assert recs["/a.db"]["lag_seconds"] == 10 and recs["/a.db"]["lag_txids"] == 1
    assert "404" in recs["/b.db"]["error"] and recs["/b.db"]["lag_seconds"] == 0
    mon.poll(now=1031.0)
    assert mon.state == "stalled" and sorted(alerts.sent) == [("litestream-stalled", "/a.db"),
                                                             ("litestream-stalled", "/b.db")]
    client.answers = {d: {"status": "synced", "txid": 5, "replicated_txid": 5} for d in ("/a.db", "/b.db")}
    mon.poll(now=1040.0)
    assert mon.state == "ok" and [k for k, _ in alerts.sent].count("litestream-recovered") == 2
    client.listing = None
    mon.poll(now=1050.0)
    assert mon.state == "unreachable" and "control socket unreachable" in mon.snapshot()["/a.db"]["error"]


# -- the real binary ------------------------------------------------------------------------------------

_wait = functools.partial(wait_for, timeout=30.0, interval=0.1)  # the one wait_for, this file's pace


@pytest.fixture
def real_litestream():
    if not BINARY.exists():
        pytest.skip("litestream binary not installed in .venv")
    work = Path(tempfile.mkdtemp(prefix="wbls-", dir="/tmp"))  # short: unix socket paths are limited
    db = work / "main.db"
    (work / "tenants").mkdir()
    conn = sqlite3.connect(str(db))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, v TEXT)")
    conn.commit()
    sock = work / "ls.sock"
    (work / "litestream.yml").write_text(
        f"socket:\n  enabled: true\n  path: {sock}\n"
        f"dbs:\n  - path: {db}\n    replica:\n      type: file\n      path: {work}/replica/main.db\n"
        f"  - dir: {work}/tenants\n    pattern: '*.db'\n    watch: true\n"
        f"    replica:\n      type: file\n      path: {work}/replica/tenants\n")
    log = open(work / "litestream.log", "w")
    proc = subprocess.Popen([str(BINARY), "replicate", "-config", str(work / "litestream.yml")],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        assert _wait(sock.exists, timeout=15), "control socket did not appear"
        yield {"work": work, "db": str(db), "conn": conn, "socket": str(sock)}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
        conn.close()
        shutil.rmtree(str(work), ignore_errors=True)


def test_real_litestream_replicated_txid_catches_up(real_litestream):
    env = real_litestream
    client = litestream.ControlClient(env["socket"], timeout=5)
    mon = litestream.Monitor(client, [env["db"]], str(env["work"] / "tenants"), stall_seconds=600)
    first = _wait(lambda: mon.poll()[env["db"]]["txid"])
    for i in range(50):
        env["conn"].execute("INSERT INTO events (v) VALUES (?)", (f"row-{i}",))
        env["conn"].commit()
    raised = _wait(lambda: (mon.poll()[env["db"]]["txid"] or 0) > first)
    assert raised

    def caught_up():
        rec = mon.poll()[env["db"]]
        return rec if rec["txid"] > first and rec["replicated_txid"] == rec["txid"] else None

    rec = _wait(caught_up)
    assert rec and rec["lag_txids"] == 0 and rec["lag_seconds"] == 0 and rec["last_sync_at"]
    assert mon.state == "ok"

    tenant = env["work"] / "tenants" / "acme.db"
    tconn = sqlite3.connect(str(tenant))
    tconn.execute("PRAGMA journal_mode=WAL")
    tconn.execute("CREATE TABLE t (x)")
    tconn.commit()
    tconn.close()
    trec = _wait(lambda: mon.poll().get(str(tenant), {}).get("replicated_txid"))
    assert trec, "new tenant DB was not replicated (litestream dir watch)"

    out = env["work"] / "restored.db"
    subprocess.run([str(BINARY), "restore", "-o", str(out), "file://{}/replica/main.db".format(env["work"])],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    restored = sqlite3.connect(str(out))
    assert restored.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert restored.execute("SELECT count(*) FROM events").fetchone()[0] == 50
    restored.close()


def test_real_litestream_stall_is_detected_and_recovers(real_litestream):
    env = real_litestream
    alerts = Alerts()
    mon = litestream.Monitor(litestream.ControlClient(env["socket"], timeout=5), [env["db"]], "",
                             stall_seconds=0.5, alerter=alerts)
    assert _wait(lambda: mon.poll()[env["db"]]["replicated_txid"])
    level0 = env["work"] / "replica" / "main.db" / "ltx" / "0"
    shutil.rmtree(str(level0))
    level0.write_text("not a directory")            # the replica can no longer be written
    env["conn"].execute("INSERT INTO events (v) VALUES ('during outage')")
    env["conn"].commit()
    assert _wait(lambda: mon.poll() and mon.state == "stalled"), mon.snapshot()
    rec = mon.snapshot()[env["db"]]
    assert rec["stalled"] and rec["txid"] > (rec["replicated_txid"] or 0)
    assert ("litestream-stalled", env["db"]) in alerts.sent
    os.unlink(str(level0))                          # repair
    mon.request_sync()
    assert _wait(lambda: mon.poll() and mon.state == "ok", timeout=60), mon.snapshot()
    assert ("litestream-recovered", env["db"]) in alerts.sent


# -- lag: the age of the oldest unreplicated commit --------------------------------------------------

def test_commit_lag_is_the_oldest_unreplicated_commits_age():
    lag = litestream.CommitLag()
    assert lag.lag(5.0) == 0.0 and lag.last is None
    lag.committed(10.0)
    lag.committed(10.05)  # still untagged: the older one stands for both
    assert lag.lag(10.3) == 0.3
    lag.synced(txid=5, replicated_txid=4, now=10.1)  # both are in local TXID 5 at the latest
    lag.committed(10.2)
    lag.synced(txid=6, replicated_txid=4, now=10.3)
    assert [e[1] for e in lag.pending] == [5, 6] and lag.lag(10.9) == 0.9
    assert not lag.completes(4) and lag.completes(5)
    lag.synced(txid=6, replicated_txid=5, now=11.1, replicated_at=11.02)  # the replica sync ended at 11.02
    assert lag.last == 1.02 and lag.lag(11.1) == 0.9  # 10.2's commit is still out
    lag.synced(txid=6, replicated_txid=6, now=12.0)
    assert lag.last == 1.8 and lag.lag(12.0) == 0.0 and lag.take_peak(12.0) == 1.8 and lag.take_peak(12.0) == 0.0


def test_wal_watch_sees_changes_with_their_mtime(tmp_path):
    db = str(tmp_path / "x.db")
    watch = litestream.WalWatch(db)
    assert watch.check() is None  # baseline (no WAL yet)
    Path(db + "-wal").write_bytes(b"a")
    os.utime(db + "-wal", ns=(1_000_000_000_000_000_000, 1_000_000_000_123_000_000))
    assert watch.check() == 1_000_000_000.123
    assert watch.check() is None  # unchanged
    Path(db + "-wal").write_bytes(b"ab")
    assert watch.check() is not None


class CountingClient(FakeClient):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.calls = 0

    def sync(self, db, wait=False, timeout=None):
        self.calls += 1
        return super().sync(db, wait, timeout)


def test_monitor_samples_the_wal_and_asks_litestream_only_while_a_commit_is_pending(tmp_path):
    db = str(tmp_path / "events.db")
    wal = Path(db + "-wal")
    wal.write_bytes(b"")
    client = CountingClient({db: {"status": "no_change", "txid": 7, "replicated_txid": 7}},
                            {db: {"status": "replicating", "last_sync_at": 900.0}})
    mon = litestream.Monitor(client, [db], "", stall_seconds=30)
    mon.poll(now=1000.0)
    client.calls = 0
    for _ in range(5):  # idle: a stat per tick, nothing asked
        mon.sample(now=1000.5)
    assert client.calls == 0 and mon.snapshot(now=1001.0)[db]["lag_seconds"] == 0.0
    wal.write_bytes(b"commit")
    committed = os.stat(wal).st_mtime_ns / 1e9
    client.answers[db] = {"status": "synced_local", "txid": 8, "replicated_txid": 7}
    mon.sample(now=committed + 0.1)
    assert client.calls == 1
    assert mon.snapshot(now=committed + 0.6)[db]["lag_seconds"] == pytest.approx(0.6, abs=0.001)
    client.answers[db] = {"status": "no_change", "txid": 8, "replicated_txid": 8}
    client.listing = {db: {"status": "replicating", "last_sync_at": committed + 0.85}}
    mon.sample(now=committed + 0.9)
    record = mon.snapshot(now=committed + 1.0)[db]
    assert record["lag_seconds"] == 0.0 and record["lag_last_seconds"] == pytest.approx(0.85, abs=0.001)
    client.calls = 0
    mon.sample(now=committed + 1.0)
    assert client.calls == 0  # nothing pending any more

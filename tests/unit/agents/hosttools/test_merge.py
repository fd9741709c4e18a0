"""Tests for wirebot.hosttools.merge: failback merge of the standby's SQLite writes into the primary."""

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wirebot.hosttools import merge
from wirebot.hosttools.merge import MergeError, MergeSchemaError

AGENTS = Path(__file__).resolve().parents[4] / "files" / "agents"  # the hosts' PYTHONPATH, for subprocesses

EVENTS_SQL = (
    "CREATE TABLE events (id TEXT PRIMARY KEY, type TEXT NOT NULL, tenant TEXT, payload TEXT NOT NULL, "
    "score_delta INTEGER NOT NULL, created_at TEXT NOT NULL, received_at TEXT NOT NULL, "
    "received_by TEXT NOT NULL)"
)
COLS = ("id", "type", "tenant", "payload", "score_delta", "created_at", "received_at", "received_by")


def event(received_by="primary", **kw):
    row = dict(id=str(uuid.uuid4()), type="ship", tenant="acme", payload='{"n": 1}', score_delta=5,
               created_at="2025-01-01T00:00:00Z", received_at="2025-01-01T00:00:01Z", received_by=received_by)
    row.update(kw)
    return tuple(row[c] for c in COLS)


def make_db(path, events=(), wal=False, sql=(EVENTS_SQL,)):
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    for statement in sql:
        conn.execute(statement)
    if events:
        conn.executemany(f"INSERT INTO events VALUES ({','.join('?' * len(COLS))})", events)
    conn.commit()
    conn.close()
    return str(path)


def rows(path, table="events"):
    conn = sqlite3.connect(path)
    try:
        return {r[0]: r for r in conn.execute(f"SELECT * FROM {table}")}
    finally:
        conn.close()


def snapshot(path):
    """Schema and every table's rows: what "unchanged" means for a target."""
    conn = sqlite3.connect(path)
    try:
        schema = sorted(conn.execute("SELECT type, name, sql FROM sqlite_master"))
        tables = [r[1] for r in schema if r[0] == "table"]
        return schema, {t: sorted(conn.execute(f'SELECT * FROM "{t}"'), key=repr) for t in tables}
    finally:
        conn.close()


# --- property: union by key, nothing lost, nothing doubled, target rows untouched ----------------------

event_st = st.tuples(
    st.uuids().map(str),
    st.sampled_from(["shared", "primary", "standby", "both"]),
    st.sampled_from(["ship", "commit", "deploy"]),
    st.one_of(st.none(), st.sampled_from(["acme", "zeta"])),
    st.text(max_size=8),
    st.integers(-50, 50),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(event_st, max_size=40, unique_by=lambda s: s[0]), data=st.data(), wal=st.booleans())
def test_merge_is_union_by_key(specs, data, wal):
    shared, post = [], []  # post-failover operations: (side, row)
    for eid, kind, typ, tenant, payload, delta in specs:
        def mk(by, eid=eid, typ=typ, tenant=tenant, payload=payload, delta=delta):
            return event(by, id=eid, type=typ, tenant=tenant, payload=payload, score_delta=delta)
        if kind == "shared":
            shared.append(mk("primary"))
        elif kind == "primary":
            post.append(("primary", mk("primary")))
        elif kind == "standby":
            post.append(("standby", mk("standby")))
        else:  # a surface retried the same event to both hubs: same id, different receipt
            post += [("primary", mk("primary")), ("standby", mk("standby"))]
    post = data.draw(st.permutations(post))
    with tempfile.TemporaryDirectory() as d:
        target, source = make_db(f"{d}/p.db", wal=wal), make_db(f"{d}/s.db")
        for path, side in ((target, "primary"), (source, "standby")):
            conn = sqlite3.connect(path)
            conn.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?)",
                             shared + [r for s, r in post if s == side])
            conn.commit()
            conn.close()
        before_t, before_s = rows(target), rows(source)
        expected = {**before_s, **before_t}  # union; the primary's version wins where both have it

        dry = merge.merge_database(source, target, dry_run=True)
        assert rows(target) == before_t
        report = merge.merge_database(source, target)
        assert dry.inserted == report.inserted == len(set(before_s) - set(before_t))
        after = rows(target)
        assert after == expected
        assert all(after[k] == v for k, v in before_t.items())
        (t,) = report.tables
        assert (t.table, t.source_rows, t.target_before) == ("events", len(before_s), len(before_t))
        assert (t.target_after, t.missing_after, report.missing_after) == (len(expected), 0, 0)
        assert report.ok and rows(source) == before_s
        again = merge.merge_database(source, target)
        assert again.inserted == 0 and again.ok and rows(target) == expected


# --- schema checks: abort before anything changes -----------------------------------------------------

BAD_SCHEMAS = {
    "missing column": ([EVENTS_SQL], ["CREATE TABLE events (id TEXT PRIMARY KEY, type TEXT NOT NULL, "
                                      "payload TEXT, score_delta INTEGER, created_at TEXT, received_at TEXT, "
                                      "received_by TEXT)"], "events", "columns differ"),
    "table missing in target": ([EVENTS_SQL, "CREATE TABLE sessions (id TEXT PRIMARY KEY, who TEXT)"],
                                [EVENTS_SQL], "sessions", "not on the target"),
    "no primary key": ([EVENTS_SQL, "CREATE TABLE notes (id TEXT, body TEXT)"],
                       [EVENTS_SQL, "CREATE TABLE notes (id TEXT, body TEXT)"], "notes", "PRIMARY KEY"),
    "rowid alias": ([EVENTS_SQL, "CREATE TABLE log (id INTEGER PRIMARY KEY, msg TEXT)"],
                    [EVENTS_SQL, "CREATE TABLE log (id INTEGER PRIMARY KEY, msg TEXT)"],
                    "log", "rowid alias"),
    "different keys": ([EVENTS_SQL, "CREATE TABLE k (a TEXT, b TEXT, PRIMARY KEY (a, b))"],
                       [EVENTS_SQL, "CREATE TABLE k (a TEXT PRIMARY KEY, b TEXT)"],
                       "k", "primary keys differ"),
}


@pytest.mark.parametrize("case", sorted(BAD_SCHEMAS))
def test_schema_mismatch_aborts_with_target_unchanged(tmp_path, case):
    src_sql, tgt_sql, table, reason = BAD_SCHEMAS[case]
    source = make_db(tmp_path / "s.db", [event("standby") for _ in range(3)], sql=src_sql)
    target = make_db(tmp_path / "p.db", [] if case == "missing column" else [event()], sql=tgt_sql)
    raw, snap = Path(target).read_bytes(), snapshot(target)
    for dry_run in (True, False):
        with pytest.raises(MergeSchemaError) as exc:
            merge.merge_database(source, target, dry_run=dry_run)
        assert exc.value.table == table and reason in str(exc.value)
        assert target in str(exc.value) and repr(table) in str(exc.value)
    assert Path(target).read_bytes() == raw and snapshot(target) == snap


def test_accepted_schemas_composite_key_column_order_without_rowid_and_target_only_table(tmp_path):
    src_sql = [EVENTS_SQL,
               "CREATE TABLE scores (tenant TEXT, day TEXT, points INTEGER, PRIMARY KEY (tenant, day))",
               "CREATE TABLE seq (n INTEGER PRIMARY KEY, v TEXT) WITHOUT ROWID"]
    tgt_sql = [EVENTS_SQL,
               "CREATE TABLE scores (points INTEGER, day TEXT, tenant TEXT, PRIMARY KEY (day, tenant))",
               "CREATE TABLE seq (v TEXT, n INTEGER PRIMARY KEY) WITHOUT ROWID", "CREATE TABLE local (x)"]
    source, target = make_db(tmp_path / "s.db", sql=src_sql), make_db(tmp_path / "p.db", sql=tgt_sql)
    with sqlite3.connect(source) as c:
        c.executemany("INSERT INTO scores VALUES (?,?,?)", [("a", "d1", 1), ("a", "d2", 2), ("b", "d1", 3)])
        c.executemany("INSERT INTO seq VALUES (?,?)", [(1, "s1"), (2, "s2")])
    with sqlite3.connect(target) as c:
        c.executemany("INSERT INTO scores VALUES (?,?,?)", [(99, "d1", "a"), (4, "d9", "z")])
        c.execute("INSERT INTO seq VALUES ('p1', 1)")
    report = merge.merge_database(source, target)
    assert {t.table: t.inserted for t in report.tables} == {"events": 0, "scores": 2, "seq": 1}
    assert report.ok
    with sqlite3.connect(target) as c:
        assert sorted(c.execute("SELECT tenant, day, points FROM scores")) == [
            ("a", "d1", 99), ("a", "d2", 2), ("b", "d1", 3), ("z", "d9", 4)]
        assert sorted(c.execute("SELECT n, v FROM seq")) == [(1, "p1"), (2, "s2")]
    assert merge.merge_database(source, target).inserted == 0


def test_null_keys_are_matched_by_is_and_never_doubled(tmp_path):
    """SQLite lets NULL into a rowid table's (composite) PRIMARY KEY and its unique index never matches
    NULLs, so OR IGNORE alone would copy them again on every run: they are matched with IS."""
    sql = [EVENTS_SQL, "CREATE TABLE scores (tenant TEXT, day TEXT, points INTEGER, PRIMARY KEY (tenant, day))"]
    source, target = make_db(tmp_path / "s.db", sql=sql), make_db(tmp_path / "p.db", sql=sql)
    shared_null, new_null = event(id=None), event(received_by="standby")
    with sqlite3.connect(source) as c:
        c.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?)", [shared_null, new_null])
        c.executemany("INSERT INTO scores VALUES (?,?,?)",
                      [(None, "d1", 1), ("a", None, 2), (None, None, 3), ("a", "d1", 4)])
    with sqlite3.connect(target) as c:
        c.execute("INSERT INTO events VALUES (?,?,?,?,?,?,?,?)", event(id=None))  # a NULL id already there
        c.execute("INSERT INTO scores VALUES (?,?,?)", ("a", None, 99))
    report = merge.merge_database(source, target)
    assert {t.table: t.inserted for t in report.tables} == {"events": 1, "scores": 3} and report.ok
    expected = snapshot(target)
    with sqlite3.connect(target) as c:
        assert sorted(c.execute("SELECT tenant, day, points FROM scores"), key=repr) == sorted(
            [(None, "d1", 1), ("a", None, 99), (None, None, 3), ("a", "d1", 4)], key=repr)
        assert c.execute("SELECT count(*) FROM events WHERE id IS NULL").fetchone()[0] == 1
    again = merge.merge_database(source, target)
    assert again.inserted == 0 and again.ok and snapshot(target) == expected


# --- WAL, busy target, interruption ------------------------------------------------------------------

def test_wal_target_with_open_reader_and_briefly_busy_writer(tmp_path):
    source = make_db(tmp_path / "s.db", [event("standby") for _ in range(50)], wal=True)
    target = make_db(tmp_path / "p.db", [event() for _ in range(10)], wal=True)
    reader = sqlite3.connect(target)
    assert reader.execute("SELECT count(*) FROM events").fetchone() == (10,)
    writer = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")
    threading.Timer(0.3, lambda: writer.execute("COMMIT")).start()
    report = merge.merge_database(source, target)  # waits on busy_timeout instead of failing
    assert report.inserted == 50 and report.ok
    assert reader.execute("SELECT count(*) FROM events").fetchone() == (60,)
    assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    reader.close()
    writer.close()


def _two_table_pair(tmp_path, wal):
    sql = [EVENTS_SQL, "CREATE TABLE zz_later (id TEXT PRIMARY KEY, v TEXT)"]
    source = make_db(tmp_path / "s.db", [event("standby") for _ in range(20)], sql=sql)
    target = make_db(tmp_path / "p.db", [event() for _ in range(5)], wal=wal, sql=sql)
    with sqlite3.connect(source) as c:
        c.executemany("INSERT INTO zz_later VALUES (?, ?)", [(str(i), "x") for i in range(7)])
    return source, target


@pytest.mark.parametrize("wal", [False, True])
def test_failure_mid_transaction_leaves_target_unchanged_then_rerun_completes(tmp_path, wal):
    source, target = _two_table_pair(tmp_path, wal)
    with sqlite3.connect(target) as c:
        c.execute("CREATE TRIGGER boom BEFORE INSERT ON zz_later BEGIN SELECT RAISE(ABORT, 'boom'); END")
    snap = snapshot(target)
    with pytest.raises(MergeError, match="boom"):
        merge.merge_database(source, target)
    assert snapshot(target) == snap  # events of the first table were rolled back too
    with sqlite3.connect(target) as c:
        c.execute("DROP TRIGGER boom")
    report = merge.merge_database(source, target)
    assert {t.table: t.inserted for t in report.tables} == {"events": 20, "zz_later": 7} and report.ok
    assert merge.merge_database(source, target).inserted == 0


@pytest.mark.parametrize("wal", [False, True])
def test_hard_crash_mid_merge_leaves_target_unchanged(tmp_path, wal):
    source, target = _two_table_pair(tmp_path, wal)
    snap = snapshot(target)
    script = textwrap.dedent(f"""
        import os
        from wirebot.hosttools import merge
        orig = merge.count_rows
        def count(conn, schema, table):
            if table == "zz_later":  # first table already inserted, transaction still open
                os._exit(9)
            return orig(conn, schema, table)
        merge.count_rows = count
        merge.merge_database({source!r}, {target!r})
    """)
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    assert snapshot(target) == snap
    assert merge.merge_database(source, target).inserted == 27


# --- tenant directories ------------------------------------------------------------------------------

def test_tenant_dirs_copy_source_only_and_merge_both(tmp_path):
    sdir, tdir = tmp_path / "standby", tmp_path / "primary"
    sdir.mkdir()
    tdir.mkdir()
    shared = [event() for _ in range(3)]
    make_db(sdir / "acme.db", shared + [event("standby") for _ in range(4)])
    make_db(tdir / "acme.db", shared + [event()])
    make_db(sdir / "newco.db", [event("standby") for _ in range(6)], wal=True)
    make_db(tdir / "oldco.db", [event()])
    (sdir / "notes.txt").write_text("not a database")
    os.chmod(sdir / "newco.db", 0o640)

    dry = merge.merge_tenant_dirs(str(sdir), str(tdir), dry_run=True)
    assert [(Path(r.path).name, r.action, r.inserted) for r in dry] == [
        ("acme.db", "dry-run", 4), ("newco.db", "dry-run-copy", 6)]
    assert sorted(os.listdir(tdir)) == ["acme.db", "oldco.db"]

    reports = merge.merge_tenant_dirs(str(sdir), str(tdir))
    assert [(Path(r.path).name, r.action, r.inserted, r.ok) for r in reports] == [
        ("acme.db", "merged", 4, True), ("newco.db", "copied", 6, True)]
    assert rows(tdir / "newco.db") == rows(sdir / "newco.db")
    assert len(rows(tdir / "acme.db")) == 8
    assert sorted(os.listdir(tdir)) == ["acme.db", "newco.db", "oldco.db"]  # no temp files left
    assert (os.stat(tdir / "newco.db").st_mode & 0o777) == 0o640
    with sqlite3.connect(tdir / "newco.db") as c:
        assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert c.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    json.dumps([r.to_dict() for r in reports])

    again = merge.merge_tenant_dirs(str(sdir), str(tdir))
    assert [(r.action, r.inserted) for r in again] == [("merged", 0), ("merged", 0)]


def test_copy_never_overwrites(tmp_path):
    source = make_db(tmp_path / "s.db", [event()])
    target = make_db(tmp_path / "p.db", [event(), event()])
    with pytest.raises(MergeError, match="refusing to overwrite"):
        merge.copy_database(source, target)
    assert len(rows(target)) == 2


def test_tenant_schema_error_changes_nothing_anywhere(tmp_path):
    sdir, tdir = tmp_path / "s", tmp_path / "t"
    sdir.mkdir()
    tdir.mkdir()
    make_db(sdir / "a.db", [event("standby")])
    make_db(tdir / "a.db", [event()])
    make_db(sdir / "b.db", [event("standby")], sql=[EVENTS_SQL, "CREATE TABLE log (id INTEGER PRIMARY KEY)"])
    make_db(tdir / "b.db", [], sql=[EVENTS_SQL, "CREATE TABLE log (id INTEGER PRIMARY KEY)"])
    make_db(sdir / "c.db", [event("standby")])
    snap = snapshot(tdir / "a.db")
    with pytest.raises(MergeSchemaError, match="b.db.*'log'"):
        merge.merge_tenant_dirs(str(sdir), str(tdir))
    assert snapshot(tdir / "a.db") == snap and not (tdir / "c.db").exists()


def test_missing_files_are_clear_errors(tmp_path):
    existing = make_db(tmp_path / "p.db")
    with pytest.raises(MergeError, match="source database not found"):
        merge.merge_database(str(tmp_path / "nope.db"), existing)
    with pytest.raises(MergeError, match="target database not found"):
        merge.merge_database(existing, str(tmp_path / "nope.db"))
    assert not (tmp_path / "nope.db").exists()
    with pytest.raises(MergeError, match="tenant directory not found"):
        merge.merge_tenant_dirs(str(tmp_path / "nodir"), str(tmp_path))


# --- CLI ---------------------------------------------------------------------------------------------

def cli(*args):
    return subprocess.run([sys.executable, "-m", "wirebot.hosttools.merge", *map(str, args)], capture_output=True,
                          text=True)


def test_cli_merge_dry_run_json_and_table(tmp_path):
    source = make_db(tmp_path / "s.db", [event("standby") for _ in range(3)])
    target = make_db(tmp_path / "p.db", [event()])
    (tmp_path / "ts").mkdir()
    (tmp_path / "tt").mkdir()
    make_db(tmp_path / "ts" / "new.db", [event("standby")])

    res = cli("--source", source, "--target", target, "--dry-run", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["ok"] and out["dry_run"] and out["databases"][0]["inserted"] == 3
    assert len(rows(target)) == 1

    res = cli("--source", source, "--target", target, "--tenants-source", tmp_path / "ts",
              "--tenants-target", tmp_path / "tt")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0].split() == [
        "database", "action", "table", "source", "before", "inserted", "after", "missing"]
    assert "merged" in res.stdout and "copied" in res.stdout
    assert len(rows(target)) == 4 and (tmp_path / "tt" / "new.db").exists()

    res = cli("--source", source, "--target", target, "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["databases"][0]["inserted"] == 0


def test_cli_exit_codes(tmp_path):
    source = make_db(tmp_path / "s.db", [event("standby", payload="same"), event("standby")],
                     sql=[EVENTS_SQL, "CREATE TABLE log (id INTEGER PRIMARY KEY)"])
    target = make_db(tmp_path / "p.db", [], sql=[EVENTS_SQL])
    res = cli("--source", source, "--target", target)
    assert res.returncode == 2 and target in res.stderr and "'log'" in res.stderr

    with sqlite3.connect(source) as c:
        c.execute("DROP TABLE log")
    with sqlite3.connect(target) as c:  # a constraint the merge does not know about swallows a row
        c.execute("CREATE UNIQUE INDEX one_payload ON events (payload)")
        c.execute("INSERT INTO events VALUES (?,?,?,?,?,?,?,?)", event(payload="same"))
    res = cli("--source", source, "--target", target, "--json")
    assert res.returncode == 3 and "verification failed" in res.stderr
    assert json.loads(res.stdout)["databases"][0]["missing_after"] == 1

    res = cli("--source", tmp_path / "missing.db", "--target", target)
    assert res.returncode == 1 and "source database not found" in res.stderr
    assert cli("--source", source).returncode != 0  # argparse usage error


def test_litestream_bookkeeping_tables_are_not_merged(tmp_path):
    """Every replicated database (and every restore) carries Litestream's _litestream_seq and
    _litestream_lock tables, which have no primary key: they are not data and must not block a merge."""
    litestream_sql = (EVENTS_SQL, "CREATE TABLE _litestream_seq (id INTEGER, seq INTEGER)",
                      "CREATE TABLE _litestream_lock (id INTEGER)")
    shared, new = event(), event(received_by="standby")
    source = make_db(tmp_path / "standby.db", [shared, new], sql=litestream_sql)
    target = make_db(tmp_path / "primary.db", [shared], sql=litestream_sql)
    report = merge.merge_database(source, target)
    assert [table.table for table in report.tables] == ["events"]
    assert report.inserted == 1 and report.missing_after == 0
    assert set(rows(target)) == {shared[0], new[0]}

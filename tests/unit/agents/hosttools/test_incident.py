"""wirebot.hosttools.incident: the host-side helper of the incident playbooks, on local files."""

import json
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

from wirebot.hosttools import incident

AGENTS = Path(__file__).resolve().parents[4] / "files" / "agents"  # the hosts' PYTHONPATH, for subprocesses
EVENTS = "CREATE TABLE events(id TEXT PRIMARY KEY, type TEXT NOT NULL)"


def make_db(path, ids, litestream=False):
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(EVENTS)
    conn.executemany("INSERT INTO events VALUES (?, 'ship')", [(i,) for i in ids])
    if litestream:  # what Litestream leaves in every database it replicates (and so in every restore)
        conn.execute("CREATE TABLE _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER)")
        conn.execute("CREATE TABLE _litestream_lock (id INTEGER)")
    conn.commit()
    return conn


def ids(n):
    return [str(uuid.uuid4()) for _ in range(n)]


def run(*args):
    return subprocess.run([sys.executable, "-m", "wirebot.hosttools.incident", *map(str, args)], capture_output=True,
                          text=True, env={"PYTHONPATH": str(AGENTS)})


def test_snapshot_is_consistent_while_open_and_leaves_litestream_tables_out(tmp_path):
    live = make_db(tmp_path / "events.db", ids(5), litestream=True)  # stays open, WAL not checkpointed
    out = tmp_path / "copy" / "events.db"
    report = incident.snapshot(str(tmp_path / "events.db"), str(out))
    live.close()
    assert report["tables"] == {"events": 5} and sorted(report["dropped"]) == ["_litestream_lock", "_litestream_seq"]
    assert not Path(f"{out}.tmp").exists() and oct(out.stat().st_mode & 0o777) == "0o640"
    conn = sqlite3.connect(out)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 5


def test_snapshot_of_a_missing_database_exits_1_saying_not_found(tmp_path):
    result = run("snapshot", "--db", tmp_path / "nope.db", "--out", tmp_path / "x.db")
    assert result.returncode == 1 and "not found" in result.stderr


def test_keys_is_a_set_comparison_with_counts(tmp_path):
    shared, extra = ids(4), ids(2)
    make_db(tmp_path / "standby.db", shared + extra).close()
    make_db(tmp_path / "primary.db", shared + ids(3)).close()
    result = run("keys", "--source", tmp_path / "standby.db", "--target", tmp_path / "primary.db")
    report = json.loads(result.stdout)
    table = report["databases"][str(tmp_path / "primary.db")]["events"]
    assert result.returncode == 3 and not report["ok"] and report["missing"] == 2
    assert (table["source_keys"], table["target_keys"], table["missing"]) == (6, 7, 2)
    assert set(table["sample"]) == set(extra)
    make_db(tmp_path / "merged.db", shared + extra + ids(1)).close()
    assert run("keys", "--source", tmp_path / "standby.db", "--target", tmp_path / "merged.db").returncode == 0


def test_keys_over_tenant_folders_counts_a_missing_database_as_all_missing(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "t").mkdir()
    make_db(tmp_path / "s" / "acme.db", ids(3)).close()
    make_db(tmp_path / "s" / "new.db", ids(2)).close()
    common = ids(1)
    make_db(tmp_path / "s" / "both.db", common).close()
    make_db(tmp_path / "t" / "both.db", common).close()
    reports = incident.compare(str(tmp_path / "s"), str(tmp_path / "t"))
    missing = {Path(path).name: tables["events"]["missing"] for path, tables in reports.items()}
    assert missing == {"acme.db": 3, "both.db": 0, "new.db": 2}


def test_copy_installs_a_database_the_primary_lacks_and_never_overwrites(tmp_path):
    make_db(tmp_path / "s.db", ids(2)).close()
    result = run("copy", "--source", tmp_path / "s.db", "--target", tmp_path / "t.db")
    assert result.returncode == 0 and json.loads(result.stdout)["databases"][0]["action"] == "copied"
    again = run("copy", "--source", tmp_path / "s.db", "--target", tmp_path / "t.db")
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr

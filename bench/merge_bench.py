"""Benchmark wirebot.merge on scoreboard-sized databases.

``python bench/merge_bench.py [--rows 1000000] [--existing N] [--dir DIR]`` builds a WAL-mode primary
holding ``existing`` events (half of them also on the standby) and a standby holding those shared events
plus ``rows`` events written during the failover, then times dry-run, merge (with verification),
verification alone, an idempotent re-run and a tenant-style copy, and prints a Markdown table.
"""

import argparse
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "files" / "agents"))

from wirebot import merge  # noqa: E402

EVENTS_SQL = (
    "CREATE TABLE events (id TEXT PRIMARY KEY, type TEXT NOT NULL, tenant TEXT, payload TEXT NOT NULL, "
    "score_delta INTEGER NOT NULL, created_at TEXT NOT NULL, received_at TEXT NOT NULL, "
    "received_by TEXT NOT NULL)"
)


def events(n, received_by):
    """``n`` synthetic scoreboard events with random UUID keys."""
    for i in range(n):
        yield (str(uuid.uuid4()), ("ship", "commit", "deploy")[i % 3], f"tenant-{i % 50}",
               f'{{"project": "wirebot", "note": "synthetic benchmark event {i}"}}', i % 17,
               "2025-01-01T00:00:00Z", "2025-01-01T00:00:01Z", received_by)


def build(path, batches, wal):
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=" + ("WAL" if wal else "DELETE"))
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute(EVENTS_SQL)
    for batch in batches:
        conn.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?)", batch)
    conn.commit()
    conn.close()


def verify_only(source, target, table="events"):
    """The verification query on its own: source keys missing from the target."""
    conn = merge._open_pair(source, target)
    try:
        return conn.execute(merge._missing_sql(table, ["id"], "count(*)")).fetchone()[0]
    finally:
        conn.close()


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="events written on the standby (to merge)")
    p.add_argument("--existing", type=int, help="events already on the primary (default rows/2)")
    p.add_argument("--dir", help="work directory (default: a temporary directory)")
    a = p.parse_args()
    existing = a.rows // 2 if a.existing is None else a.existing
    shared = existing // 2
    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        source, target = os.path.join(d, "standby.db"), os.path.join(d, "primary.db")
        common = list(events(shared, "primary"))
        _, t_build = timed(lambda: (build(target, [common, events(existing - shared, "primary")], True),
                                    build(source, [common, events(a.rows, "standby")], False)))
        src_rows = shared + a.rows
        steps = [("build both DBs", existing + src_rows, t_build)]
        dry, t = timed(lambda: merge.merge_database(source, target, dry_run=True))
        steps.append(("dry-run (count missing)", src_rows, t))
        report, t = timed(lambda: merge.merge_database(source, target))
        steps.append(("merge + verify (inserted)", report.inserted, t))
        missing, t = timed(lambda: verify_only(source, target))
        steps.append(("verify only (keys checked)", src_rows, t))
        again, t = timed(lambda: merge.merge_database(source, target))
        steps.append(("re-run (0 inserted)", src_rows, t))
        copied, t = timed(lambda: merge.copy_database(source, os.path.join(d, "copy.db")))
        steps.append(("copy source-only DB", copied.inserted, t))
        assert dry.inserted == report.inserted == a.rows and report.ok and missing == 0
        assert again.inserted == 0 and copied.ok
        (row,) = report.tables
        print(f"sqlite {sqlite3.sqlite_version}, python {sys.version.split()[0]}; target before "
              f"{row.target_before:,} rows (WAL), source {row.source_rows:,} rows, "
              f"target after {row.target_after:,}, missing after {row.missing_after}")
        print("| step | rows | seconds | rows/s |")
        print("|---|---:|---:|---:|")
        for name, n, secs in steps:
            print(f"| {name} | {n:,} | {secs:.2f} | {n / secs if secs else 0:,.0f} |")


if __name__ == "__main__":
    main()

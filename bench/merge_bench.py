"""Benchmark wirebot.hosttools.merge on scoreboard-sized databases, before and after, against SQLite itself.

``python bench/merge_bench.py [--rows 1000000,3000000] [--repeat 2] [--before REV] [--dir DIR]``

For each size it builds a WAL-mode primary holding ``rows/2`` events (half of them also on the
standby) and a standby holding those shared events plus ``rows`` events written during the failover
(random UUID keys, as the scoreboard writes them). Then, on a fresh copy of both files each time and in
a child process each (so that its peak RSS is its own), interleaved ``--repeat`` times:

* ``sqlite stored order``: SQLite's own ``INSERT OR IGNORE INTO main.events SELECT * FROM src.events``
  in one transaction (default cache), the figure the merge is held to;
* ``sqlite key order``: the same with ``ORDER BY id``;
* ``merge before``: ``merge_database`` (merge + verification) of ``files/agents/wirebot/merge.py`` at
  git revision ``--before`` (default: the commit before the merge became key-ordered);
* ``merge after``: ``merge_database`` of the working tree.

Every size is built first; the rounds then interleave sizes and variants (the machine is shared: a burst
of load then touches all cells alike). Prints one Markdown table per size (median seconds, ratio to
SQLite stored order, peak anonymous and file-backed resident memory: the merge maps both files, so its
RssFile is the page cache it reads through, shared and reclaimable; RssAnon is its own) and one table of
the growth from the smallest to each larger size (linear would be rows/rows0). Also checks the
merge's own answers (every source key on the target, nothing missing). ``uptime`` is printed with it:
the lab machine is shared, compare rows measured together.
"""

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
import uuid
from pathlib import Path

from wirebot.hosttools import merge

ROOT = Path(__file__).resolve().parents[1]
BEFORE_REV = "2c4a650"  # main before this bench's change to merge.py (WHERE NOT EXISTS, stored order)
VARIANTS = ["sqlite stored order", "sqlite key order", "merge before", "merge after"]
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


def build_pair(d, rows):
    """primary.db (WAL, rows/2 events, half shared) and standby.db (the shared ones + rows new)."""
    existing = rows // 2
    shared = existing // 2
    common = list(events(shared, "primary"))
    build(os.path.join(d, "primary.db"), [common, events(existing - shared, "primary")], True)
    build(os.path.join(d, "standby.db"), [common, events(rows, "standby")], False)
    return shared + rows


def load_merge(rev):
    """wirebot.hosttools.merge as it was at git revision ``rev`` (a module object)."""
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:files/agents/wirebot/merge.py"],
                          check=True, capture_output=True, text=True).stdout
    module = types.ModuleType("wirebot_merge_before")
    module.__file__ = f"{rev}:merge.py"
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(text, module.__file__, "exec"), module.__dict__)
    return module


def _memory(peaks, stop):
    """Peak RssAnon and RssFile of this process (KiB), sampled every 20 ms until ``stop``."""
    while not stop.is_set():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("RssAnon:", "RssFile:")):
                    key, value = line.split(":")
                    peaks[key] = max(peaks.get(key, 0), int(value.split()[0]))
        stop.wait(0.02)


def run_variant(variant, source, target, before_rev):
    """Child side: one timed run; prints 'seconds inserted missing anon_kib file_kib'."""
    peaks, stop = {}, threading.Event()
    sampler = threading.Thread(target=_memory, args=(peaks, stop), daemon=True)
    sampler.start()
    start = time.perf_counter()
    if variant.startswith("sqlite"):
        conn = sqlite3.connect(target, isolation_level=None)
        conn.execute("ATTACH DATABASE ? AS src", ("file:" + source + "?mode=ro",))
        conn.execute("BEGIN IMMEDIATE")
        order = " ORDER BY id" if variant == "sqlite key order" else ""
        conn.execute("INSERT OR IGNORE INTO main.events SELECT * FROM src.events" + order)
        inserted = conn.execute("SELECT changes()").fetchone()[0]
        conn.execute("COMMIT")
        conn.close()
        missing = -1  # not verified
    else:
        module = load_merge(before_rev) if variant == "merge before" else merge
        if variant == "merge before":
            start = time.perf_counter()  # not the git show
        report = module.merge_database(source, target)
        inserted, missing = report.inserted, report.missing_after
    seconds = time.perf_counter() - start
    stop.set()
    sampler.join()
    print(f"{seconds:.4f} {inserted} {missing} {peaks.get('RssAnon', 0)} {peaks.get('RssFile', 0)}")


def measure(variant, d, before_rev):
    """Parent side: fresh copies, run the child, return (seconds, inserted, missing, peak RSS MiB)."""
    work = os.path.join(d, "run")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    for name in ("primary.db", "standby.db"):
        shutil.copyfile(os.path.join(d, name), os.path.join(work, name))
    os.sync()
    child = subprocess.Popen([sys.executable, __file__, "--child", variant, os.path.join(work, "standby.db"),
                              os.path.join(work, "primary.db"), before_rev], stdout=subprocess.PIPE, text=True)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"merge_bench: {variant} failed (exit {child.returncode})")
    seconds, inserted, missing, anon, mapped = out.split()
    return float(seconds), int(inserted), int(missing), int(anon) / 1024, int(mapped) / 1024


def uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default="1000000,3000000", help="comma-separated sizes: events to merge")
    p.add_argument("--repeat", type=int, default=2, help="interleaved runs per variant (median)")
    p.add_argument("--before", default=BEFORE_REV, help="git revision of the 'merge before' column")
    p.add_argument("--only", help="comma-separated variants to run (default all)")
    p.add_argument("--dir", help="work directory (default: a temporary directory)")
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        return run_variant(*a.child)
    sizes = [int(n) for n in a.rows.split(",")]
    variants = a.only.split(",") if a.only else VARIANTS
    print(f"sqlite {sqlite3.sqlite_version}, python {sys.version.split()[0]}, before = {a.before}; "
          f"{a.repeat} interleaved runs per cell, median")
    medians = {}
    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        dirs, src_rows = {}, {}
        for rows in sizes:
            dirs[rows] = os.path.join(d, str(rows))
            os.makedirs(dirs[rows])
            src_rows[rows] = build_pair(dirs[rows], rows)
        load = [uptime()]
        runs = {(rows, v): [] for rows in sizes for v in variants}
        for _ in range(a.repeat):  # interleaved: every size and variant once per round
            for rows in sizes:
                for v in variants:
                    runs[rows, v].append(measure(v, dirs[rows], a.before))
        load.append(uptime())
    print(f"load before: {load[0].split('load average: ')[-1]}, after: {load[1].split('load average: ')[-1]}")
    for rows in sizes:
        for v in variants:
            results = runs[rows, v]
            assert all(r[1] == rows for r in results), (v, results)  # every new event inserted
            assert all(r[2] in (-1, 0) for r in results), (v, results)  # verified: nothing missing
        base = statistics.median(r[0] for r in runs[rows, variants[0]])
        print(f"\n{rows:,} events to merge (source {src_rows[rows]:,} rows, target {rows // 2:,})")
        print(f"| variant | median s | runs s | x {variants[0]} | peak RssAnon MiB | peak RssFile MiB | verified |")
        print("|---|---:|---|---:|---:|---:|---|")
        for v in variants:
            results = runs[rows, v]
            med = medians.setdefault(v, {})[rows] = statistics.median(r[0] for r in results)
            print(f"| {v} | {med:.2f} | {' / '.join(f'{r[0]:.2f}' for r in results)} | {med / base:.2f} | "
                  f"{max(r[3] for r in results):.0f} | {max(r[4] for r in results):.0f} | "
                  f"{'yes' if results[0][2] == 0 else 'no'} |")
    if len(sizes) > 1:
        first = sizes[0]
        print(f"\ngrowth from {first:,} events (linear = the rows ratio)")
        print("| variant | " + " | ".join(f"{n:,} / {first:,} (x{n / first:g})" for n in sizes[1:]) + " |")
        print("|---|" + "---:|" * (len(sizes) - 1))
        for v in variants:
            print(f"| {v} | " + " | ".join(f"{medians[v][n] / medians[v][first]:.2f}" for n in sizes[1:]) + " |")


if __name__ == "__main__":
    main()

"""Failback merge: bring the standby's writes into the primary's SQLite databases.

Rows are immutable facts keyed by a declared primary key (the event UUID), so merging is a set union:
each source table is copied with ``INSERT OR IGNORE ... SELECT ... ORDER BY <key>`` from the source,
ATTACHed read-only, in one ``BEGIN IMMEDIATE`` transaction per database (all or nothing, re-runnable).
Rows already on the target are never modified (OR IGNORE on the key; a row whose key holds a NULL, which
the key's unique index does not match, goes in only when no row with the same key IS on the target).
Afterwards one query per table checks that every source key is on the target.

Speed (bench/merge_bench.py): reading the source in key order makes the target's key index grow by
in-order merges instead of random inserts (random UUIDs otherwise thrash the page cache and make the
cost superlinear), the copy reads nothing of the target (no temporary copy of the rows; the
redundant ``WHERE NOT EXISTS`` is gone), and both files are read through mmap (no page copy per
lookup; the mapped pages are the kernel's page cache, shared and reclaimable, not the process's heap).
Tenant databases that exist only on the source are copied with the backup API and ``os.link`` (atomic,
never overwrites). Standard library only; run as ``python3 -m wirebot.hosttools.merge --help``.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import sqlite3
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple
from urllib.parse import quote

BUSY_TIMEOUT_MS = 30_000
CACHE_KIB = 65_536           # SQLite page cache per connection (KiB): enough for in-key-order merges
MMAP_BYTES = 4 << 30         # mmap window per attached file (address space; pages are the page cache)
EXIT_OK, EXIT_ERROR, EXIT_SCHEMA, EXIT_VERIFY = 0, 1, 2, 3
Plan = Dict[str, Tuple[List[str], List[str]]]  # table -> (columns, primary-key columns)


class MergeError(Exception):
    """A merge could not run (missing file, unreadable database, failed copy, ...)."""


class MergeSchemaError(MergeError):
    """The source holds a table the merge does not understand; nothing was changed in that database."""

    def __init__(self, db: str, table: str, reason: str):
        super().__init__(f"{db}: table {table!r}: {reason}")
        self.db, self.table, self.reason = db, table, reason


@dataclass
class TableReport:
    """Counts for one table. On a dry run ``inserted`` is the number that would be inserted."""

    table: str
    source_rows: int
    target_before: int
    inserted: int
    target_after: Optional[int] = None
    missing_after: Optional[int] = None


@dataclass
class DatabaseReport:
    """Result for one target database; ``action`` is merged, copied, dry-run or dry-run-copy."""

    path: str
    source: str
    action: str
    tables: List[TableReport] = field(default_factory=list)

    @property
    def inserted(self) -> int:
        return sum(t.inserted for t in self.tables)

    @property
    def missing_after(self) -> int:
        return sum(t.missing_after or 0 for t in self.tables)

    @property
    def ok(self) -> bool:
        return self.missing_after == 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(inserted=self.inserted, missing_after=self.missing_after, ok=self.ok)
        return d


def quote_name(name: str) -> str:
    """An SQL identifier quoted for SQLite (a table or column name from a database, never trusted)."""
    return '"' + name.replace('"', '""') + '"'


def _require(path: str, role: str) -> None:
    if not os.path.isfile(path):
        raise MergeError(f"{role} database not found: {path}")


def _connect(path: str, mode: str, role: str) -> sqlite3.Connection:
    _require(path, role)
    uri = "file:" + quote(os.path.abspath(path)) + "?mode=" + mode
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    except sqlite3.Error as e:
        raise MergeError(f"{role} database {path}: {e}") from e
    return conn


def open_pair(source: str, target: str) -> sqlite3.Connection:
    """Target read-write as ``main``, source read-only as ``src``."""
    _require(source, "source")
    _require(target, "target")
    if os.path.samefile(source, target):
        raise MergeError(f"source and target are the same file: {target}")
    conn = _connect(target, "rw", "target")
    try:
        conn.execute("ATTACH DATABASE ? AS src", ("file:" + quote(os.path.abspath(source)) + "?mode=ro",))
        for schema in ("main", "src"):
            conn.execute(f"PRAGMA {schema}.mmap_size = {MMAP_BYTES}")
        conn.execute(f"PRAGMA src.cache_size = -{CACHE_KIB}")
    except sqlite3.Error as e:
        conn.close()
        raise MergeError(f"source database {source}: {e}") from e
    return conn


def data_tables(conn: sqlite3.Connection, schema: str) -> Dict[str, str]:
    """The tables to merge: SQLite's own (sqlite_*) and Litestream's bookkeeping (_litestream_*, present
    in every replicated database and in its restores) are not application data and are left out."""
    rows = conn.execute(
        f"SELECT name, sql FROM {schema}.sqlite_master WHERE type = 'table' "
        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
        "AND name NOT LIKE '\\_litestream\\_%' ESCAPE '\\' ORDER BY name"
    )
    return {name: sql or "" for name, sql in rows}


def columns(conn: sqlite3.Connection, schema: str, table: str) -> List[Tuple[str, str, int]]:
    """(name, declared type, position in primary key or 0) per column."""
    return [(r[1], r[2] or "", r[5]) for r in conn.execute(f"PRAGMA {schema}.table_info({quote_name(table)})")]


def _primary_key(db: str, table: str, cols: List[Tuple[str, str, int]], sql: str, side: str) -> List[str]:
    pk = [c for c in sorted(cols, key=lambda c: c[2]) if c[2]]
    if not pk:
        raise MergeSchemaError(db, table, f"no declared PRIMARY KEY on the {side}; rows cannot be matched")
    without_rowid = re.search(r"\)\s*WITHOUT\s+ROWID\s*;?\s*$", sql, re.IGNORECASE) is not None
    if len(pk) == 1 and pk[0][1].upper() == "INTEGER" and not without_rowid:
        raise MergeSchemaError(
            db, table, f"INTEGER PRIMARY KEY {pk[0][0]!r} on the {side} is a rowid alias; rowids are "
            "assigned per host and collide across primary and standby, so rows cannot be matched by key")
    return [c[0] for c in pk]


def _plan(conn: sqlite3.Connection, db: str) -> Plan:
    """Check every source table against the target; raise MergeSchemaError on anything unexpected."""
    target_tables = data_tables(conn, "main")
    plan: Plan = {}
    for table, sql in data_tables(conn, "src").items():
        if table not in target_tables:
            raise MergeSchemaError(db, table, "exists on the source but not on the target")
        scols, tcols = columns(conn, "src", table), columns(conn, "main", table)
        snames, tnames = {c[0] for c in scols}, {c[0] for c in tcols}
        if snames != tnames:
            raise MergeSchemaError(db, table, f"columns differ: only on source {sorted(snames - tnames)}, "
                                   f"only on target {sorted(tnames - snames)}")
        spk = _primary_key(db, table, scols, sql, "source")
        tpk = _primary_key(db, table, tcols, target_tables[table], "target")
        if set(spk) != set(tpk):
            raise MergeSchemaError(db, table, f"primary keys differ: source {spk}, target {tpk}")
        plan[table] = ([c[0] for c in scols], spk)
    return plan


def check_schema(source: str, target: str) -> Plan:
    """Validate that ``source`` can be merged into ``target``; returns table -> (columns, key)."""
    conn = open_pair(source, target)
    try:
        return _plan(conn, target)
    finally:
        conn.close()


def count_rows(conn: sqlite3.Connection, schema: str, table: str) -> int:
    """Rows of ``schema.table``."""
    return conn.execute(f"SELECT count(*) FROM {schema}.{quote_name(table)}").fetchone()[0]


def _absent(table: str, pk: List[str]) -> str:
    """SQL condition: the source row ``s`` has no row with the same key on the target (IS: NULL keys
    match; the target's key index is used)."""
    match = " AND ".join(f"m.{quote_name(k)} IS s.{quote_name(k)}" for k in pk)
    return f"NOT EXISTS (SELECT 1 FROM main.{quote_name(table)} AS m WHERE {match})"


def missing_sql(table: str, pk: List[str], select: str) -> str:
    """``select`` FROM source rows whose key is not on the target: one pass over the source's key
    index (in key order) with one index lookup on the target per key."""
    return f"SELECT {select} FROM src.{quote_name(table)} AS s WHERE {_absent(table, pk)}"


def _insert_sql(table: str, cols: List[str], pk: List[str]) -> List[str]:
    """The statements that copy the source rows whose key is not on the target.

    A key without NULLs is matched by OR IGNORE on the target's key index, in key order, and the
    statement reads nothing of the target, so SQLite streams it (a statement that also read the target
    would first copy the whole result into a temporary table). A key holding a NULL never collides
    (SQLite lets NULLs into a rowid table's PRIMARY KEY), so those rows, rare, go in by a second
    statement only when no row with the same key IS on the target."""
    names = ", ".join(quote_name(c) for c in cols)
    select = ", ".join(f"s.{quote_name(c)}" for c in cols)
    into = (f"INSERT OR IGNORE INTO main.{quote_name(table)} ({names}) SELECT {select} "
            f"FROM src.{quote_name(table)} AS s ")
    not_null = " AND ".join(f"s.{quote_name(k)} IS NOT NULL" for k in pk)
    any_null = " OR ".join(f"s.{quote_name(k)} IS NULL" for k in pk)
    order = ", ".join(f"s.{quote_name(k)}" for k in pk)
    return [into + f"WHERE {not_null} ORDER BY {order}",
            into + f"WHERE ({any_null}) AND {_absent(table, pk)}"]


def merge_database(source: str, target: str, dry_run: bool = False) -> DatabaseReport:
    """Insert the source's rows missing from the target, then verify that every source key is there."""
    conn = open_pair(source, target)
    report = DatabaseReport(target, source, "dry-run" if dry_run else "merged")
    stage = "merge (rolled back, target unchanged)"
    try:
        conn.execute("BEGIN" if dry_run else "BEGIN IMMEDIATE")
        try:
            plan = _plan(conn, target)
            for table, (cols, pk) in plan.items():
                row = TableReport(table, count_rows(conn, "src", table), count_rows(conn, "main", table), 0)
                if dry_run:
                    row.inserted = conn.execute(missing_sql(table, pk, "count(*)")).fetchone()[0]
                else:
                    for statement in _insert_sql(table, cols, pk):
                        conn.execute(statement)
                        row.inserted += conn.execute("SELECT changes()").fetchone()[0]
                report.tables.append(row)
            conn.execute("ROLLBACK" if dry_run else "COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        stage = "verification"
        if not dry_run:  # verification reads the committed state
            for row in report.tables:
                row.target_after = count_rows(conn, "main", row.table)
                row.missing_after = conn.execute(
                    missing_sql(row.table, plan[row.table][1], "count(*)")).fetchone()[0]
    except sqlite3.Error as e:
        raise MergeError(f"{target}: {stage} from {source} failed: {e}") from e
    finally:
        conn.close()
    return report


def copy_database(source: str, target: str, dry_run: bool = False) -> DatabaseReport:
    """Copy a source-only database: backup API into a temp file beside the target, integrity_check,
    then link into place atomically. Never overwrites an existing target."""
    if os.path.exists(target):
        raise MergeError(f"refusing to overwrite existing target database: {target}")
    src = _connect(source, "ro", "source")
    report = DatabaseReport(target, source, "dry-run-copy" if dry_run else "copied")
    tmp = None
    try:
        counts = {t: count_rows(src, "main", t) for t in data_tables(src, "main")}
        report.tables = [TableReport(t, n, 0, n) for t, n in counts.items()]
        if dry_run:
            return report
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(target) + ".",
                                   suffix=".tmp", dir=os.path.dirname(os.path.abspath(target)))
        os.close(fd)
        dst = sqlite3.connect(tmp, isolation_level=None)
        try:
            src.backup(dst)
            check = [r[0] for r in dst.execute("PRAGMA integrity_check")]
            for row in report.tables:
                row.target_after = count_rows(dst, "main", row.table)
                row.missing_after = max(row.source_rows - row.target_after, 0)
        finally:
            dst.close()
        if check != ["ok"]:
            raise MergeError(f"{target}: integrity_check of the copy failed: {check[:5]}")
        os.chmod(tmp, os.stat(source).st_mode & 0o777)
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # hand the file to the directory's owner
            st = os.stat(os.path.dirname(os.path.abspath(target)))
            os.chown(tmp, st.st_uid, st.st_gid)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        try:
            os.link(tmp, target)  # atomic and fails if the target appeared meanwhile
        except FileExistsError:
            raise MergeError(f"refusing to overwrite existing target database: {target}") from None
        dfd = os.open(os.path.dirname(os.path.abspath(target)), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except sqlite3.Error as e:
        raise MergeError(f"{target}: copy from {source} failed: {e}") from e
    finally:
        src.close()
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
    return report


def check_tenant_dirs(source_dir: str, target_dir: str, pattern: str = "*.db") -> List[Tuple[str, str, bool]]:
    """(source, target, target exists) per source DB; schema-checks the pairs before anything changes."""
    for d, role in ((source_dir, "source"), (target_dir, "target")):
        if not os.path.isdir(d):
            raise MergeError(f"{role} tenant directory not found: {d}")
    pairs = []
    for name in sorted(os.listdir(source_dir)):
        src, tgt = os.path.join(source_dir, name), os.path.join(target_dir, name)
        if fnmatch.fnmatch(name, pattern) and not name.startswith(".") and os.path.isfile(src):
            pairs.append((src, tgt, os.path.exists(tgt)))
    for src, tgt, exists in pairs:
        if exists:
            check_schema(src, tgt)
    return pairs


def merge_tenant_dirs(source_dir: str, target_dir: str, pattern: str = "*.db",
                      dry_run: bool = False) -> List[DatabaseReport]:
    """Merge DBs present on both sides, copy those only on the source; reports for both kinds."""
    return [merge_database(s, t, dry_run) if exists else copy_database(s, t, dry_run)
            for s, t, exists in check_tenant_dirs(source_dir, target_dir, pattern)]


def format_table(reports: List[DatabaseReport]) -> str:
    """Compact text table, one line per database table."""
    head = ("database", "action", "table", "source", "before", "inserted", "after", "missing")
    lines = [head]
    for r in reports:
        for t in r.tables or [TableReport("-", 0, 0, 0)]:
            lines.append((r.path, r.action, t.table, str(t.source_rows), str(t.target_before),
                          str(t.inserted), "-" if t.target_after is None else str(t.target_after),
                          "-" if t.missing_after is None else str(t.missing_after)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def main(argv: Optional[List[str]] = None) -> int:
    """CLI entry point; exit 0 ok, 1 error, 2 schema error, 3 verification failed."""
    p = argparse.ArgumentParser(prog="python3 -m wirebot.hosttools.merge", description=__doc__.splitlines()[0])
    p.add_argument("--source", help="standby's copy of the database (read-only)")
    p.add_argument("--target", help="primary's database (receives the rows)")
    p.add_argument("--tenants-source", help="directory of the standby's tenant databases")
    p.add_argument("--tenants-target", help="directory of the primary's tenant databases")
    p.add_argument("--pattern", default="*.db", help="tenant database file pattern (default *.db)")
    p.add_argument("--dry-run", action="store_true", help="report what would be merged, change nothing")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    a = p.parse_args(argv)
    if bool(a.source) != bool(a.target) or bool(a.tenants_source) != bool(a.tenants_target):
        p.error("--source/--target and --tenants-source/--tenants-target go in pairs")
    if not (a.source or a.tenants_source):
        p.error("nothing to do: give --source/--target and/or --tenants-source/--tenants-target")
    try:
        if a.source:  # check every schema before changing anything
            check_schema(a.source, a.target)
        if a.tenants_source:
            check_tenant_dirs(a.tenants_source, a.tenants_target, a.pattern)
        reports = [merge_database(a.source, a.target, a.dry_run)] if a.source else []
        if a.tenants_source:
            reports += merge_tenant_dirs(a.tenants_source, a.tenants_target, a.pattern, a.dry_run)
    except MergeSchemaError as e:
        print(f"merge: schema error, nothing changed in that database: {e}", file=sys.stderr)
        return EXIT_SCHEMA
    except (MergeError, OSError, sqlite3.Error) as e:
        print(f"merge: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    ok = all(r.ok for r in reports)
    if a.json:
        print(json.dumps({"ok": ok, "dry_run": a.dry_run, "databases": [r.to_dict() for r in reports]}))
    else:
        print(format_table(reports))
    if not ok:
        print("merge: verification failed: source rows missing on the target", file=sys.stderr)
    return EXIT_OK if ok else EXIT_VERIFY


if __name__ == "__main__":
    sys.exit(main())

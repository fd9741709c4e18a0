"""Host-side helpers of the incident playbooks (tasks/failover.py, tasks/recovery.py, tasks/status.py).

  python3 -m wirebot.hosttools.incident witness --config /etc/wirebot/standby.yml
      The witness's view right now (public endpoint + Cloudflare API), as JSON (wirebot.standby.witness.check).
  python3 -m wirebot.hosttools.incident snapshot --db PATH --out FILE
      A consistent copy of SQLite database PATH (backup API: safe while it is open) at FILE, written to
      FILE.tmp then renamed, without Litestream's bookkeeping tables (_litestream_seq, _litestream_lock:
      per host, not data; the merge would refuse them); prints {"db", "out", "bytes", "tables": {table:
      rows}, "dropped": [...]}. Exit 1 if PATH is missing.
  python3 -m wirebot.hosttools.incident keys --source S --target T [--json]
      Set comparison of primary keys: for every table of S with a declared primary key, how many keys S
      has, how many T has, and how many of S's are missing on T (with a sample). S and T are files, or
      both directories (every *.db of S against the same name in T; a DB missing on T counts all its
      keys missing). Exit 0 when nothing is missing, 3 when something is, 1 on errors.
  python3 -m wirebot.hosttools.incident copy --source S --target T
      Install standby copy S as database T, which the primary does not have (wirebot.hosttools.merge's
      copy_database: backup API, integrity check, the folder's owner, never overwrites); prints the
      merge's JSON report shape {"ok", "databases": [...]}.

The primary's epoch is not set here: the replicator is the only writer of its state file, and recovery asks
it (``python3 -m wirebot.hosttools.ctl --config /etc/wirebot/replicator.yml set-epoch --epoch N``).

Standard library only (plus the agents' own modules); Python 3.9.
"""

import argparse
import json
import os
import sqlite3
import sys

from wirebot.common import config
from wirebot.hosttools import merge

EXIT_OK, EXIT_ERROR, EXIT_MISSING = 0, 1, 3
LITESTREAM_PREFIX = "_litestream_"  # Litestream's own tables in every replicated database


def _print(data):
    sys.stdout.write(json.dumps(data, sort_keys=True) + "\n")


def witness_now(config_path):
    """wirebot.standby.witness.check with the standby's settings and API token."""
    from wirebot.standby import agent_config as standby_config
    from wirebot.standby import witness

    settings = standby_config.load(config_path)
    token = config.read_secret(settings["cloudflare_api_token_file"])
    return witness.check(settings["witness"], token)


def snapshot(db, out):
    """Copy ``db`` consistently to ``out`` (atomic rename); returns a small report."""
    if not os.path.isfile(db):
        raise FileNotFoundError(f"database not found: {db}")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp"
    for path in (tmp, out + "-wal", out + "-shm"):
        if os.path.exists(path):
            os.unlink(path)
    source = sqlite3.connect("file:" + os.path.abspath(db) + "?mode=ro", uri=True, timeout=30)
    try:
        target = sqlite3.connect(tmp)
        try:
            source.backup(target)
            target.execute("PRAGMA journal_mode=DELETE")
            names = target.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            dropped = [name for (name,) in names if name.startswith(LITESTREAM_PREFIX)]
            for name in dropped:
                target.execute(f"DROP TABLE {merge.quote_name(name)}")
            tables = {name: merge.count_rows(target, "main", name)
                      for name in merge.data_tables(target, "main")}
        finally:
            target.close()
    finally:
        source.close()
    os.chmod(tmp, 0o640)  # a copied tenant DB keeps this mode (wirebot.hosttools.merge copy_database)
    os.replace(tmp, out)
    return {"db": db, "out": out, "bytes": os.path.getsize(out), "tables": tables, "dropped": dropped}


def _keyed_tables(conn, schema):
    tables = {}
    for name in merge.data_tables(conn, schema):
        columns = merge.columns(conn, schema, name)
        keys = [c[0] for c in sorted(columns, key=lambda c: c[2]) if c[2]]
        if keys:
            tables[name] = keys
    return tables


def compare_db(source, target, sample=5):
    """{table: {source_keys, target_keys, missing, sample}} for the keyed tables of ``source``."""
    if not os.path.isfile(target):
        conn = sqlite3.connect("file:" + os.path.abspath(source) + "?mode=ro", uri=True)
        try:
            result = {}
            for table in _keyed_tables(conn, "main"):
                count = merge.count_rows(conn, "main", table)
                result[table] = {"source_keys": count, "target_keys": 0, "missing": count, "sample": []}
            return result
        finally:
            conn.close()
    conn = merge.open_pair(source, target)
    try:
        target_tables = merge.data_tables(conn, "main")
        result = {}
        for table, keys in _keyed_tables(conn, "src").items():
            select = ", ".join(f"s.{merge.quote_name(k)}" for k in keys)
            count_source = conn.execute(f"SELECT count(*) FROM src.{merge.quote_name(table)}").fetchone()[0]
            if table not in target_tables:
                result[table] = {"source_keys": count_source, "target_keys": 0, "missing": count_source,
                                 "sample": []}
                continue
            count_target = conn.execute(f"SELECT count(*) FROM main.{merge.quote_name(table)}").fetchone()[0]
            missing = conn.execute(merge.missing_sql(table, keys, "count(*)")).fetchone()[0]
            rows = conn.execute(merge.missing_sql(table, keys, select) + f" LIMIT {int(sample)}").fetchall()
            result[table] = {"source_keys": count_source, "target_keys": count_target, "missing": missing,
                             "sample": [list(row) if len(row) > 1 else row[0] for row in rows]}
        return result
    finally:
        conn.close()


def compare(source, target):
    """{path of target DB: table report} for a file pair or a directory pair."""
    if os.path.isdir(source):
        reports = {}
        for name in sorted(os.listdir(source)):
            path = os.path.join(source, name)
            if name.endswith(".db") and not name.startswith(".") and os.path.isfile(path):
                reports[os.path.join(target, name)] = compare_db(path, os.path.join(target, name))
        return reports
    return {target: compare_db(source, target)}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m wirebot.hosttools.incident",
                                     description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("witness", help="the witness's view right now")
    w.add_argument("--config", default="/etc/wirebot/standby.yml")
    s = sub.add_parser("snapshot", help="consistent copy of a SQLite database")
    s.add_argument("--db", required=True)
    s.add_argument("--out", required=True)
    k = sub.add_parser("keys", help="set comparison of primary keys")
    k.add_argument("--source", required=True)
    k.add_argument("--target", required=True)
    c = sub.add_parser("copy", help="install a database the target does not have")
    c.add_argument("--source", required=True)
    c.add_argument("--target", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "witness":
            _print(witness_now(args.config))
        elif args.command == "snapshot":
            _print(snapshot(args.db, args.out))
        elif args.command == "keys":
            reports = compare(args.source, args.target)
            missing = sum(t["missing"] for tables in reports.values() for t in tables.values())
            _print({"ok": missing == 0, "missing": missing, "databases": reports})
            return EXIT_OK if missing == 0 else EXIT_MISSING
        else:
            report = merge.copy_database(args.source, args.target)
            _print({"ok": report.ok, "dry_run": False, "databases": [report.to_dict()]})
    except (OSError, sqlite3.Error, merge.MergeError, config.ConfigError, RuntimeError, ValueError) as exc:
        print(f"wirebot.hosttools.incident {args.command}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

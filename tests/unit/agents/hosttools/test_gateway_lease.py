"""wirebot.hosttools.gateway_lease: a restored openclaw.sqlite loses the primary's gateway-owner lease, nothing else."""

import json
import sqlite3

from wirebot.hosttools import gateway_lease

SCHEMA = ("CREATE TABLE state_leases (scope TEXT NOT NULL, lease_key TEXT NOT NULL, owner TEXT NOT NULL, "
          "expires_at INTEGER, heartbeat_at INTEGER, payload_json TEXT, created_at INTEGER NOT NULL, "
          "updated_at INTEGER NOT NULL, PRIMARY KEY (scope, lease_key)) STRICT")


def make(path, rows):
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(SCHEMA)
    for scope, key, host in rows:
        payload = json.dumps({"owner": {"pid": 991, "host": host}, "port": 18789}) if host else "{}"
        conn.execute("INSERT INTO state_leases VALUES (?, ?, 'o', 2, 1, ?, 0, 0)", (scope, key, payload))
    conn.commit()
    conn.close()


def left(path):
    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute("SELECT scope, lease_key FROM state_leases").fetchall())
    finally:
        conn.close()


def test_only_another_hosts_gateway_owner_lease_is_dropped(tmp_path):
    db = str(tmp_path / "openclaw.sqlite")
    make(db, [("gateway-owner", "global", "primary"), ("gateway-owner", "mine", "standby"),
              ("other-scope", "global", "primary"), ("gateway-owner", "unnamed", None)])
    report = gateway_lease.clear(db, "standby")
    assert report["cleared"] == ["primary"]
    assert left(db) == [("gateway-owner", "mine"), ("gateway-owner", "unnamed"), ("other-scope", "global")]
    assert gateway_lease.clear(db, "standby")["cleared"] == []  # idempotent


def test_a_missing_or_foreign_database_is_left_alone_and_never_fails(tmp_path, capsys):
    assert gateway_lease.clear(str(tmp_path / "absent.sqlite"), "standby")["note"] == "no database yet"
    other = tmp_path / "other.sqlite"
    sqlite3.connect(str(other)).close()
    assert "left alone" in gateway_lease.clear(str(other), "standby")["note"]
    assert gateway_lease.main(["--db", str(other), "--host", "standby"]) == 0
    assert json.loads(capsys.readouterr().out)["component"] == "gateway-lease"

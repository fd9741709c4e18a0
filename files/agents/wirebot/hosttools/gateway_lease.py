"""Before the OpenClaw gateway starts (its unit's ExecStartPre): drop an owner lease of another host.

OpenClaw records the gateway that owns a state directory in ``state_leases`` of ``openclaw.sqlite``
(scope ``gateway-owner``; the payload names the owner's host and pid; it expires 5 minutes after its last
heartbeat) and refuses to start while another owner's lease is live. Activation restores that database
from the primary's Litestream replica, so the standby's copy carries the primary's lease: the standby's
gateway would wait up to 5 minutes although no gateway of that host can ever use this local copy.
Leases naming this host are left to OpenClaw (it checks its own pids).

``python3 -m wirebot.hosttools.gateway_lease --db PATH [--host NAME]`` prints one JSON line; it never fails the
start: a missing file, table or an unreadable database is reported and left alone.
"""

import argparse
import json
import os
import socket
import sqlite3
import sys

SCOPE = "gateway-owner"


def foreign_leases(conn, host):
    """(lease_key, owner host) of gateway-owner leases whose payload names a host other than ``host``."""
    rows = conn.execute("SELECT lease_key, payload_json FROM state_leases WHERE scope = ?", (SCOPE,)).fetchall()
    found = []
    for key, payload in rows:
        try:
            owner = ((json.loads(payload or "{}") or {}).get("owner") or {}).get("host")
        except (ValueError, AttributeError):
            owner = None
        if owner and owner != host:
            found.append((key, owner))
    return found


def clear(db, host):
    """Delete the foreign gateway-owner leases in ``db``; returns a JSON-able report."""
    if not os.path.exists(db):
        return {"db": db, "cleared": [], "note": "no database yet"}
    try:
        conn = sqlite3.connect(db, timeout=10)
        try:
            with conn:
                found = foreign_leases(conn, host)
                for key, _owner in found:
                    conn.execute("DELETE FROM state_leases WHERE scope = ? AND lease_key = ?", (SCOPE, key))
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return {"db": db, "cleared": [], "note": f"left alone: {exc}"}
    return {"db": db, "cleared": [owner for _key, owner in found], "host": host}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m wirebot.hosttools.gateway_lease",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="the gateway's openclaw.sqlite")
    parser.add_argument("--host", default=socket.gethostname(), help="this host's name (default: hostname)")
    args = parser.parse_args(argv)
    print(json.dumps({"component": "gateway-lease", **clear(args.db, args.host)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

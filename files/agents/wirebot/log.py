"""Structured logging: every agent decision is one JSON line on stdout (journald captures it).

Usage: ``log("standby", "state-change", reason="...", frm="STANDBY", to="SUSPECT")``.
Never pass secrets (keys, tokens, webhook URLs) as fields.
"""

import datetime
import json
import sys
import threading

_lock = threading.Lock()


def _now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def log(component, event, level="info", **fields):
    """Print one JSON line {"ts", "level", "component", "event", **fields} to stdout and flush.

    Values that are not JSON-serialisable are rendered with str(); logging never raises.
    """
    record = {"ts": _now_iso(), "level": level, "component": component, "event": event}
    record.update(fields)
    try:
        line = json.dumps(record, default=str, sort_keys=False)
    except (TypeError, ValueError):  # e.g. circular structures
        line = json.dumps({"ts": record["ts"], "level": level, "component": component,
                           "event": event, "fields": repr(fields)})
    with _lock:
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except (OSError, ValueError):  # closed stdout: nothing sensible left to do
            pass

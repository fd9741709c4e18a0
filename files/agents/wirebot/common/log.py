"""Structured logging: every agent decision is one JSON line on stdout (journald captures it).

Usage: ``log("standby", "state-change", reason="...", frm="STANDBY", to="SUSPECT")``.
Never pass secrets (keys, tokens, webhook URLs) as fields.

Each line is stored in the journal at its level's syslog priority: when stdout is the journal's
stream (systemd sets ``JOURNAL_STREAM`` to the stream's ``device:inode``), the line starts with the
sd-daemon prefix ``<N>`` (sd-daemon(3)), which journald strips and uses as the priority because units
keep ``SyslogLevelPrefix=yes`` (the default). So ``journalctl -p warning -u 'wirebot-*'`` shows
exactly the warning, error and alert lines. Anywhere else (a terminal, a pipe, tests) the line is
plain JSON.
"""

import datetime
import json
import os
import sys
import threading

_lock = threading.Lock()
# level -> syslog priority (sd-daemon(3)); an unknown level is stored as info.
PRIORITY = {"emerg": 0, "alert": 1, "critical": 2, "error": 3, "warning": 4, "notice": 5, "info": 6,
            "debug": 7}


def _now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def to_journal(stream=None):
    """True when ``stream`` (default stdout) is the journal's stream named by $JOURNAL_STREAM."""
    value = os.environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in value.split(":"))
        status = os.fstat((stream or sys.stdout).fileno())
    except (ValueError, OSError, AttributeError):  # unset, malformed, or no real file descriptor
        return False
    return status.st_dev == device and status.st_ino == inode


def prefix(level, journal):
    """The sd-daemon priority prefix for ``level`` when writing to the journal, else ''."""
    return "<{}>".format(PRIORITY.get(level, PRIORITY["info"])) if journal else ""


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
            sys.stdout.write(prefix(level, to_journal()) + line + "\n")
            sys.stdout.flush()
        except (OSError, ValueError):  # closed stdout: nothing sensible left to do
            pass

"""Drill deadline: alert when the fire-drill log shows no passed drill within ``max_age_days``.

The monthly drill (run from the control machine's timer) appends one JSON line per run to the
primary's fire-drill log (``"result": "passed" | "failed"``, ``"finished_at"`` ISO 8601). The
replicator calls ``DrillWatch.check`` from its main loop; a drill that never ran, failed, or stopped
before writing its line leaves the last pass older than the limit, and the watch alerts
("drill-overdue") once, then again every ``repeat_seconds`` while it stays overdue, and says so once
when a passing drill is logged again. A log it cannot read counts as "no passed drill" (the reason
is in the alert). With no passed drill at all the limit counts from ``since`` (when the replicator
first watched, persisted in its state file), so a new installation has ``max_age_days`` for its first
drill. ``last_pass`` and ``since`` are also metrics (``wirebot_replicator_drill_*``).
"""

import datetime
import json
import os

from wirebot.common.log import log

COMPONENT = "drillwatch"
TAIL_BYTES = 256 * 1024  # a drill line is a few kB; the last passes are in the file's tail


def _timestamp(text):
    try:
        moment = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def _iso(moment):
    return datetime.datetime.fromtimestamp(moment, datetime.timezone.utc).isoformat(timespec="seconds")


def last_pass(path):
    """(unix time of the newest passed drill in the log or None, why not when None)."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - TAIL_BYTES))
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return None, f"{path} does not exist: no drill has been logged"
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror or exc}"
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("result") == "passed":
            moment = _timestamp(record.get("finished_at") or record.get("started_at"))
            if moment is not None:
                return moment, ""
    return None, f"no passed drill in {path}"


class DrillWatch:
    """Compare the last passed drill with ``max_age_days``; alert when overdue (see module doc)."""

    def __init__(self, path, max_age_days, alerter, since, check_seconds=300.0, repeat_seconds=86400.0):
        self.path = path
        self.since = since
        self.max_age = float(max_age_days) * 86400
        self.alerter = alerter
        self.check_seconds = check_seconds
        self.repeat_seconds = repeat_seconds
        self.last_pass = None
        self.overdue = False
        self._next_check = 0.0
        self._alerted_at = None

    def check(self, now):
        """Read the log at most every ``check_seconds``; alert when overdue. Returns ``overdue``."""
        if now < self._next_check:
            return self.overdue
        self._next_check = now + self.check_seconds
        self.last_pass, why = last_pass(self.path)
        overdue = now - (self.last_pass if self.last_pass is not None else self.since) > self.max_age
        days = self.max_age / 86400
        if overdue:
            if self._alerted_at is None or now - self._alerted_at >= self.repeat_seconds:
                self._alerted_at = now
                if self.last_pass is None:
                    when = f"{why}; watched since {_iso(self.since)} ({(now - self.since) / 86400:.1f} days)"
                else:
                    ago = (now - self.last_pass) / 86400
                    when = f"the last passed drill finished {_iso(self.last_pass)} ({ago:.1f} days ago)"
                self.alerter.send("drill-overdue", f"no drill passed in the last {days:g} days: {when}; run the "
                                  "drill (.venv/bin/pyinfra -y inventory.py tasks/drill.py) and check the drill "
                                  "timer", path=self.path)
        elif self.overdue:
            log(COMPONENT, "drill-passed-again", last_pass=self.last_pass, path=self.path)
            self._alerted_at = None
        self.overdue = overdue
        return overdue

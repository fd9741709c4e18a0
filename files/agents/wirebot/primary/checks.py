"""The primary's slow local checks, run by their own thread into a cache the beats read (docs/fencing.md).

A ``systemctl is-active`` on a CPU-starved host can take seconds (soak, lab 5: 7 s). Run on the heartbeat
thread, it held every lease beat behind it and the serving lease lapsed on a primary that was only slow.
Here one thread runs the checks every ``period`` seconds and keeps each result with the (monotonic) time
it was taken; the beats read the cache and never wait for a check.

Safety: a beat claims only what the last check saw, and a result older than ``max_age`` is not reported
as current: ``read`` gives ``STALE`` instead of the value. The primary sets ``max_age`` to the lease's
length L: a check older than one lease describes a lease period already over, and the standby already
allows the primary's own view to lag the edge's by L (its grace k x P + L).
"""

import threading
import time

from wirebot.common.log import log

COMPONENT = "checks"
STALE = "unknown"  # what a beat says instead of a result older than max_age (or never taken)


class Checks:
    """{name: check()} run together by ``run``; ``read(name)`` -> (value or STALE, age in seconds or None)."""

    def __init__(self, checks, max_age, clock=time.monotonic):
        self.checks = dict(checks)
        self.max_age = float(max_age)
        self.clock = clock
        self._results = {}  # name -> (value, taken_at monotonic)
        self._lock = threading.Lock()

    def refresh(self):
        """Run every check once; a check that raises keeps its old result (which then ages into STALE)."""
        for name, check in self.checks.items():
            started = self.clock()  # the result may show the state as of the check's start: age from there
            try:
                value = check()
            except Exception as exc:  # noqa: BLE001 - a failed check is a missing result, never fatal
                log(COMPONENT, "check-failed", level="warning", check=name, reason=f"{type(exc).__name__}: {exc}")
                continue
            with self._lock:
                self._results[name] = (value, started)

    def read(self, name):
        """(value, age): the last result and its age; (STALE, age or None) when older than max_age."""
        with self._lock:
            value, taken_at = self._results.get(name, (None, None))
        if taken_at is None:
            return STALE, None
        age = max(0.0, self.clock() - taken_at)
        return (value if age <= self.max_age else STALE), round(age, 3)

    def read_each(self, name, keys):
        """A {key: value} result (the services' states) as ``read`` gives it, with each of ``keys`` STALE when
        the whole result is."""
        value, _age = self.read(name)
        return {key: STALE for key in keys} if value == STALE else dict(value)

    def run(self, stop, period):
        """Refresh every ``period`` seconds until ``stop`` (threading.Event) is set."""
        while not stop.is_set():
            started = self.clock()
            self.refresh()
            stop.wait(max(0.0, period - (self.clock() - started)))

"""File sync: debounced rsync of each configured path to the standby, plus a periodic full sync.

Per path the state machine is: clean -> pending (a change seen) -> syncing -> clean | failing.
Debounce is leading-edge: a change is synced at once (after ``SETTLE_SECONDS`` of quiet) when the
path's last rsync began at least ``debounce_seconds`` ago; otherwise it waits until that window
ends, so a burst of changes costs one rsync at its start and one at the window's end. Hence an
isolated change reaches the standby after about one rsync's time, any change after at most
``debounce_seconds`` + one rsync, and a path is rsynced at most once per debounce window (full
syncs, forced syncs and retries aside). Every path is synced every ``full_sync_minutes`` regardless,
and a failure is retried after 1 s, 2 s, 4 s ... capped at ``retry_max_seconds``. An alert goes out
after 3 consecutive failures of a path and again when it recovers. A missing source path is logged
(once per change of that fact) and skipped.

The destination is ``{replica_root}/files/{source path without leading /}/`` on the standby; the
command is built by the pure ``rsync_command``. Excluded absolute paths (Litestream's databases with
their -wal/-shm: a copy of a live WAL database can be torn; the gateway's per-host lock files) are never
copied, and changes to them do not trigger a sync. Tests inject ``command_for`` (e.g. ``local_command``
to a temp dir) and/or ``runner``.
"""

import fnmatch
import os
import subprocess
import threading
import time

from wirebot.common.log import log

COMPONENT = "filesync"
ALERT_AFTER = 3
# A change is sent once no further change came for this long (50 ms): a file written in several
# steps (truncate, write, close) goes in one rsync, not half of it now and the rest a window later.
SETTLE_SECONDS = 0.05
OUTPUT_TAIL = 2000
RSYNC_FLAGS = ("-rlpt", "--delete", "--mkpath")  # what the standby's wirebot-replica-rsync accepts


def remote_path(replica_root, src):
    """Where ``src`` lands under the replica root: {replica_root}/files/{src without leading /}/."""
    return "{}/files/{}/".format(replica_root.rstrip("/"), src.strip("/"))


def exclude_args(src, exclude):
    """``--exclude=/rel`` (anchored at the transfer root) for each excluded absolute path (or glob, where
    ``*`` stays within one folder, as in rsync) under ``src``."""
    root = os.path.abspath(src)
    return [f"--exclude=/{os.path.relpath(path, root)}" for path in exclude
            if os.path.abspath(path).startswith(root + os.sep)]


def excluded(path, exclude):
    """True when ``path`` is one of the excluded absolute paths (or matches an excluded glob) or lies
    under one."""
    path = os.path.abspath(path)
    for e in map(os.path.abspath, exclude):
        if path == e or path.startswith(e.rstrip("/") + "/"):
            return True
        if any(c in e for c in "*?[") and fnmatch.fnmatchcase(path, e):
            return True
    return False


def rsync_command(src, user, host, ssh_key, known_hosts, replica_root, rsync="rsync", exclude=()):
    """argv of the rsync over SSH for ``src`` (pure).

    ``--mkpath`` (rsync >= 3.2.3 on both ends) creates the destination's parent directories. The flags
    are the ones the standby's forced command accepts (``-rlpt``, ``--delete``, ``--mkpath``, nothing
    else: no devices or specials, owners come from the live folder at activation); ``replica_root`` is
    the replica tree as the rsync account sees it (``/``).
    """
    ssh = (f"ssh -i {ssh_key} -o BatchMode=yes -o StrictHostKeyChecking=yes"
           f" -o UserKnownHostsFile={known_hosts}")
    return [rsync, *RSYNC_FLAGS, *exclude_args(src, exclude), "-e", ssh, src.rstrip("/") + "/",
            f"{user}@{host}:{remote_path(replica_root, src)}"]


def local_command(dest_root, rsync="rsync", exclude=()):
    """A ``command_for`` that rsyncs into a local directory laid out like the replica (tests)."""
    def command_for(src):
        return [rsync, *RSYNC_FLAGS, *exclude_args(src, exclude), src.rstrip("/") + "/", remote_path(dest_root, src)]
    return command_for


def run_command(argv, timeout):
    """Run ``argv``; return (exit code, tail of combined output). Never raises."""
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout}s"
    except OSError as exc:
        return 127, f"cannot run {argv[0]}: {exc}"
    return proc.returncode, proc.stdout.decode("utf-8", "replace")[-OUTPUT_TAIL:]


def backoff_delay(failures, cap):
    """Seconds before retry number ``failures`` (1 -> 1 s, 2 -> 2 s, 3 -> 4 s ...), at most ``cap``."""
    return float(min(cap, 2 ** max(0, min(failures - 1, 30))))


class PathState:
    """What we know about one path; ``as_dict(now)`` is its /status and heartbeat view."""

    def __init__(self, src):
        self.src = src
        self.last_change_at = None     # newest change seen
        self.pending_since = None      # oldest change not yet synced
        self.last_sync_at = None       # last attempt (end time)
        self.last_success_at = None
        self.consecutive_failures = 0
        self.failures_total = 0
        self.last_error = None
        self.next_attempt_at = 0.0
        self.window_start = None       # when the last rsync began: the debounce window's start
        self.missing = False
        self.state = "pending"         # a first sync is due at start

    def lag_seconds(self, now):
        """Seconds since the oldest unsynced change; 0 when clean."""
        return max(0.0, now - self.pending_since) if self.pending_since is not None else 0.0

    def as_dict(self, now):
        return {
            "state": self.state,
            "last_change_at": self.last_change_at,
            "last_sync_at": self.last_sync_at,
            "last_success_at": self.last_success_at,
            "lag_seconds": round(self.lag_seconds(now), 3),
            "consecutive_failures": self.consecutive_failures,
            "failures_total": self.failures_total,
            "last_error": self.last_error,
        }


class FileSync:
    """Debounced, retried, periodically full sync of ``paths`` (see module docstring)."""

    def __init__(self, paths, command_for, debounce_seconds=5.0, full_sync_seconds=900.0,
                 retry_max_seconds=300.0, alerter=None, runner=run_command, timeout=600.0, now=None,
                 exclude=()):
        now = time.time() if now is None else now
        self.debounce = float(debounce_seconds)
        self.full_sync_seconds = float(full_sync_seconds)
        self.retry_max = float(retry_max_seconds)
        self.command_for = command_for
        self.runner = runner
        self.timeout = timeout
        self.alerter = alerter
        self.paths = {p: PathState(p) for p in paths}
        self.exclude = list(exclude)  # absolute paths whose changes never trigger a sync
        self._by_root = {os.path.abspath(p): p for p in paths}  # watcher roots are absolute
        for state in self.paths.values():
            state.pending_since = now  # unknown until the first sync: count lag from start
        self._lock = threading.Lock()
        self._force = "startup"        # reason of a pending forced full sync, or None
        self.next_full_at = now + self.full_sync_seconds

    def note_change(self, src, now=None):
        """Record a change under ``src`` (a configured path); synced at once or when the window ends."""
        now = time.time() if now is None else now
        with self._lock:
            state = self.paths.get(src)
            if state is None:
                return
            state.last_change_at = now
            if state.pending_since is None:
                state.pending_since = now
            if state.state in ("clean", "missing"):
                self._set_state(state, "pending", "change seen")

    def request_full_sync(self):
        """Sync every path at the next tick, without debounce or backoff (POST /trigger-sync)."""
        with self._lock:
            self._force = "forced"

    def _set_state(self, state, new, reason):
        if state.state != new:
            log(COMPONENT, "path-state", path=state.src, frm=state.state, to=new, reason=reason)
            state.state = new

    def _ready_at(self, state):
        """When a pending path may be rsynced for its changes: after SETTLE_SECONDS without a new
        change (capped at the oldest change + debounce), and not before its debounce window ends.
        A failing path follows its backoff (next_attempt_at) instead."""
        if state.consecutive_failures:
            return state.next_attempt_at
        window_end = state.window_start + self.debounce if state.window_start is not None else 0.0
        settled = (state.last_change_at or 0.0) + min(SETTLE_SECONDS, self.debounce)
        return max(window_end, min(settled, (state.pending_since or 0.0) + self.debounce))

    def due(self, now):
        """Paths to sync now, with the reason (a change outside the last window, retry, full, forced)."""
        with self._lock:
            forced, self._force = self._force, None
        full = now >= self.next_full_at
        if full or forced:
            self.next_full_at = now + self.full_sync_seconds
        result = []
        for src, state in self.paths.items():
            if forced or full:
                result.append((src, forced or "full"))
            elif state.pending_since is not None and now >= self._ready_at(state):
                result.append((src, "retry" if state.consecutive_failures else "debounced"))
        return result

    def next_deadline(self, now):
        """Seconds until something may become due (for the watcher's read timeout)."""
        if self._force:
            return 0.0
        deadlines = [self.next_full_at]
        for state in self.paths.values():
            if state.pending_since is not None:
                deadlines.append(self._ready_at(state))
        return max(0.0, min(deadlines) - now)

    def sync(self, src, reason, now=None):
        """Run the transport for ``src`` once and update its state; returns True on success."""
        state = self.paths[src]
        start = time.time() if now is None else now
        if not os.path.isdir(src):
            if not state.missing:
                log(COMPONENT, "source-missing", level="warning", path=src, reason="skipped: not a directory")
            state.missing = True
            state.pending_since = None
            state.last_error = "source missing"
            self._set_state(state, "missing", "source path does not exist")
            return False
        state.missing = False
        covered = state.last_change_at
        state.window_start = start
        self._set_state(state, "syncing", reason)
        code, output = self.runner(self.command_for(src), self.timeout)
        end = time.time() if now is None else now
        state.last_sync_at = end
        if code == 0:
            recovered = state.consecutive_failures >= ALERT_AFTER
            with self._lock:
                state.consecutive_failures = 0
                state.last_error = None
                state.last_success_at = end
                state.next_attempt_at = 0.0
                if state.last_change_at == covered:
                    state.pending_since = None
                    self._set_state(state, "clean", f"rsync ok ({reason})")
                else:  # changed while syncing: stay pending
                    state.pending_since = state.last_change_at
                    self._set_state(state, "pending", "changed during sync")
            log(COMPONENT, "synced", path=src, reason=reason, seconds=round(end - start, 3))
            if recovered and self.alerter:
                self.alerter.send("file-sync-recovered", f"file sync of {src} recovered", path=src)
            return True
        state.consecutive_failures += 1
        state.failures_total += 1
        state.last_error = f"exit {code}: {output.strip()[-300:]}"
        delay = backoff_delay(state.consecutive_failures, self.retry_max)
        state.next_attempt_at = end + delay
        if state.pending_since is None:
            state.pending_since = start
        self._set_state(state, "failing", f"rsync exit {code}")
        log(COMPONENT, "sync-failed", level="warning", path=src, reason=reason, exit_code=code,
            consecutive_failures=state.consecutive_failures, retry_in=delay, error=state.last_error)
        if state.consecutive_failures == ALERT_AFTER and self.alerter:
            self.alerter.send("file-sync-failing", f"file sync of {src} failed {ALERT_AFTER} times",
                              path=src, error=state.last_error)
        return False

    def tick(self, now=None):
        """Sync whatever is due; return the number of sync attempts."""
        todo = self.due(time.time() if now is None else now)
        for src, reason in todo:
            self.sync(src, reason, now)
        return len(todo)

    def route(self, event):
        """Attribute a watcher Event to its configured path and note the change (not for excluded paths)."""
        if event.kind != "overflow" and excluded(event.path, self.exclude):
            return
        src = self._by_root.get(event.root, event.root)
        self.note_change(src)

    def status(self, now=None):
        """{path: state dict} for /status and heartbeats."""
        now = time.time() if now is None else now
        with self._lock:
            return {src: state.as_dict(now) for src, state in self.paths.items()}

    def failing(self):
        """True when some path has failed ALERT_AFTER times in a row."""
        return any(s.consecutive_failures >= ALERT_AFTER for s in self.paths.values())

    def run(self, watcher, stop, max_wait=1.0):
        """Loop until ``stop`` (threading.Event) is set: read watcher events, sync what is due."""
        while not stop.is_set():
            try:
                for event in watcher.read(min(max_wait, self.next_deadline(time.time()))):
                    self.route(event)
                self.tick()
            except Exception as exc:  # noqa: BLE001 - keep syncing; the error is logged
                log(COMPONENT, "loop-error", level="error", error=f"{type(exc).__name__}: {exc}")
                stop.wait(1.0)

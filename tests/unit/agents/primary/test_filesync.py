"""wirebot.primary.filesync: debounce, rsync to a local replica, capped backoff, alerts and lag."""

import threading

import pytest
from wirebot.common import inotify
from wirebot.primary import filesync

from tasks.core.wait import wait_for


class Recorder:
    """A runner that records calls and answers from a script of exit codes (0 after it runs out)."""

    def __init__(self, codes=()):
        self.calls = []
        self.codes = list(codes)

    def __call__(self, argv, timeout):
        self.calls.append(argv)
        return (self.codes.pop(0) if self.codes else 0), "rsync: connection refused"


class Alerts:
    def __init__(self):
        self.sent = []

    def send(self, kind, message, **fields):
        self.sent.append(kind)


def _fs(paths, runner, **kw):
    kw.setdefault("now", 1000.0)
    return filesync.FileSync(paths, lambda src: ["rsync", src], debounce_seconds=5, full_sync_seconds=900,
                             retry_max_seconds=kw.pop("retry_max", 300), runner=runner, **kw)


def test_rsync_command_is_exact():
    argv = filesync.rsync_command("/data/wirebot/users/verious", "wirebot-files", "10.213.0.3",
                                  "/root/.ssh/key", "/etc/wirebot/standby_known_hosts", "/")
    assert argv == [
        "rsync", "-rlpt", "--delete", "--mkpath", "-e",
        "ssh -i /root/.ssh/key -o BatchMode=yes -o StrictHostKeyChecking=yes"
        " -o UserKnownHostsFile=/etc/wirebot/standby_known_hosts",
        "/data/wirebot/users/verious/",
        "wirebot-files@10.213.0.3:/files/data/wirebot/users/verious/"]
    assert filesync.remote_path("/r/", "/home/wirebot/clawd/") == "/r/files/home/wirebot/clawd/"


def drive(fs, src, changes, until, step=0.01):
    """The watcher loop on a fake clock: note each change at its time, tick every `step` seconds;
    returns the times rsyncs started."""
    changes, starts = sorted(changes), []
    now = round(changes[0], 3) if changes else until
    while now <= until:
        while changes and changes[0] <= now:
            fs.note_change(src, now=changes.pop(0))
        if fs.tick(now=now):
            starts.append(now)
        now = round(now + step, 3)
    return starts


def test_isolated_change_is_synced_at_once(tmp_path):
    """Leading edge: a change after a quiet debounce window is rsynced once it settled (50 ms)."""
    runner = Recorder()
    fs = _fs([str(tmp_path)], runner)
    assert fs.tick(now=1000.0) == 1            # startup full sync
    fs.note_change(str(tmp_path), now=1010.0)
    assert fs.tick(now=1010.0) == 0 and fs.next_deadline(1010.0) == pytest.approx(0.05)
    assert fs.tick(now=1010.05) == 1 and len(runner.calls) == 2
    assert fs.status(now=1010.05)[str(tmp_path)]["state"] == "clean"


def test_a_file_written_in_steps_goes_in_one_rsync(tmp_path):
    runner = Recorder()
    fs = _fs([str(tmp_path)], runner)
    fs.tick(now=1000.0)
    assert drive(fs, str(tmp_path), [1010.0, 1010.01, 1010.03], until=1020.0) == [1010.08]


def test_debounce_coalesces_a_burst_into_one_sync_per_window(tmp_path):
    runner = Recorder()
    fs = _fs([str(tmp_path)], runner)
    assert fs.tick(now=1000.0) == 1            # startup full sync
    burst = [1010.0 + i * 0.1 for i in range(20)]  # 20 changes, 0.1 s apart
    assert drive(fs, str(tmp_path), burst, until=1012.0) == [1010.05]  # the first at once
    assert fs.status(now=1012.0)[str(tmp_path)]["lag_seconds"] == 1.9  # since the oldest unsynced
    assert fs.next_deadline(1012.0) == 1010.05 + 5 - 1012.0
    assert fs.tick(now=1015.04) == 0             # the window is not over
    assert fs.tick(now=1015.05) == 1             # one rsync for the other 19 changes
    assert fs.tick(now=1030.0) == 0
    assert len(runner.calls) == 3


def test_change_during_rsync_is_synced_when_the_window_ends(tmp_path):
    """A change written while rsync runs is not lost: the path stays pending and goes at the window end."""
    fs = None

    def runner(argv, timeout):
        fs.note_change(argv[1], now=1000.1)  # written during the transfer
        return 0, ""

    fs = _fs([str(tmp_path)], runner)
    fs.tick(now=1000.0)
    assert fs.status(now=1000.2)[str(tmp_path)]["state"] == "pending"
    assert fs.tick(now=1004.99) == 0 and fs.tick(now=1005.0) == 1


def test_sustained_changes_one_rsync_per_window_and_bounded_lag(tmp_path):
    """Changes every 0.03 s (faster than they settle) for a minute: at most one rsync per window, and
    no change waits longer than the debounce before an rsync starts that covers it."""
    runner = Recorder()
    fs = _fs([str(tmp_path)], runner)
    fs.tick(now=1000.0)
    changes = [round(1010.0 + i * 0.03, 3) for i in range(2000)]
    starts = drive(fs, str(tmp_path), changes, until=1075.0)
    assert all(b - a >= 5.0 for a, b in zip(starts, starts[1:])) and len(starts) >= 12
    covered = [min(t for t in starts if t >= c) - c for c in changes]
    assert max(covered) <= 5.0 + 0.01


def test_local_rsync_destination_gets_the_files(tmp_path):
    src = tmp_path / "src"
    (src / "nested").mkdir(parents=True)
    (src / "nested" / "a.txt").write_text("hello")
    (src / "b.bin").write_bytes(b"\0\1")
    dest = tmp_path / "replica"
    fs = filesync.FileSync([str(src)], filesync.local_command(str(dest)), debounce_seconds=0.05)
    fs.tick()
    landed = dest / "files" / str(src).lstrip("/")
    assert (landed / "nested" / "a.txt").read_text() == "hello"
    assert (landed / "b.bin").read_bytes() == b"\0\1"
    (src / "b.bin").unlink()
    fs.request_full_sync()
    fs.tick()
    assert not (landed / "b.bin").exists()       # --delete
    state = fs.status()[str(src)]
    assert state["state"] == "clean" and state["last_success_at"] and state["last_error"] is None


def test_watcher_loop_syncs_changes(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    dest = tmp_path / "replica"
    fs = filesync.FileSync([str(src)], filesync.local_command(str(dest)), debounce_seconds=0.1)
    watcher = inotify.Watcher([str(src)], scan_interval=0.1)
    stop = threading.Event()
    thread = threading.Thread(target=fs.run, args=(watcher, stop, 0.1), daemon=True)
    thread.start()
    try:
        (src / "sub").mkdir()
        (src / "sub" / "new.txt").write_text("fresh")
        target = dest / "files" / str(src).lstrip("/") / "sub" / "new.txt"
        wait_for(target.exists, 15, 0.05, f"{target} synced")
        assert target.read_text() == "fresh"
    finally:
        stop.set()
        thread.join(5)
        watcher.close()


def test_failures_back_off_capped_alert_and_recover(tmp_path):
    runner = Recorder(codes=[12] * 8)
    alerts = Alerts()
    fs = _fs([str(tmp_path)], runner, retry_max=5, alerter=alerts)
    now = 1000.0
    delays = []
    for _ in range(8):
        assert fs.tick(now=now) == 1
        state = fs.paths[str(tmp_path)]
        delays.append(state.next_attempt_at - now)
        assert fs.tick(now=state.next_attempt_at - 0.01) == 0   # not before the backoff
        now = state.next_attempt_at
    assert delays == [1, 2, 4, 5, 5, 5, 5, 5]
    assert alerts.sent == ["file-sync-failing"]
    status = fs.status(now=now)[str(tmp_path)]
    assert status["state"] == "failing" and status["consecutive_failures"] == 8
    assert status["failures_total"] == 8 and "exit 12" in status["last_error"]
    assert status["lag_seconds"] == now - 1000.0
    assert fs.failing()
    assert fs.tick(now=now) == 1                 # the script ran out: success
    assert alerts.sent == ["file-sync-failing", "file-sync-recovered"]
    status = fs.status(now=now)[str(tmp_path)]
    assert status["state"] == "clean" and status["consecutive_failures"] == 0 and status["lag_seconds"] == 0
    assert not fs.failing()


def test_failing_real_transport_reports_exit_code(tmp_path):
    fs = filesync.FileSync([str(tmp_path)], lambda src: ["sh", "-c", "echo no route >&2; exit 255"])
    assert fs.tick() == 1
    status = fs.status()[str(tmp_path)]
    assert status["consecutive_failures"] == 1 and "exit 255" in status["last_error"]
    assert "no route" in status["last_error"]


def test_missing_source_is_skipped(tmp_path):
    runner = Recorder()
    missing = str(tmp_path / "absent")
    fs = _fs([missing, str(tmp_path)], runner)
    fs.tick(now=1000.0)
    assert runner.calls == [["rsync", str(tmp_path)]]
    status = fs.status(now=1000.0)[missing]
    assert status["state"] == "missing" and status["lag_seconds"] == 0 and status["consecutive_failures"] == 0


def test_full_sync_runs_periodically(tmp_path):
    runner = Recorder()
    fs = _fs([str(tmp_path)], runner)
    fs.tick(now=1000.0)
    assert fs.tick(now=1899.0) == 0
    assert fs.tick(now=1900.0) == 1
    assert len(runner.calls) == 2


def test_backoff_delay():
    assert [filesync.backoff_delay(n, 300) for n in (1, 2, 3, 9, 10, 100)] == [1, 2, 4, 256, 300, 300]


def test_watcher_events_route_to_configured_path_with_trailing_slash(tmp_path):
    runner = Recorder()
    configured = str(tmp_path) + "/"
    fs = _fs([configured], runner)
    fs.tick(now=1000.0)
    fs.route(inotify.Event(str(tmp_path), str(tmp_path / "x"), "create"))
    assert fs.status()[configured]["state"] == "pending"

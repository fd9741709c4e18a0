"""wirebot.common.inotify: recursive inotify watches and the scanning fallback."""

import os
import time

import pytest
from wirebot.common import inotify


def _collect(watcher, predicate, budget=10.0):
    """Read events until ``predicate(events)`` holds or ``budget`` seconds pass (bounded polling)."""
    seen = []
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        seen.extend(watcher.read(0.2))
        if predicate(seen):
            return seen
    return seen


def _has(events, path, kinds=None):
    return any(e.path == str(path) and (kinds is None or e.kind in kinds) for e in events)


@pytest.fixture(params=["inotify", "scan"])
def watcher(request, tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    w = inotify.Watcher([str(root)], force_scan=request.param == "scan", scan_interval=0.1)
    if request.param == "inotify" and w.mode != "inotify":
        pytest.skip("inotify unavailable here: " + w.reason)
    yield w, root
    w.close()


def test_create_and_modify_are_seen(watcher):
    w, root = watcher
    target = root / "sub" / "a.txt"
    target.write_text("one")
    events = _collect(w, lambda ev: _has(ev, target))
    assert _has(events, target, {"create", "modify"})
    assert all(e.root == str(root) for e in events)
    time.sleep(0.02)  # distinct mtime for the scanner
    target.write_text("two, longer")
    events = _collect(w, lambda ev: _has(ev, target, {"modify"}))
    assert _has(events, target, {"modify"})


def test_new_subdirectory_is_watched(watcher):
    w, root = watcher
    newdir = root / "new" / "deeper"
    newdir.mkdir(parents=True)
    early = newdir / "early.txt"
    early.write_text("written before the watch may exist")
    events = _collect(w, lambda ev: _has(ev, early))
    assert _has(events, early)
    later = newdir / "later.txt"
    later.write_text("x")
    events = _collect(w, lambda ev: _has(ev, later))
    assert _has(events, later)


def test_delete_is_seen(watcher):
    w, root = watcher
    victim = root / "sub" / "gone.txt"
    victim.write_text("x")
    _collect(w, lambda ev: _has(ev, victim))
    victim.unlink()
    events = _collect(w, lambda ev: _has(ev, victim, {"delete"}))
    assert _has(events, victim, {"delete"})


def test_missing_root_is_reported_when_it_appears(tmp_path):
    root = tmp_path / "later"
    w = inotify.Watcher([str(root)], rescan_seconds=0.1, scan_interval=0.1)
    try:
        assert w.read(0.05) == []
        root.mkdir()
        (root / "f").write_text("x")
        events = _collect(w, lambda ev: any(e.root == str(root) for e in ev))
        assert any(e.root == str(root) for e in events)
    finally:
        w.close()


def test_fallback_when_inotify_cannot_start(tmp_path, monkeypatch):
    def broken():
        raise OSError(24, "inotify_init1: Too many open files")

    monkeypatch.setattr(inotify, "_Inotify", broken)
    w = inotify.Watcher([str(tmp_path)], scan_interval=0.1)
    assert w.mode == "scan"
    assert "Too many open files" in w.reason
    (tmp_path / "x").write_text("y")
    assert _has(_collect(w, lambda ev: _has(ev, tmp_path / "x")), tmp_path / "x", {"create"})


def test_diff_is_pure_and_complete():
    before = {"/r": (1, 0, True), "/r/a": (1, 1, False), "/r/b": (1, 1, False)}
    after = {"/r": (2, 0, True), "/r/a": (2, 5, False), "/r/c": (1, 1, False)}
    assert inotify.diff("/r", before, after) == [
        inotify.Event("/r", "/r/a", "modify"), inotify.Event("/r", "/r/b", "delete"),
        inotify.Event("/r", "/r/c", "create")]


def test_snapshot_of_absent_root_is_empty(tmp_path):
    assert inotify.snapshot(os.path.join(str(tmp_path), "nope")) == {}

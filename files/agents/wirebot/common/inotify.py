"""Change notification for directory trees: Linux inotify through ctypes, or periodic scanning.

``Watcher(roots)`` watches every directory under each root (recursively; directories created or
moved in later are added as they appear, and the files already inside them are reported). Roots
that do not exist yet are retried every ``rescan_seconds`` and reported when they appear.
``read(timeout)`` blocks (select) up to ``timeout`` seconds and returns a list of ``Event``.

When inotify is unavailable (no libc symbol, init failure, watch limit reached) the watcher falls
back to scanning: every ``scan_interval`` seconds it compares an (mtime, size) snapshot of each tree.
The chosen mode is logged once ("watcher-mode") and exposed as ``Watcher.mode``.
"""

import collections
import ctypes
import ctypes.util
import errno
import os
import select
import struct
import time

from wirebot.common.log import log

COMPONENT = "inotify"

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

WATCH_MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE
              | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW)
_HEADER = struct.Struct("iIII")

# root: the watched root the change belongs to; path: the changed path; kind: create, modify,
# delete, move, attrib, overflow (events were lost: treat the whole root as changed), appeared.
Event = collections.namedtuple("Event", "root path kind")


def _kind(mask):
    if mask & (IN_CREATE | IN_MOVED_TO):
        return "create"
    if mask & (IN_DELETE | IN_DELETE_SELF):
        return "delete"
    if mask & (IN_MOVED_FROM | IN_MOVE_SELF):
        return "move"
    if mask & IN_ATTRIB:
        return "attrib"
    return "modify"


def _walk_dirs(top):
    """``top`` and every directory below it (symlinks not followed)."""
    result = [top]
    for dirpath, dirnames, _files in os.walk(top, followlinks=False):
        result.extend(os.path.join(dirpath, d) for d in dirnames)
    return result


def snapshot(root):
    """{path: (mtime_ns, size, is_dir)} for ``root`` and everything below it; {} when absent."""
    result = {}
    if not os.path.isdir(root):
        return result
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            result[path] = (st.st_mtime_ns, st.st_size, name in dirnames)
    try:
        st = os.lstat(root)
        result[root] = (st.st_mtime_ns, 0, True)
    except OSError:
        pass
    return result


def diff(root, before, after):
    """Events turning snapshot ``before`` into ``after`` (pure)."""
    events = []
    for path, meta in after.items():
        old = before.get(path)
        if old is None:
            events.append(Event(root, path, "create"))
        elif old != meta and not meta[2]:
            events.append(Event(root, path, "modify"))
    events.extend(Event(root, path, "delete") for path in before if path not in after)
    return sorted(events)


class _Inotify:
    """Thin ctypes wrapper around inotify_init1 / inotify_add_watch / inotify_rm_watch."""

    def __init__(self):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._rm = libc.inotify_rm_watch
        self._rm.argtypes = [ctypes.c_int, ctypes.c_int]
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, "inotify_init1: " + os.strerror(err))
        self.fd = fd

    def add(self, path):
        wd = self._add(self.fd, os.fsencode(path), WATCH_MASK)
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_add_watch {path}: {os.strerror(err)}")
        return wd

    def read(self):
        """All queued (wd, mask, name) tuples; [] when none."""
        chunks = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            if not data:
                break
            chunks.append(data)
        out = []
        for data in chunks:
            offset = 0
            while offset + _HEADER.size <= len(data):
                wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
                offset += _HEADER.size
                name = data[offset:offset + length].rstrip(b"\0")
                offset += length
                out.append((wd, mask, os.fsdecode(name)))
        return out

    def close(self):
        os.close(self.fd)


class Watcher:
    """Recursive change watcher over ``roots`` (see module docstring)."""

    def __init__(self, roots, force_scan=False, scan_interval=2.0, rescan_seconds=10.0):
        self.roots = [os.path.abspath(r) for r in roots]
        self.scan_interval = float(scan_interval)
        self.rescan_seconds = float(rescan_seconds)
        self.mode = "scan"
        self.reason = "forced by configuration" if force_scan else ""
        self._ino = None
        self._wds = {}          # wd -> (root, directory)
        self._missing = set()
        self._next_rescan = 0.0
        self._snapshots = {}
        self._next_scan = 0.0
        if not force_scan:
            try:
                self._ino = _Inotify()
                for root in self.roots:
                    self._add_tree(root, root)
                self.mode = "inotify"
                self.reason = "inotify available"
            except (OSError, AttributeError) as exc:
                self._fall_back(f"{exc}")
        if self.mode == "scan":
            self._snapshots = {root: snapshot(root) for root in self.roots}
            self._next_scan = time.monotonic() + self.scan_interval
        log(COMPONENT, "watcher-mode", mode=self.mode, reason=self.reason, roots=self.roots,
            missing=sorted(self._missing))

    def _fall_back(self, reason):
        if self._ino is not None:
            try:
                self._ino.close()
            except OSError:
                pass
        self._ino = None
        self._wds = {}
        self.mode = "scan"
        self.reason = "inotify unavailable: " + reason

    def _add_tree(self, root, top):
        """Watch ``top`` and its subdirectories; return the paths found inside (for synthetic events)."""
        if not os.path.isdir(top):
            if top == root:
                self._missing.add(root)
            return []
        self._missing.discard(root)
        found = []
        for directory in _walk_dirs(top):
            try:
                wd = self._ino.add(directory)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                    continue  # vanished while walking
                raise
            self._wds[wd] = (root, directory)
            if directory != top:
                found.append(directory)
            try:
                found.extend(os.path.join(directory, n) for n in os.listdir(directory)
                             if not os.path.isdir(os.path.join(directory, n)))
            except OSError:
                pass
        return found

    def read(self, timeout):
        """Block up to ``timeout`` seconds for changes; return the list of Event (maybe empty)."""
        if self.mode == "scan":
            return self._read_scan(timeout)
        events = self._check_missing()
        if events:
            return events
        ready, _, _ = select.select([self._ino.fd], [], [], max(0.0, timeout))
        if not ready:
            return self._check_missing()
        try:
            return self._drain()
        except OSError as exc:  # e.g. ENOSPC: watch limit reached on a new subdirectory
            log(COMPONENT, "watcher-mode", level="warning", mode="scan",
                reason=f"inotify failed while watching: {exc}")
            self._fall_back(str(exc))
            self._snapshots = {root: snapshot(root) for root in self.roots}
            self._next_scan = time.monotonic() + self.scan_interval
            return [Event(root, root, "overflow") for root in self.roots]

    def _drain(self):
        events = []
        for wd, mask, name in self._ino.read():
            if mask & IN_Q_OVERFLOW:
                events.extend(Event(root, root, "overflow") for root in self.roots)
                continue
            entry = self._wds.get(wd)
            if entry is None:
                continue
            root, directory = entry
            if mask & IN_IGNORED:
                self._wds.pop(wd, None)
                if directory == root:
                    self._missing.add(root)
                continue
            path = os.path.join(directory, name) if name else directory
            events.append(Event(root, path, _kind(mask)))
            if mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO):
                events.extend(Event(root, p, "create") for p in self._add_tree(root, path))
        return events

    def _check_missing(self):
        now = time.monotonic()
        if not self._missing or now < self._next_rescan:
            return []
        self._next_rescan = now + self.rescan_seconds
        events = []
        for root in sorted(self._missing):
            if os.path.isdir(root):
                self._add_tree(root, root)
                events.append(Event(root, root, "appeared"))
                log(COMPONENT, "root-appeared", root=root)
        return events

    def _read_scan(self, timeout):
        wait = min(max(0.0, timeout), max(0.0, self._next_scan - time.monotonic()))
        if wait > 0:
            time.sleep(wait)
        if time.monotonic() < self._next_scan:
            return []
        self._next_scan = time.monotonic() + self.scan_interval
        events = []
        for root in self.roots:
            current = snapshot(root)
            events.extend(diff(root, self._snapshots.get(root, {}), current))
            self._snapshots[root] = current
        return events

    def close(self):
        """Release the inotify descriptor (no-op in scan mode)."""
        if self._ino is not None:
            self._ino.close()
            self._ino = None

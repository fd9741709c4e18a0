"""Persistent agent state: a small JSON file written atomically with mode 0600.

``save`` writes a temp file in the same directory, fsyncs it, then os.replace()s it over the target,
so a crash leaves either the old or the new state, never a torn file.
"""

import copy
import json
import os
import tempfile
import threading

from wirebot.common.log import log


def load(path, default):
    """Return the JSON object in ``path``; a missing or unreadable/corrupt file returns a copy of
    ``default`` (corruption is logged). Keys missing from the file are filled from ``default``."""
    result = copy.deepcopy(default)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return result
    except (OSError, ValueError) as exc:
        log("statefile", "state-unreadable", level="error", path=path, error=str(exc))
        return result
    if not isinstance(data, dict):
        log("statefile", "state-unreadable", level="error", path=path, error="not a JSON object")
        return result
    result.update(data)
    return result


def save(path, data):
    """Atomically write ``data`` as JSON to ``path`` with mode 0600 (directory created if absent)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True, default=str)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


class Store:
    """A state dict shared between threads, persisted with ``save``.

    Mutate ``data`` only while holding ``lock`` (an RLock); ``save()`` writes a consistent copy.
    """

    def __init__(self, path, default):
        self.path = path
        self.lock = threading.RLock()
        self.data = load(path, default)

    def save(self):
        """Persist the current state atomically (takes the lock while copying)."""
        with self.lock:
            snapshot = copy.deepcopy(self.data)
            save(self.path, snapshot)

    def snapshot(self):
        """A deep copy of the current state, safe to read without the lock."""
        with self.lock:
            return copy.deepcopy(self.data)

"""The activation steps' I/O: restore the replicated DBs, copy file trees, start units and wait.

Each function raises StepError with a one-line reason on failure and returns a small JSON-able detail
dict on success. wirebot.standby.activation sequences them and records progress.
"""

import json
import os
import re
import sqlite3
import stat
import subprocess
import time
import urllib.error
import urllib.request

from wirebot.common import safefs
from wirebot.common.log import log

_EPOCH_DIR = re.compile(r"^epoch-(\d+)$")
_POLL_SECONDS = 0.05  # a local health URL: cheap to ask, and every wait is part of the RTO


class StepError(Exception):
    """An activation step failed; the message says why."""


class ReplicaRefused(StepError):
    """The replica tree holds something root must not read or copy (a link leaving it, a foreign file)."""


def check_replica(replica_root, paths):
    """ReplicaRefused naming the problems (safefs.replica_problems) of the replica tree, if any."""
    problems = safefs.replica_problems(replica_root, paths)
    if problems:
        raise ReplicaRefused(f"replica tree refused, nothing copied from it: {'; '.join(problems)}")


def highest_epoch_dir(replica_root):
    """(N, path) of the highest {replica_root}/litestream/epoch-N directory, or (None, None)."""
    base = os.path.join(replica_root, "litestream")
    best = (None, None)
    try:
        names = os.listdir(base)
    except OSError:
        return best
    for name in names:
        match = _EPOCH_DIR.match(name)
        if match and os.path.isdir(os.path.join(base, name)):
            if best[0] is None or int(match.group(1)) > best[0]:
                best = (int(match.group(1)), os.path.join(base, name))
    return best


def _has_replica(replica_dir):
    for _root, _dirs, files in os.walk(os.path.join(replica_dir, "ltx")):
        if files:
            return True
    return False


def plan_restores(act):
    """(epoch, [(replica_dir, live_path)], [skipped live paths]) for every single DB and tenant DB."""
    epoch, epoch_dir = highest_epoch_dir(act["replica_root"])
    plan, skipped = [], []
    for db in act["dbs"]:
        replica = os.path.join(epoch_dir, os.path.relpath(db, act["data_root"])) if epoch_dir else None
        if replica and _has_replica(replica):
            plan.append((replica, db))
        else:
            skipped.append(db)
    if epoch_dir and act.get("tenant_dir"):
        tenants = os.path.join(epoch_dir, os.path.relpath(act["tenant_dir"], act["data_root"]))
        for name in sorted(os.listdir(tenants)) if os.path.isdir(tenants) else []:
            replica = os.path.join(tenants, name)
            if name.endswith(".db") and os.path.isdir(replica) and _has_replica(replica):
                plan.append((replica, os.path.join(act["tenant_dir"], name)))
    return epoch, plan, skipped


def _remove_at(dir_fd, *names):
    for name in names:
        try:
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            pass


def integrity_ok(path):
    """(ok, text) of ``PRAGMA integrity_check``; folds any WAL into the main file first."""
    try:
        conn = sqlite3.connect(path)
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return False, str(exc)
    text = "; ".join(str(row[0]) for row in rows)[:300]
    return rows == [("ok",)], text


def restore_db(litestream, replica_dir, live, timeout=600):
    """Restore ``replica_dir`` into a temp file beside ``live``, check it, then rename it onto ``live``.

    The live folder is opened without following links (safefs.open_dir: a component replaced by a link
    is refused) and every step works in that opened folder (Litestream writes through
    /proc/self/fd/N, which it inherits), so no link redirects root's writes. The live file's owner and
    mode are kept (a new file, or a link in its place, gets its folder's owner and mode 0640); stale
    ``-wal``/``-shm`` of the live DB are removed first. A failed restore or integrity check leaves the
    live DB untouched.
    """
    started = time.monotonic()
    directory, name = os.path.split(live)
    try:
        folder = safefs.open_dir(directory, create=True)
    except safefs.UnsafePath as exc:
        raise StepError(f"restore of {live}: {exc}") from None
    try:
        return _restore_in(folder, litestream, replica_dir, live, name, timeout, started)
    finally:
        os.close(folder)


def _restore_in(folder, litestream, replica_dir, live, name, timeout, started):
    temp = "." + name + ".wirebot-restore"
    through = f"/proc/self/fd/{folder}/{temp}"
    _remove_at(folder, temp, temp + "-wal", temp + "-shm")
    argv = [litestream, "restore", "-o", through, "file://" + replica_dir]
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                              pass_fds=(folder,))
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StepError(f"litestream restore of {live} could not run: {exc}") from None
    if proc.returncode != 0:
        _remove_at(folder, temp)
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:] or [""]
        raise StepError(f"litestream restore of {live} exited {proc.returncode}: {tail[0][:300]}")
    ok, text = integrity_ok(through)
    if not ok:
        _remove_at(folder, temp, temp + "-wal", temp + "-shm")
        raise StepError(f"integrity check of the restored {live} failed: {text}; live DB left untouched")
    _remove_at(folder, temp + "-wal", temp + "-shm")
    try:
        ref = os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        ref = None
    if ref is not None and stat.S_ISREG(ref.st_mode):
        uid, gid, mode = ref.st_uid, ref.st_gid, stat.S_IMODE(ref.st_mode)
    else:
        ref = os.fstat(folder)
        uid, gid, mode = ref.st_uid, ref.st_gid, 0o640
    fd = os.open(temp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StepError(f"the restored {live} is not a regular file")
        try:
            os.fchown(fd, uid, gid)
        except PermissionError:
            log("activation", "chown-failed", level="warning", path=live, uid=uid, gid=gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    _remove_at(folder, name + "-wal", name + "-shm")
    os.replace(temp, name, src_dir_fd=folder, dst_dir_fd=folder)
    return {"live": live, "replica": replica_dir, "bytes": os.stat(name, dir_fd=folder).st_size,
            "seconds": round(time.monotonic() - started, 3)}


def copy_files(replica_root, paths, files="files"):
    """Copy each replicated folder {replica_root}/files/<path> onto <path> (safefs.copy_tree: no link
    followed on either side, links leaving their folder refused, owned like the live folder). No
    --delete: the standby's own files stay. Missing replicas are skipped and reported."""
    copied, skipped = [], []
    try:
        owner = os.stat(os.path.join(replica_root, files), follow_symlinks=False).st_uid
    except FileNotFoundError:
        return {"copied": copied, "skipped": list(paths)}
    for path in paths:
        src = os.path.join(replica_root, files, path.lstrip("/"))
        if not os.path.lexists(src):
            skipped.append(path)
            continue
        try:
            counts = safefs.copy_tree(src, path, owner)
        except safefs.UnsafePath as exc:
            raise ReplicaRefused(f"copy of {src} onto {path} stopped: {exc}") from None
        copied.append(path)
        log("activation", "files-copied", path=path, **counts)
    return {"copied": copied, "skipped": skipped}


def systemctl(binary, verb, unit, timeout):
    """Run ``systemctl VERB UNIT`` (VERB may carry options: "--no-block start"); StepError unless it exits 0."""
    try:
        proc = subprocess.run([binary] + verb.split() + [unit], stdin=subprocess.DEVNULL, capture_output=True,
                              text=True,
                              timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StepError(f"systemctl {verb} {unit} could not run: {exc}") from None
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-1:] or [""]
        raise StepError(f"systemctl {verb} {unit} exited {proc.returncode}: {tail[0][:300]}")


def _probe(url, timeout):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read(65536)
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return None, str(getattr(exc, "reason", exc)).encode()


def wait_http(url, timeout, ready=lambda status, body: 200 <= status < 300, cancelled=lambda: None):
    """Poll ``url`` until ``ready(status, body)``; return seconds waited, StepError on timeout or when
    ``cancelled()`` returns a reason."""
    started = time.monotonic()
    last = None
    while True:
        why = cancelled()
        if why:
            raise StepError(f"stopped waiting for {url}: {why}")
        status, body = _probe(url, min(5.0, max(0.5, timeout)))
        if status is not None and ready(status, body):
            return round(time.monotonic() - started, 3)
        last = status if status is not None else body.decode("utf-8", "replace")[:200]
        if time.monotonic() - started >= timeout:
            raise StepError(f"{url} not ready within {timeout:.0f}s (last: {last})")
        time.sleep(_POLL_SECONDS)


def tunnel_ready(status, body):
    """cloudflared's /ready: 200 with readyConnections >= 1."""
    if status != 200:
        return False
    try:
        return int(json.loads(body.decode("utf-8")).get("readyConnections", 0)) >= 1
    except (ValueError, AttributeError, TypeError):
        return False


"""The activation steps' I/O: restore the replicated DBs, copy file trees, start units and wait.

Each function raises StepError with a one-line reason on failure and returns a small JSON-able detail
dict on success. wirebot.activation sequences them and records progress.
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

from .log import log

_EPOCH_DIR = re.compile(r"^epoch-(\d+)$")
_POLL_SECONDS = 0.25


class StepError(Exception):
    """An activation step failed; the message says why."""


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


def _remove(*paths):
    for path in paths:
        try:
            os.unlink(path)
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
    """Restore ``replica_dir`` into a temp file beside ``live``, check it, then os.replace it onto ``live``.

    The live file's owner and mode are kept (a new file gets its directory's owner and mode 0640);
    stale ``-wal``/``-shm`` of the live DB are removed first. A failed restore or integrity check
    leaves the live DB untouched.
    """
    started = time.monotonic()
    directory = os.path.dirname(live)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, "." + os.path.basename(live) + ".wirebot-restore")
    _remove(tmp, tmp + "-wal", tmp + "-shm")
    argv = [litestream, "restore", "-o", tmp, "file://" + replica_dir]
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StepError(f"litestream restore of {live} could not run: {exc}") from None
    if proc.returncode != 0:
        _remove(tmp)
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:] or [""]
        raise StepError(f"litestream restore of {live} exited {proc.returncode}: {tail[0][:300]}")
    ok, text = integrity_ok(tmp)
    if not ok:
        _remove(tmp, tmp + "-wal", tmp + "-shm")
        raise StepError(f"integrity check of the restored {live} failed: {text}; live DB left untouched")
    _remove(tmp + "-wal", tmp + "-shm")
    try:
        ref = os.stat(live)
        uid, gid, mode = ref.st_uid, ref.st_gid, stat.S_IMODE(ref.st_mode)
    except FileNotFoundError:
        ref = os.stat(directory)
        uid, gid, mode = ref.st_uid, ref.st_gid, 0o640
    try:
        os.chown(tmp, uid, gid)
    except PermissionError:
        log("activation", "chown-failed", level="warning", path=live, uid=uid, gid=gid)
    os.chmod(tmp, mode)
    _remove(live + "-wal", live + "-shm")
    os.replace(tmp, live)
    return {"live": live, "replica": replica_dir, "bytes": os.path.getsize(live),
            "seconds": round(time.monotonic() - started, 3)}


def _owner_flag(live_path):
    """--chown=UID:GID of the live folder (or the file's folder): the replica's files belong to the
    replication user, the live ones keep the owner the deploy gave their place (root for /run/wirebot,
    the service user for the workspace)."""
    folder = live_path if os.path.isdir(live_path) else os.path.dirname(live_path)
    info = os.stat(folder)
    return f"--chown={info.st_uid}:{info.st_gid}"


def copy_files(rsync, replica_root, paths, timeout=600):
    """rsync -a (no --delete: the standby's own files, e.g. its secrets, stay) each replicated tree
    from {replica_root}/files/<path> onto <path>, owned like the live folder it lands in. Missing
    replicas are skipped and reported."""
    copied, skipped = [], []
    for path in paths:
        src = os.path.join(replica_root, "files", path.lstrip("/"))
        if os.path.isdir(src):
            os.makedirs(path, exist_ok=True)
            argv = [rsync, "-a", _owner_flag(path), src.rstrip("/") + "/", path.rstrip("/") + "/"]
        elif os.path.isfile(src):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            argv = [rsync, "-a", _owner_flag(path), src, path]
        else:
            skipped.append(path)
            continue
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise StepError(f"rsync of {src} could not run: {exc}") from None
        if proc.returncode != 0:
            tail = (proc.stderr or "").strip().splitlines()[-1:] or [""]
            raise StepError(f"rsync {src} -> {path} exited {proc.returncode}: {tail[0][:300]}")
        copied.append(path)
    return {"copied": copied, "skipped": skipped}


def systemctl(binary, verb, unit, timeout):
    """Run ``systemctl VERB UNIT``; StepError unless it exits 0."""
    try:
        proc = subprocess.run([binary, verb, unit], stdin=subprocess.DEVNULL, capture_output=True, text=True,
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


def wait_http(url, timeout, ready=lambda status, body: 200 <= status < 300):
    """Poll ``url`` until ``ready(status, body)``; return seconds waited, StepError on timeout."""
    started = time.monotonic()
    last = None
    while True:
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


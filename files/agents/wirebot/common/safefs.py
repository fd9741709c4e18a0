"""File operations for root that never follow a link they were not told to: the activation reads the
replica tree (written by the replication accounts, so by whoever holds the replication key) and writes
live folders (some owned by the service user) as root.

- ``open_dir`` reaches a folder from ``/`` one component at a time (O_NOFOLLOW): a component replaced
  by a symlink is refused, never gone through.
- ``replica_problems`` lists what makes a replica tree unsafe: a link in litestream/ (Litestream makes
  none), a link in a synced folder that resolves outside that folder (file sync's links arrive munged
  by the standby's forced command, ``/rsyncd-munged/<target>``, and are judged unmunged), an entry not
  owned by the account that writes that half of the tree (a hard link to someone else's file), and
  anything that is not a file, folder or link.
- ``copy_tree`` copies a synced folder onto its live folder by file descriptors: a live entry that is a
  link or a file where the replica has a folder is replaced, never followed; files are written to a
  temporary name in the opened live folder and renamed over the entry (a link there is replaced, not
  written through); setuid, setgid, sticky and world-write bits are dropped; everything is owned like
  the live folder. It re-checks every entry as it goes.
"""

import os
import secrets
import stat

MUNGED = "/rsyncd-munged/"  # rsync --munge-links prefix (files/libexec/wirebot-replica-rsync adds it)
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_HOPS = 40  # links followed while resolving one link (the kernel's limit)
MODE_MASK = 0o775  # kept from the replica: no setuid/setgid/sticky, no world-write
CHUNK = 1 << 20


class UnsafePath(Exception):
    """A path or tree that root must not read or write through; the message names it."""


def unmunge(target):
    """A link target as the primary made it (rsync --munge-links prefixes MUNGED)."""
    return target[len(MUNGED):] if target.startswith(MUNGED) else target


def open_dir(path, create=False, mode=0o755):
    """fd of folder ``path``, reached from / without following any symlink; missing components are made
    (root, ``mode``) when ``create``. UnsafePath when a component is a link or not a folder."""
    parts = [part for part in path.split("/") if part]
    if not path.startswith("/") or any(part in (".", "..") for part in parts):
        raise UnsafePath(f"{path}: not a plain absolute path")
    fd = os.open("/", DIR_FLAGS)
    walked = ""
    try:
        for part in parts:
            walked += "/" + part
            fd = _step(fd, part, walked, create, mode)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _step(fd, part, walked, create, mode):
    """Open ``part`` below folder ``fd`` (closing ``fd``)."""
    try:
        try:
            child = os.open(part, DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            if not create:
                raise
            try:
                os.mkdir(part, mode, dir_fd=fd)
            except FileExistsError:
                pass
            child = os.open(part, DIR_FLAGS, dir_fd=fd)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        kind = "a symlink" if _is_link(fd, part) else "not a folder"
        raise UnsafePath(f"{walked} is {kind}: refusing to go through it") from None
    os.close(fd)
    return child


def _is_link(dir_fd, name):
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _entries(fd):
    """(name, lstat) of every entry of folder ``fd``."""
    with os.scandir(fd) as entries:
        return [(entry.name, entry.stat(follow_symlinks=False)) for entry in entries]


def link_inside(top_fd, rel, target, hops=MAX_HOPS):
    """True when a link at ``rel`` (list of folder names below ``top_fd``) pointing to ``target``
    resolves, following the links it meets, without leaving ``top_fd``'s folder. Absolute targets never
    do; a missing component is taken as a plain name."""
    target = unmunge(target)
    if target.startswith("/"):
        return False
    where, pending = list(rel), target.split("/")
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not where:
                return False
            where.pop()
            continue
        candidate = where + [part]
        try:
            info = os.stat("/".join(candidate), dir_fd=top_fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            where = candidate
            continue
        if stat.S_ISLNK(info.st_mode):
            hops -= 1
            inner = unmunge(os.readlink("/".join(candidate), dir_fd=top_fd))
            if hops < 0 or inner.startswith("/"):
                return False
            pending = inner.split("/") + pending
        else:
            where = candidate
    return True


def _open_below(fd, parts, display):
    """fd of folder ``parts`` below ``fd`` (no links), or None when missing; UnsafePath otherwise."""
    current = os.dup(fd)
    walked = display
    try:
        for part in parts:
            walked += "/" + part
            current = _step(current, part, walked, False, 0)
        return current
    except FileNotFoundError:
        os.close(current)
        return None
    except BaseException:
        os.close(current)
        raise


class _Scan:
    """Walks one half of the replica tree collecting problems (at most ``limit``)."""

    def __init__(self, problems, limit):
        self.problems, self.limit = problems, limit

    def add(self, text):
        if len(self.problems) < self.limit:
            self.problems.append(text)

    def tree(self, top_fd, display, owner, links):
        stack = [(os.dup(top_fd), [])]
        try:
            while stack and len(self.problems) < self.limit:
                fd, rel = stack.pop()
                try:
                    for name, info in _entries(fd):
                        self.entry(top_fd, fd, rel, name, info, display, owner, links, stack)
                finally:
                    os.close(fd)
        finally:
            for fd, _rel in stack:
                os.close(fd)

    def entry(self, top_fd, fd, rel, name, info, display, owner, links, stack):
        where = "/".join([display] + rel + [name])
        if info.st_uid != owner:
            self.add(f"{where} is owned by uid {info.st_uid}, not by the account that writes here (uid {owner})")
        if stat.S_ISDIR(info.st_mode):
            try:
                stack.append((os.open(name, DIR_FLAGS, dir_fd=fd), rel + [name]))
            except OSError as exc:
                self.add(f"{where}: {exc.strerror}")
        elif stat.S_ISLNK(info.st_mode):
            target = os.readlink(name, dir_fd=fd)
            if not links:
                self.add(f"{where} is a symlink (-> {target}); Litestream never makes one")
            elif not link_inside(top_fd, rel, target):
                self.add(f"{where} is a symlink to {unmunge(target)}, outside {display}")
        elif not stat.S_ISREG(info.st_mode):
            self.add(f"{where} is not a file, folder or link")


def replica_problems(replica_root, synced_paths, litestream="litestream", files="files", limit=10):
    """What makes the replica tree unsafe to read as root (see the module docstring); [] when nothing
    does or when there is no replica tree at all."""
    problems = []
    scan = _Scan(problems, limit)
    try:
        root_fd = open_dir(replica_root)
    except FileNotFoundError:
        return problems
    except (UnsafePath, OSError) as exc:
        return [str(exc)]
    try:
        half = _open_below(root_fd, [litestream], replica_root)
        if half is not None:
            try:
                scan.tree(half, f"{replica_root}/{litestream}", os.fstat(half).st_uid, links=False)
            finally:
                os.close(half)
        files_fd = _open_below(root_fd, [files], replica_root)
        if files_fd is None:
            return problems
        try:
            owner = os.fstat(files_fd).st_uid
            for path in synced_paths:
                display = f"{replica_root}/{files}/{path.strip('/')}"
                parts = [part for part in path.split("/") if part]
                synced = _open_below(files_fd, parts, f"{replica_root}/{files}")
                if synced is not None:
                    try:
                        scan.tree(synced, display, owner, links=True)
                    finally:
                        os.close(synced)
        finally:
            os.close(files_fd)
    except UnsafePath as exc:
        scan.add(str(exc))
    finally:
        os.close(root_fd)
    return problems


def copy_tree(src, dest, owner):
    """Copy folder ``src`` (a synced folder of the replica, every entry owned by uid ``owner``) onto
    ``dest`` (made when missing), as the module docstring says; {"files", "links", "folders"} counts.
    UnsafePath on anything unsafe (what was copied before it stays)."""
    src_fd = open_dir(src)
    try:
        dst_fd = open_dir(dest, create=True)
    except BaseException:
        os.close(src_fd)
        raise
    try:
        live = os.fstat(dst_fd)
        return _Copy(src, src_fd, owner, live.st_uid, live.st_gid).run(dst_fd)
    finally:
        os.close(src_fd)
        os.close(dst_fd)


def _temp_name():
    return f".wirebot-{secrets.token_hex(6)}"


class _Copy:
    """One copy_tree run: the replica folder's fd, the owner its entries must have, the live owner."""

    def __init__(self, display, top_fd, owner, uid, gid):
        self.display, self.top_fd, self.owner, self.uid, self.gid = display, top_fd, owner, uid, gid
        self.counts = {"files": 0, "links": 0, "folders": 0}

    def run(self, dst_fd):
        stack = [(os.dup(self.top_fd), os.dup(dst_fd), [])]
        try:
            while stack:
                src_fd, live_fd, rel = stack.pop()
                try:
                    for name, info in _entries(src_fd):
                        self.entry(src_fd, live_fd, rel, name, info, stack)
                finally:
                    os.close(src_fd)
                    os.close(live_fd)
        finally:
            for src_fd, live_fd, _rel in stack:
                os.close(src_fd)
                os.close(live_fd)
        return self.counts

    def entry(self, src_fd, live_fd, rel, name, info, stack):
        where = "/".join([self.display] + rel + [name])
        if info.st_uid != self.owner:
            raise UnsafePath(f"{where} is owned by uid {info.st_uid}, not by the account that writes here")
        if stat.S_ISDIR(info.st_mode):
            child = os.open(name, DIR_FLAGS, dir_fd=src_fd)
            try:
                stack.append((child, self.folder(live_fd, name, info.st_mode), rel + [name]))
            except BaseException:
                os.close(child)
                raise
            self.counts["folders"] += 1
        elif stat.S_ISREG(info.st_mode):
            self.file(src_fd, live_fd, name, where)
            self.counts["files"] += 1
        elif stat.S_ISLNK(info.st_mode):
            target = os.readlink(name, dir_fd=src_fd)
            if not link_inside(self.top_fd, rel, target):
                raise UnsafePath(f"{where} is a symlink to {unmunge(target)}, outside {self.display}")
            self.link(live_fd, name, unmunge(target))
            self.counts["links"] += 1
        else:
            raise UnsafePath(f"{where} is not a file, folder or link")

    def folder(self, live_fd, name, mode):
        """fd of live folder ``name`` (a link or file there is removed first, never followed)."""
        try:
            info = os.stat(name, dir_fd=live_fd, follow_symlinks=False)
        except FileNotFoundError:
            info = None
        if info is not None and not stat.S_ISDIR(info.st_mode):
            os.unlink(name, dir_fd=live_fd)
            info = None
        if info is None:
            os.mkdir(name, 0o700, dir_fd=live_fd)
        fd = os.open(name, DIR_FLAGS, dir_fd=live_fd)
        os.fchown(fd, self.uid, self.gid)
        os.fchmod(fd, stat.S_IMODE(mode) & MODE_MASK)
        return fd

    def file(self, src_fd, live_fd, name, where):
        """Write a temporary file in the live folder, then rename it over ``name``."""
        source = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=src_fd)
        temp = _temp_name()
        try:
            info = os.fstat(source)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != self.owner:
                raise UnsafePath(f"{where} changed while it was copied")
            target = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                             dir_fd=live_fd)
            try:
                while True:
                    chunk = os.read(source, CHUNK)
                    if not chunk:
                        break
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(target, view):]
                os.fchown(target, self.uid, self.gid)
                os.fchmod(target, stat.S_IMODE(info.st_mode) & MODE_MASK)
                os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
            finally:
                os.close(target)
            os.replace(temp, name, src_dir_fd=live_fd, dst_dir_fd=live_fd)
        except BaseException:
            _unlink_quiet(temp, live_fd)
            raise
        finally:
            os.close(source)

    def link(self, live_fd, name, target):
        temp = _temp_name()
        os.symlink(target, temp, dir_fd=live_fd)
        try:
            os.chown(temp, self.uid, self.gid, dir_fd=live_fd, follow_symlinks=False)
            os.replace(temp, name, src_dir_fd=live_fd, dst_dir_fd=live_fd)
        except BaseException:
            _unlink_quiet(temp, live_fd)
            raise


def _unlink_quiet(name, dir_fd):
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass

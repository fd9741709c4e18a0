"""Operations and facts pyinfra does not ship, each idempotent (yields nothing when in place)."""

import hashlib
import json
import os
import posixpath
import shlex
from io import BytesIO

from pyinfra import host, logger
from pyinfra.api import FactBase, FileUploadCommand, FunctionCommand, OperationError, operation
from wirebot.common import layout

from tasks.core import hoststate
from tasks.core.hoststate import PathStats, declares  # noqa: F401 (PathStats: here since the start)

STATE_FILE = layout.state_file()  # at the default wirebot_state_dir


class WirebotState(FactBase):
    """The agents' state file on the host (state, epoch, ...) as a dict; {} when absent or unreadable."""

    def command(self, path=STATE_FILE):
        return f"cat {shlex.quote(path)} 2>/dev/null || true"

    def process(self, output):
        try:
            data = json.loads("\n".join(output) or "{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}


class HttpStatus(FactBase):
    """The HTTP status of GET `url` from the host (curl, 5 s), or None when nothing answered."""

    def command(self, url):
        return f"curl -s -o /dev/null -m 5 -w '%{{http_code}}' {shlex.quote(url)} 2>/dev/null || true"

    def process(self, output):
        text = "".join(output).strip()
        return int(text) if text.isdigit() and text != "000" else None


class NotOwnedBy(FactBase):
    """Whether anything under `path` belongs to another user or group than `user` (the user and its group
    share the name), or `user` does not exist yet (then nothing can be its own)."""

    def command(self, path, user):
        name = shlex.quote(user)
        return (f"if id -u {name} >/dev/null 2>&1; then find {shlex.quote(path)} \\( \\! -user {name} -o "
                f"\\! -group {name} \\) -print -quit 2>/dev/null; else echo 'no such user'; fi")

    def process(self, output):
        return bool("\n".join(output).strip())


class InstalledDebPackages(FactBase):
    """Those of `packages` (plain names) dpkg has installed ("ii"); None when dpkg-query gave no answer."""

    def command(self, packages):
        names = " ".join(shlex.quote(p) for p in packages)
        return f"echo dpkg; dpkg-query -W -f='${{Package}} ${{db:Status-Abbrev}}\\n' -- {names} 2>/dev/null; true"

    def process(self, output):
        lines = list(output)
        if lines[:1] != ["dpkg"]:
            return None
        return [line.split(" ", 1)[0] for line in lines[1:] if line.split(" ")[1:2] == ["ii"]]


def missing_packages(wanted: list, installed) -> list:
    """`wanted` without what InstalledDebPackages found installed (all of `wanted` when it had no answer)."""
    return list(wanted) if installed is None else [p for p in wanted if p not in installed]


class PublicKey(FactBase):
    """The first line of a public key file, or None when absent."""

    def command(self, path):
        return f"head -n1 {shlex.quote(path)} 2>/dev/null || true"

    def process(self, output):
        line = "\n".join(output).strip()
        return line or None


_DIGESTS = {}  # (path, size, mtime) -> sha256 of a local file (the Litestream binary is read once)


def _sha256(path) -> str:
    info = os.stat(path)
    key = (str(path), info.st_size, info.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(65536), b""):
                digest.update(chunk)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def _local_source(src):
    """(what FileUploadCommand uploads, its sha256) for a local path or a file-like object (text or bytes)."""
    if isinstance(src, (str, os.PathLike)):
        return str(src), _sha256(src)
    if hasattr(src, "seek"):
        src.seek(0)
    content = src.read()
    content = content.encode() if isinstance(content, str) else content
    return BytesIO(content), hashlib.sha256(content).hexdigest()


def render_template(src: str, **data) -> BytesIO:
    """A Jinja2 template rendered here as files.template renders it (host, state and inventory given)."""
    from pyinfra import inventory, state
    from pyinfra.api.util import get_template

    data.setdefault("host", host)
    data.setdefault("state", state)
    data.setdefault("inventory", inventory)
    return BytesIO(get_template(src).render(data).encode())


def file_plan(sha256: str, remote, parent, dest: str, user: str, group: str, mode: str) -> list:
    """What makes `dest` a regular file with content `sha256`, owner and mode (pure; see managed_file):
    shell commands (str) and the step "upload" (to temp_name(dest)), in order; [] when it is one.
    Raises ValueError when `dest` is something else than a regular file."""
    mode = mode.lstrip("0") or "0"
    if remote and remote["kind"] != "f":
        raise ValueError(f"{dest} exists and is not a regular file")
    owner = f"{shlex.quote(user)}:{shlex.quote(group)}"
    quoted = shlex.quote(dest)
    if not remote or remote["sha256"] != sha256:
        temp = shlex.quote(temp_name(dest))
        steps = [] if parent and parent["kind"] == "d" else [f"mkdir -p -- {shlex.quote(_parent(dest))}"]
        if not int(mode, 8) & 0o004:  # private: the upload fills a file made with its mode (SFTP keeps it)
            steps.append(f"rm -f -- {temp} && install -m {mode} -o {shlex.quote(user)} -g {shlex.quote(group)} "
                         f"/dev/null {temp}")
        return steps + ["upload", f"chown {owner} -- {temp} && chmod {mode} -- {temp} && mv -f -- {temp} {quoted}"]
    steps = []
    if (remote["user"], remote["group"]) != (user, group):
        steps.append(f"chown {owner} -- {quoted}")
    if remote["mode"] != mode:
        steps.append(f"chmod {mode} -- {quoted}")
    return steps


def temp_name(dest: str) -> str:
    """Where a new version of `dest` is uploaded: beside it (its folder's permissions guard it; the move
    into place is atomic), a hidden name no unit, drop-in or tmpfiles folder reads."""
    folder, name = dest.rsplit("/", 1)
    return f"{folder}/.{name}.wirebot-new"


@declares(lambda src, dest, **_: {"paths": [dest, _parent(dest)]})
@operation()
def managed_file(src, dest: str, user: str = "root", group: str = "root", mode: str = "644", secret: bool = False):
    """
    A file with exactly this content, owner and mode, checked by sha256 with everything else the host is
    asked (tasks/core/hoststate.py: no command of its own when nothing differs; files.put and
    files.template take three each). A new version is uploaded beside it, given its owner and mode, then
    moved into place in one step (a reader never sees half a file or a wrong mode); a private file (no
    read bit for others) is uploaded into an empty file made with its owner and mode first, so its
    content is never readable beyond them, not even for a moment. A wrong owner or mode alone is
    corrected in place. Never diffed or printed (secrets). Its folder is made (mkdir -p)
    when missing; a `dest` that is not a regular file is an error, before anything changes.

    + src: local path, or a file-like object (text or bytes; render_template gives one for templates)
    + dest: remote path
    + user, group, mode: ownership and permissions the file must have
    + secret: say so in the log when it is written (content never shown)
    """
    upload, sha256 = _local_source(src)
    try:
        steps = file_plan(sha256, hoststate.path(host, dest), hoststate.path(host, _parent(dest)), dest, user,
                          group, mode)
    except ValueError as exc:
        raise OperationError(f"{host.name}: {exc}") from None
    if "upload" in steps and secret:
        host.log(f"Will write secret {dest} (content not shown)", logger.info)
    for step in steps:
        if step == "upload":
            yield FileUploadCommand(upload, temp_name(dest))
        else:
            yield step


def managed_template(name: str, src: str, dest: str, user: str = "root", group: str = "root", mode: str = "644",
                     **data):
    """files.template's arguments as a managed_file: the Jinja2 template `src` rendered here with `data`."""
    return managed_file(name=name, src=render_template(src, **data), dest=dest, user=user, group=group, mode=mode)


def secret_file(src: str, dest: str, user: str = "root", group: str = "root", mode: str = "600", **arguments):
    """A secret file (managed_file, 0600 root by default): compared by hash, never diffed or printed."""
    return managed_file(src=src, dest=dest, user=user, group=group, mode=mode, secret=True, **arguments)


@declares(lambda paths: {"paths": list(paths)})
@operation()
def absent(paths: list):
    """
    None of `paths` exists (files, links, folders with their contents), checked with everything else the
    host is asked; one `rm -rf` for those present.

    + paths: remote paths
    """
    present = [p for p in paths if hoststate.path(host, p) is not None]
    if present:
        yield "rm -rf -- " + " ".join(shlex.quote(p) for p in present)


def service_plan(unit: str, current: dict, running, enabled) -> list:
    """Commands (pure; see service) giving `unit` the wanted running and enabled states (None: leave it)."""
    commands = []
    name = shlex.quote(hoststate.unit_name(unit))
    if running is True and not current["running"]:
        commands.append(f"systemctl start {name}")
    elif running is False and current["running"]:
        commands.append(f"systemctl stop {name}")
    if enabled is True and not current["enabled"]:
        commands.append(f"systemctl enable {name}")
    elif enabled is False and current["enabled"]:
        commands.append(f"systemctl disable {name}")
    return commands


@declares(lambda unit, **_: {"units": [unit]})
@operation()
def service(unit: str, running=None, enabled=None):
    """
    A systemd unit started or stopped, enabled or disabled (None: left as it is), its state read with
    everything else the host is asked (systemd.service reads two facts per unit). Running and enabled as
    systemd.service counts them (SubState running/exited/..., UnitFileState enabled/static).

    + unit: the unit (".service" when no type is given)
    + running, enabled: True, False or None
    """
    yield from service_plan(unit, hoststate.unit(host, unit), running, enabled)


@declares(lambda specs: {"paths": [s[0] for s in specs]})
@operation()
def attributes(specs: list):
    """
    Existing paths get their owner and mode (one command per distinct owner and per distinct mode); a
    missing one is an error, before anything changes.

    + specs: [(path, user, group, mode)]
    """
    current = {s[0]: hoststate.path(host, s[0]) for s in specs}
    missing = [p for p, stats in current.items() if stats is None]
    if missing:
        raise OperationError(f"{host.name}: {', '.join(missing)} missing")
    yield from _attribute_fixes(specs, current)


@declares(lambda path, **_: {"paths": [path]})
@operation()
def ssh_keypair(path: str, comment: str):
    """
    An ed25519 key pair without passphrase at `path` (private, 0600) and `path`.pub; made once.

    + path: private key path on the host
    + comment: the key's comment (names its one use)
    """
    if not hoststate.path(host, path):
        yield f"install -d -m 700 $(dirname {shlex.quote(path)})"
        yield f"ssh-keygen -q -t ed25519 -N '' -C {shlex.quote(comment)} -f {shlex.quote(path)}"


class Certificate(FactBase):
    """A PEM certificate file's text (public), or None when absent or not a certificate."""

    def command(self, path):
        return f"cat {shlex.quote(path)} 2>/dev/null || true"

    def process(self, output):
        text = "\n".join(output).strip()
        return text + "\n" if text.startswith("-----BEGIN CERTIFICATE-----") else None


def tls_keypair_command(key: str, cert: str, common_name: str) -> str:
    """Shell: a P-256 key (0600) and a self-signed certificate for it, made on the host, written to
    temporary names then moved into place (an interrupted run leaves no half pair). The common name is
    also the certificate's DNS subjectAltName: Go's TLS (Prometheus) checks only SANs, so a scrape job
    names it as `server_name` (docs/operator.md "Prometheus")."""
    folder = shlex.quote(key.rsplit("/", 1)[0])
    key_q, cert_q, subject = shlex.quote(key), shlex.quote(cert), shlex.quote(f"/CN={common_name}")
    san = shlex.quote(f"subjectAltName=DNS:{common_name}")
    return (
        f"install -d -m 700 {folder} && (umask 077 && openssl req -x509 -newkey ec "
        f"-pkeyopt ec_paramgen_curve:P-256 -nodes -days 36500 -subj {subject} "
        f"-addext basicConstraints=critical,CA:FALSE -addext keyUsage=critical,digitalSignature "
        f"-addext extendedKeyUsage=serverAuth,clientAuth -addext {san} -keyout {key_q}.tmp -out {cert_q}.tmp "
        f"2>/dev/null) && chmod 600 {key_q}.tmp && chmod 644 {cert_q}.tmp && "
        f"mv {key_q}.tmp {key_q} && mv {cert_q}.tmp {cert_q}"
    )


@declares(lambda key, cert, **_: {"paths": [key], "facts": [(Certificate, {"path": cert})]})
@operation()
def tls_keypair(key: str, cert: str, common_name: str):
    """
    This host's TLS key (`key`, 0600) and self-signed certificate (`cert`, 0644), made on the host so the
    private key never leaves it; made once (both present: nothing to do), remade if either is missing.

    + key, cert: paths on the host (their folder is created 0700)
    + common_name: the certificate's subject CN (names the host's role)
    """
    if hoststate.path(host, key) and hoststate.fact(host, Certificate, path=cert):
        return
    yield tls_keypair_command(key, cert, common_name)


@declares(lambda path: {"paths": [path]})
@operation()
def random_key(path: str):
    """
    A random 256-bit key as hex text at `path` (0600), made on the host once and never printed.

    + path: the key file (its folder is created 0700)
    """
    if hoststate.path(host, path):
        return
    yield random_key_command(path)


def random_key_command(path: str) -> str:
    """Shell: 32 random bytes as hex into `path` (0600 from the start), written whole or not at all."""
    folder, quoted = shlex.quote(path.rsplit("/", 1)[0]), shlex.quote(path)
    return (f"install -d -m 700 {folder} && (umask 077 && openssl rand -hex 32 > {quoted}.tmp) && "
            f"mv {quoted}.tmp {quoted}")


@declares(lambda path, **_: {"facts": [(Certificate, {"path": path})]})
@operation()
def pinned_certificate(path: str, other, other_path: str):
    """
    `path` (0644) holds exactly the certificate `other` has at `other_path` (the peer's, to pin). Read from
    `other` when this operation runs when it does not exist yet (it is made earlier in the same deploy).

    + path: where the pinned copy goes on this host
    + other, other_path: the host whose certificate is pinned, and where it keeps it
    """
    current = hoststate.fact(host, Certificate, path=path)
    wanted = hoststate.fact(other, Certificate, path=other_path)
    if wanted is not None:
        if current != wanted:
            yield from _put_text(path, wanted)
        return

    def install():
        ok, output = other.run_shell_command(f"cat {shlex.quote(other_path)}")
        text = "\n".join(output.stdout_lines).strip() + "\n" if ok else ""
        if not text.startswith("-----BEGIN CERTIFICATE-----"):
            raise RuntimeError(f"{other.name}: no certificate at {other_path} to pin")
        status, result = host.run_shell_command(_put_text_command(path, text))
        if not status:
            raise RuntimeError(f"{host.name}: writing {path} failed: {result.stderr}")
        return True

    yield FunctionCommand(install, (), {})


def _put_text_command(path: str, text: str) -> str:
    quoted = shlex.quote(path)
    return (f"install -d -m 700 {shlex.quote(path.rsplit('/', 1)[0])} && printf '%s' {shlex.quote(text)} "
            f"> {quoted}.tmp && chmod 644 {quoted}.tmp && mv {quoted}.tmp {quoted}")


def _put_text(path, text):
    yield _put_text_command(path, text)


@declares(lambda path, marker, **_: {"paths": [path], "facts": [(PublicKeyLines, {"path": path, "marker": marker})]})
@operation()
def authorized_key_line(path: str, marker: str, line: str = None, key_from=None, owner: str = "root",
                        mode: str = "600", dir_mode: str = "700"):
    """
    Exactly one line tagged `marker` in the authorized_keys file `path`.

    + path: the authorized_keys file (created `mode`, its folder `dir_mode`)
    + marker: text identifying our line (the key's comment); other lines are kept
    + line: the full line; or None with key_from=(other_host, pubkey_path, options): the key is read from
      that host when this operation runs (it is made earlier in the same deploy)
    + owner: owner of the file and its folder
    + mode, dir_mode: permissions of the file and its folder
    """
    current = hoststate.fact(host, PublicKeyLines, path=path, marker=marker)
    if line is None:
        other, pubkey_path, options = key_from
        public_key = hoststate.fact(other, PublicKey, path=pubkey_path)
        if public_key:
            line = f"{options} {public_key}"
    if line is not None:
        if current == [line] and _file_is(hoststate.path(host, path), owner, mode):
            return
        yield _write_line_command(path, marker, line, owner, mode, dir_mode)
        return

    def install():
        ok, output = other.run_shell_command(f"head -n1 {shlex.quote(pubkey_path)}")
        if not ok:
            raise RuntimeError(f"{other.name}: cannot read {pubkey_path}")
        wanted = f"{options} {output.stdout.strip()}"
        command = _write_line_command(path, marker, wanted, owner, mode, dir_mode)
        status, result = host.run_shell_command(command)
        if not status:
            raise RuntimeError(f"{host.name}: writing {path} failed: {result.stderr}")
        return True

    yield FunctionCommand(install, (), {})


class PublicKeyLines(FactBase):
    """Lines of an authorized_keys file that contain `marker`."""

    def command(self, path, marker):
        return f"grep -F -- {shlex.quote(marker)} {shlex.quote(path)} 2>/dev/null || true"

    def process(self, output):
        return [line for line in output if line.strip()]


def _file_is(info, owner: str, mode: str) -> bool:
    return bool(info) and info["kind"] == "f" and info["user"] == owner and info["mode"] == mode.lstrip("0")


def _write_line_command(path: str, marker: str, line: str, owner: str, mode: str = "600",
                        dir_mode: str = "700") -> str:
    folder = shlex.quote(path.rsplit("/", 1)[0])
    quoted = shlex.quote(path)
    return (
        f"install -d -m {dir_mode} -o {owner} -g {owner} {folder} && touch {quoted} && "
        f"grep -v -F -- {shlex.quote(marker)} {quoted} > {quoted}.tmp; "
        f"printf '%s\\n' {shlex.quote(line)} >> {quoted}.tmp && chmod {mode} {quoted}.tmp && "
        f"chown {owner}:{owner} {quoted}.tmp && mv {quoted}.tmp {quoted}"
    )


def _sshd_install_script(new: str, dest: str) -> str:
    """Shell: check the whole sshd config with `new` in front, only then move it to `dest`, check again,
    make sure sshd reads it, reload sshd (ssh.service on Debian, sshd.service on AlmaLinux). Anything
    failing after the move puts the previous file back (so a re-run tries again) and exits 1."""
    q_new, q_dest, q_old = shlex.quote(new), shlex.quote(dest), shlex.quote(f"{dest}.wirebot-old")
    folder = dest.rsplit("/", 1)[0]
    return (
        "set -e; "
        f"chown root:root {q_new}; chmod 644 {q_new}; "
        "check=$(mktemp /etc/ssh/.wirebot-sshd-check.XXXXXX); "
        f"printf 'Include %s\\nInclude /etc/ssh/sshd_config\\n' {q_new} > \"$check\"; "
        "if ! out=$(/usr/sbin/sshd -t -f \"$check\" 2>&1); then "
        f"rm -f \"$check\" {q_new}; echo \"sshd -t refused {dest}: $out\" >&2; exit 1; fi; "
        f"rm -f \"$check\"; if [ -e {q_dest} ]; then cp -p {q_dest} {q_old}; else rm -f {q_old}; fi; "
        f"mv -f {q_new} {q_dest}; why=''; "
        "if ! /usr/sbin/sshd -t; then why='sshd -t refused the whole config'; "
        "elif ! /usr/sbin/sshd -T -C user=root,host=localhost,addr=127.0.0.1 | grep -qx 'passwordauthentication no'; "
        f"then why='not in effect: /etc/ssh/sshd_config must Include {folder}/*.conf'; "
        "else if systemctl cat ssh.service >/dev/null 2>&1; then unit=ssh.service; else unit=sshd.service; fi; "
        "systemctl try-reload-or-restart \"$unit\" || why=\"reloading $unit failed\"; fi; "
        f"if [ -n \"$why\" ]; then if [ -e {q_old} ]; then mv -f {q_old} {q_dest}; else rm -f {q_dest}; fi; "
        f"echo \"{dest}: $why; the previous file is back\" >&2; exit 1; fi; rm -f {q_old}"
    )


@declares(lambda dest, **_: {"paths": [dest]})
@operation()
def sshd_dropin(src, dest: str):
    """
    An sshd_config drop-in: uploaded beside `dest`, checked with `sshd -t` as part of the whole config,
    only then moved into place and sshd reloaded. Nothing when `dest` already holds this content.

    + src: file-like object with the drop-in's text
    + dest: the drop-in's path (in a folder /etc/ssh/sshd_config Includes)
    """
    content = src.read().encode() if hasattr(src, "read") else src.encode()
    remote = hoststate.path(host, dest)
    if remote and remote["sha256"] == hashlib.sha256(content).hexdigest() and \
            (remote["kind"], remote["user"], remote["mode"]) == ("f", "root", "644"):
        return
    new = f"{dest}.wirebot-new"
    yield FileUploadCommand(BytesIO(content), new, remote_temp_filename=host.get_temp_filename(new))
    yield _sshd_install_script(new, dest)


# --- a directory tree in one round trip (the agents' code) --------------------------------------------

TREE_IGNORED_DIRS = ("__pycache__",)  # never synced, never deleted (Python writes them on the host)
TREE_IGNORED_FILES = ("*.pyc",)


def _find_prune(ignored_dirs, ignored_files) -> str:
    dirs = " -o ".join(f"-name {shlex.quote(d)}" for d in ignored_dirs) or "-false"
    names = " -o ".join(f"-name {shlex.quote(f)}" for f in ignored_files) or "-false"
    return f"\\( -type d \\( {dirs} \\) -prune \\) -o \\( -type f \\( {names} \\) \\) -o"


class TreeManifest(FactBase):
    """Every entry under a directory, in one command: {relative path ("." for the root): {"type" (find's
    %y: f, d, l, ...), "mode" (octal, e.g. "644"), "user", "group", "sha256" (regular files)}}; None when
    the directory is absent. Ignored directories (with their contents) and files are left out."""

    def command(self, path, ignored_dirs=TREE_IGNORED_DIRS, ignored_files=TREE_IGNORED_FILES):
        prune = _find_prune(ignored_dirs, ignored_files)
        return (f"if [ -d {shlex.quote(path)} ]; then cd {shlex.quote(path)} && echo TREE && "
                f"find . {prune} -printf 'e %y %m %u %g %p\\n' && "
                f"find . {prune} -type f -exec sha256sum -- {{}} + ; else echo ABSENT; fi")

    def process(self, output):
        lines = list(output)
        if not lines or lines[0] != "TREE":
            return None  # absent (or no answer at all): everything is to be made
        tree = {}
        for line in lines[1:]:
            if line.startswith("e "):
                _, kind, mode, user, group, rel = line.split(" ", 5)
                tree[_rel(rel)] = {"type": kind, "mode": mode, "user": user, "group": group, "sha256": None}
            elif len(line) > 66 and line[64:66] == "  " and _rel(line[66:]) in tree:
                tree[_rel(line[66:])]["sha256"] = line[:64]
        return tree


def _rel(path: str) -> str:
    return "." if path in (".", "./") else path[2:] if path.startswith("./") else path


def local_tree(src: str, ignored_dirs=TREE_IGNORED_DIRS, ignored_files=TREE_IGNORED_FILES) -> dict:
    """The local side of TreeManifest: {relative path: {"type": "d" | "f", "sha256" (files)}}. Raises
    ValueError on what a tree sync does not copy (links, devices, names with a newline or backslash)."""
    import fnmatch
    import os

    if not os.path.isdir(src):
        raise ValueError(f"tree sync: source directory not found: {src}")
    tree = {".": {"type": "d"}}
    for folder, dirs, names in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d not in ignored_dirs)
        for name in sorted(dirs) + sorted(names):
            full = os.path.join(folder, name)
            rel = os.path.relpath(full, src)
            if any(c in rel for c in "\n\\"):
                raise ValueError(f"tree sync: unsupported file name {full!r}")
            if os.path.islink(full):
                raise ValueError(f"tree sync: {full} is a symbolic link (not copied)")
            if os.path.isdir(full):
                tree[rel] = {"type": "d"}
            elif os.path.isfile(full):
                if not any(fnmatch.fnmatch(name, p) for p in ignored_files):
                    tree[rel] = {"type": "f", "sha256": _sha256(full)}
            else:
                raise ValueError(f"tree sync: {full} is not a regular file or directory")
    return tree


def tree_sync_plan(local: dict, remote, dest: str, user: str, group: str, mode: str, dir_mode: str) -> list:
    """What makes `dest` equal to `local` (pure; see tree_sync): a list of shell commands (str) and
    ("upload", relative path) steps, in order; [] when nothing differs."""
    remote = remote or {}
    mode, dir_mode = mode.lstrip("0") or "0", dir_mode.lstrip("0") or "0"

    def path(rel):
        return dest if rel == "." else f"{dest.rstrip('/')}/{rel}"

    def quoted(rels):
        return " ".join(shlex.quote(path(r)) for r in rels)

    steps = []
    # remote entries that are not in the source, or are of another type: removed first
    gone = sorted(r for r, e in remote.items() if r not in local or local[r]["type"] != e["type"])
    gone = [r for r in gone if not any(r.startswith(g + "/") for g in gone if g != r)]  # rm -rf covers them
    if gone:
        # a module removed from the source takes its bytecode along (a stale .pyc is cruft, and confusing)
        stale_pyc = [f"{shlex.quote(path(posixpath.dirname(r) or '.'))}/__pycache__/"
                     f"{shlex.quote(posixpath.basename(r)[:-3])}.*.pyc"
                     for r in gone if remote[r]["type"] == "f" and r.endswith(".py")]
        steps.append(" ".join([f"rm -rf -- {quoted(gone)}", *stale_pyc]))
    kept = {r: e for r, e in remote.items() if r not in gone and not any(r.startswith(g + "/") for g in gone)}
    new_dirs = [r for r, e in local.items() if e["type"] == "d" and r not in kept]
    if new_dirs:
        steps.append(f"install -d -m {dir_mode} -o {shlex.quote(user)} -g {shlex.quote(group)} -- "
                     f"{quoted(sorted(new_dirs))}")
    uploads = sorted(r for r, e in local.items() if e["type"] == "f"
                     and (r not in kept or kept[r].get("sha256") != e["sha256"]))
    steps += [("upload", r) for r in uploads]
    owner = sorted(r for r, e in local.items() if r in uploads or (
        r in kept and r not in new_dirs and (kept[r]["user"], kept[r]["group"]) != (user, group)))
    owner = [r for r in owner if not (local[r]["type"] == "d" and r in new_dirs)]
    if owner:
        steps.append(f"chown {shlex.quote(user)}:{shlex.quote(group)} -- {quoted(owner)}")
    for kind, wanted in (("f", mode), ("d", dir_mode)):
        fix = sorted(r for r, e in local.items() if e["type"] == kind and r not in new_dirs
                     and (r in uploads or (r in kept and kept[r]["mode"] != wanted)))
        if fix:
            steps.append(f"chmod {wanted} -- {quoted(fix)}")
    return steps


@declares(lambda dest, **_: {"facts": [(TreeManifest, {"path": dest})]})
@operation()
def tree_sync(src: str, dest: str, user: str = "root", group: str = "root", mode: str = "644",
              dir_mode: str = "755"):
    """
    Make the directory `dest` an exact copy of the local directory `src`, checked in one round trip.

    One command lists the remote tree with its owners, modes and sha256 sums (TreeManifest); when it
    equals the source nothing runs. Otherwise: entries not in the source are removed, missing folders
    made, changed or missing files uploaded (pyinfra writes a temporary file and moves it into place),
    owners and modes set, each kind of fix one command for all paths. `__pycache__` folders and `*.pyc`
    files are neither copied nor compared (Python writes them on the host); a removed module's `*.pyc` is
    removed with it.

    + src: local directory (regular files and folders only; links are refused)
    + dest: remote directory
    + user, group: owner of every file and folder
    + mode, dir_mode: permissions of files and of folders
    """
    local = local_tree(src)
    remote = hoststate.fact(host, TreeManifest, path=dest)
    for step in tree_sync_plan(local, remote, dest, user, group, mode, dir_mode):
        if isinstance(step, tuple):
            target = f"{dest.rstrip('/')}/{step[1]}"
            yield FileUploadCommand(f"{src.rstrip('/')}/{step[1]}", target,
                                    remote_temp_filename=host.get_temp_filename(target))
        else:
            yield step


# --- many paths checked in one round trip ----------------------------------------------------------

def _attribute_fixes(wanted: list, current: dict) -> list:
    """chown/chmod commands, one per distinct owner and per distinct mode, for the (path, user, group,
    mode) in `wanted` whose attributes differ from `current` (or that are not in it)."""
    owners, modes = {}, {}
    for path, user, group, mode in wanted:
        now = current.get(path)
        if now is None or (now["user"], now["group"]) != (user, group):
            owners.setdefault(f"{user}:{group}", []).append(path)
        if now is None or now["mode"] != (mode.lstrip("0") or "0"):
            modes.setdefault(mode, []).append(path)
    return ([f"chown {shlex.quote(o)} -- {' '.join(shlex.quote(p) for p in ps)}" for o, ps in owners.items()]
            + [f"chmod {m} -- {' '.join(shlex.quote(p) for p in ps)}" for m, ps in modes.items()])


def directories_plan(specs: list, current: dict) -> list:
    """Commands (pure; see directories) making each (path, user, group, mode) of `specs` a directory
    with those attributes; [] when all are. Raises ValueError when a path is something else."""
    missing = [s for s in specs if s[0] not in current]
    for path, *_ in specs:
        if path in current and current[path]["kind"] != "d":
            raise ValueError(f"{path} exists and is not a directory")
    commands = []
    made = set()
    for user, group, mode in dict.fromkeys((u, g, m) for _, u, g, m in missing):  # in order, parents first
        paths = [p for p, u, g, m in missing if (u, g, m) == (user, group, mode)]
        made.update(paths)
        commands.append(f"install -d -m {mode} -o {shlex.quote(user)} -g {shlex.quote(group)} -- "
                        + " ".join(shlex.quote(p) for p in paths))
    if len(commands) > 1:  # groups out of order could make a child before its parent: one line, in order
        commands = [" && ".join(f"install -d -m {m} -o {shlex.quote(u)} -g {shlex.quote(g)} -- {shlex.quote(p)}"
                                for p, u, g, m in missing)]
    return commands + _attribute_fixes([s for s in specs if s[0] not in made], current)


@declares(lambda specs: {"paths": [s[0] for s in specs]})
@operation()
def directories(specs: list):
    """
    Directories with explicit owners and modes, all checked in one round trip (files.directory takes
    one per directory). Missing ones are made in the order given (parents first); wrong owners or modes
    fixed, one command per distinct owner and per distinct mode. A path that is not a directory is an
    error, before anything changes.

    + specs: [(path, user, group, mode)], parents before children
    """
    current = {s[0]: hoststate.path(host, s[0]) for s in specs}
    try:
        yield from directories_plan(specs, {p: stats for p, stats in current.items() if stats is not None})
    except ValueError as exc:
        raise OperationError(f"{host.name}: {exc}") from None


class Account(FactBase):
    """A user and a group, in one command: {"group": gid or None, "user": {"uid", "gid", "home", "shell"}
    or None} (getent, so users from any NSS source count)."""

    @staticmethod
    def default():
        return {"group": None, "user": None}

    def command(self, user, group):
        return (f"echo g $(getent group {shlex.quote(group)} | cut -d: -f3); "
                f"echo u $(getent passwd {shlex.quote(user)} | cut -d: -f3,4,6,7 | tr : ' ')")

    def process(self, output):
        result = {"group": None, "user": None}
        for line in output:
            parts = line.split()
            if parts[:1] == ["g"] and len(parts) == 2:
                result["group"] = parts[1]
            elif parts[:1] == ["u"] and len(parts) == 5:
                result["user"] = dict(zip(("uid", "gid", "home", "shell"), parts[1:]))
        return result


def system_account_plan(user: str, group: str, home: str, shell: str, current: dict) -> list:
    """Commands (pure; see system_account) making `user` a system user in its own system `group` with
    that home (not created) and shell; [] when it is."""
    commands = []
    if current.get("group") is None:
        commands.append(f"groupadd --system {shlex.quote(group)}")
    found = current.get("user")
    if found is None:
        commands.append(f"useradd --system --gid {shlex.quote(group)} --home-dir {shlex.quote(home)} --no-create-home "
                        f"--shell {shlex.quote(shell)} {shlex.quote(user)}")
    else:
        changes = []
        if current.get("group") is None or found["gid"] != current["group"]:
            changes.append(f"--gid {shlex.quote(group)}")
        if found["home"] != home:
            changes.append(f"--home {shlex.quote(home)}")
        if found["shell"] != shell:
            changes.append(f"--shell {shlex.quote(shell)}")
        if changes:
            commands.append(f"usermod {' '.join(changes)} {shlex.quote(user)}")
    return commands


@declares(lambda user, group, **_: {"facts": [(Account, {"user": user, "group": group})]})
@operation()
def system_account(user: str, group: str, home: str, shell: str = "/usr/sbin/nologin"):
    """
    A system user in its own system group, checked in one round trip (server.group and server.user
    take six): made when missing, its primary group, home and shell corrected when they differ. The home
    folder is not made (the deploy makes the folders it needs with their own owners and modes).

    + user, group: names
    + home: the user's home directory (in /etc/passwd)
    + shell: login shell (nologin: nobody logs in as it)
    """
    yield from system_account_plan(user, group, home, shell, hoststate.fact(host, Account, user=user, group=group))

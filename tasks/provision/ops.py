"""Operations and facts pyinfra does not ship, each idempotent (yields nothing when in place)."""

import hashlib
import json
import shlex
from io import BytesIO

from pyinfra import host, logger
from pyinfra.api import FactBase, FileUploadCommand, FunctionCommand, StringCommand, operation
from pyinfra.facts.files import File, Sha256File


class WirebotState(FactBase):
    """The agents' state file on the host (state, epoch, ...) as a dict; {} when absent or unreadable."""

    def command(self, path="/var/lib/wirebot/state.json"):
        return f"cat {shlex.quote(path)} 2>/dev/null || true"

    def process(self, output):
        try:
            data = json.loads("\n".join(output) or "{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}


class PublicKey(FactBase):
    """The first line of a public key file, or None when absent."""

    def command(self, path):
        return f"head -n1 {shlex.quote(path)} 2>/dev/null || true"

    def process(self, output):
        line = "\n".join(output).strip()
        return line or None


def _sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(65536), b""):
            digest.update(chunk)
    return digest.hexdigest()


@operation()
def secret_file(src: str, dest: str, user: str = "root", group: str = "root", mode: str = "600"):
    """
    Upload a secret file: compared by sha256, never diffed or printed (unlike files.put with --diff).

    + src: local path (in the operator's secrets directory)
    + dest: remote path
    + user, group, mode: ownership and permissions the file must have
    """
    remote = host.get_fact(File, path=dest)
    changed = not remote or host.get_fact(Sha256File, path=dest) != _sha256(src)
    if changed:
        host.log(f"Will write secret {dest} (content not shown)", logger.info)
        yield FileUploadCommand(src, dest, remote_temp_filename=host.get_temp_filename(dest))
    if changed or remote.get("user") != user or remote.get("group") != group:
        yield StringCommand("chown", f"{user}:{group}", dest)
    if changed or str(remote.get("mode")) != mode.lstrip("0"):
        yield StringCommand("chmod", mode, dest)


@operation()
def ssh_keypair(path: str, comment: str):
    """
    An ed25519 key pair without passphrase at `path` (private, 0600) and `path`.pub; made once.

    + path: private key path on the host
    + comment: the key's comment (names its one use)
    """
    if not host.get_fact(File, path=path):
        yield f"install -d -m 700 $(dirname {shlex.quote(path)})"
        yield f"ssh-keygen -q -t ed25519 -N '' -C {shlex.quote(comment)} -f {shlex.quote(path)}"


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
    current = host.get_fact(PublicKeyLines, path=path, marker=marker)
    if line is None:
        other, pubkey_path, options = key_from
        public_key = other.get_fact(PublicKey, path=pubkey_path)
        if public_key:
            line = f"{options} {public_key}"
    if line is not None:
        if current == [line] and _file_is(host.get_fact(File, path=path), owner, mode):
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
    return bool(info) and info.get("user") == owner and str(info.get("mode")) == mode.lstrip("0")


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


@operation()
def sshd_dropin(src, dest: str):
    """
    An sshd_config drop-in: uploaded beside `dest`, checked with `sshd -t` as part of the whole config,
    only then moved into place and sshd reloaded. Nothing when `dest` already holds this content.

    + src: file-like object with the drop-in's text
    + dest: the drop-in's path (in a folder /etc/ssh/sshd_config Includes)
    """
    content = src.read().encode() if hasattr(src, "read") else src.encode()
    remote = host.get_fact(File, path=dest)
    if (remote and host.get_fact(Sha256File, path=dest) == hashlib.sha256(content).hexdigest()
            and _file_is(remote, "root", "644")):
        return
    new = f"{dest}.wirebot-new"
    yield FileUploadCommand(BytesIO(content), new, remote_temp_filename=host.get_temp_filename(new))
    yield _sshd_install_script(new, dest)

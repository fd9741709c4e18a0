"""Operations and facts pyinfra does not ship, each idempotent (yields nothing when in place)."""

import hashlib
import json
import shlex

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


class HttpStatus(FactBase):
    """The HTTP status of GET `url` from the host (curl, 5 s), or None when nothing answered."""

    def command(self, url):
        return f"curl -s -o /dev/null -m 5 -w '%{{http_code}}' {shlex.quote(url)} 2>/dev/null || true"

    def process(self, output):
        text = "".join(output).strip()
        return int(text) if text.isdigit() and text != "000" else None


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
def authorized_key_line(path: str, marker: str, line: str = None, key_from=None, owner: str = "root"):
    """
    Exactly one line tagged `marker` in the authorized_keys file `path`.

    + path: the authorized_keys file (created 0600, its folder 0700)
    + marker: text identifying our line (the key's comment); other lines are kept
    + line: the full line; or None with key_from=(other_host, pubkey_path, options): the key is read from
      that host when this operation runs (it is made earlier in the same deploy)
    + owner: owner of the file and its folder
    """
    current = host.get_fact(PublicKeyLines, path=path, marker=marker)
    if line is None:
        other, pubkey_path, options = key_from
        public_key = other.get_fact(PublicKey, path=pubkey_path)
        if public_key:
            line = f"{options} {public_key}"
    if line is not None:
        if current == [line]:
            return
        yield from _write_line(path, marker, line, owner)
        return

    def install():
        ok, output = other.run_shell_command(f"head -n1 {shlex.quote(pubkey_path)}")
        if not ok:
            raise RuntimeError(f"{other.name}: cannot read {pubkey_path}")
        wanted = f"{options} {output.stdout.strip()}"
        command = _write_line_command(path, marker, wanted, owner)
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


def _write_line_command(path: str, marker: str, line: str, owner: str) -> str:
    folder = shlex.quote(path.rsplit("/", 1)[0])
    quoted = shlex.quote(path)
    return (
        f"install -d -m 700 -o {owner} -g {owner} {folder} && touch {quoted} && "
        f"grep -v -F -- {shlex.quote(marker)} {quoted} > {quoted}.tmp; "
        f"printf '%s\\n' {shlex.quote(line)} >> {quoted}.tmp && chmod 600 {quoted}.tmp && "
        f"chown {owner}:{owner} {quoted}.tmp && mv {quoted}.tmp {quoted}"
    )


def _write_line(path, marker, line, owner):
    yield _write_line_command(path, marker, line, owner)

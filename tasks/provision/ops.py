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


class Certificate(FactBase):
    """A PEM certificate file's text (public), or None when absent or not a certificate."""

    def command(self, path):
        return f"cat {shlex.quote(path)} 2>/dev/null || true"

    def process(self, output):
        text = "\n".join(output).strip()
        return text + "\n" if text.startswith("-----BEGIN CERTIFICATE-----") else None


def tls_keypair_command(key: str, cert: str, common_name: str) -> str:
    """Shell: a P-256 key (0600) and a self-signed certificate for it, made on the host, written to
    temporary names then moved into place (an interrupted run leaves no half pair)."""
    folder = shlex.quote(key.rsplit("/", 1)[0])
    key_q, cert_q, subject = shlex.quote(key), shlex.quote(cert), shlex.quote(f"/CN={common_name}")
    return (
        f"install -d -m 700 {folder} && (umask 077 && openssl req -x509 -newkey ec "
        f"-pkeyopt ec_paramgen_curve:P-256 -nodes -days 36500 -subj {subject} "
        f"-addext basicConstraints=critical,CA:FALSE -addext keyUsage=critical,digitalSignature "
        f"-addext extendedKeyUsage=serverAuth,clientAuth -keyout {key_q}.tmp -out {cert_q}.tmp "
        f"2>/dev/null) && chmod 600 {key_q}.tmp && chmod 644 {cert_q}.tmp && "
        f"mv {key_q}.tmp {key_q} && mv {cert_q}.tmp {cert_q}"
    )


@operation()
def tls_keypair(key: str, cert: str, common_name: str):
    """
    This host's TLS key (`key`, 0600) and self-signed certificate (`cert`, 0644), made on the host so the
    private key never leaves it; made once (both present: nothing to do), remade if either is missing.

    + key, cert: paths on the host (their folder is created 0700)
    + common_name: the certificate's subject CN (names the host's role)
    """
    if host.get_fact(File, path=key) and host.get_fact(Certificate, path=cert):
        return
    yield tls_keypair_command(key, cert, common_name)


@operation()
def random_key(path: str):
    """
    A random 256-bit key as hex text at `path` (0600), made on the host once and never printed.

    + path: the key file (its folder is created 0700)
    """
    if host.get_fact(File, path=path):
        return
    yield random_key_command(path)


def random_key_command(path: str) -> str:
    """Shell: 32 random bytes as hex into `path` (0600 from the start), written whole or not at all."""
    folder, quoted = shlex.quote(path.rsplit("/", 1)[0]), shlex.quote(path)
    return (f"install -d -m 700 {folder} && (umask 077 && openssl rand -hex 32 > {quoted}.tmp) && "
            f"mv {quoted}.tmp {quoted}")


@operation()
def pinned_certificate(path: str, other, other_path: str):
    """
    `path` (0644) holds exactly the certificate `other` has at `other_path` (the peer's, to pin). Read from
    `other` when this operation runs when it does not exist yet (it is made earlier in the same deploy).

    + path: where the pinned copy goes on this host
    + other, other_path: the host whose certificate is pinned, and where it keeps it
    """
    current = host.get_fact(Certificate, path=path)
    wanted = other.get_fact(Certificate, path=other_path)
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

"""The lab's systemd hosts: a copy of the cached rootfs each, booted with systemd-nspawn in its namespace.

A host is a folder under settings.HOSTS_DIR plus a systemd-nspawn process tracked by a pid file. Its SSH
host keys are made per host and pinned in the lab's known_hosts; the lab's own key logs in as root.
"""

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from lab import gateway_bundle, processes, settings
from lab.shell import LabError, run
from tasks.core.wait import WaitTimeout, wait_for

KNOWN_HOSTS = settings.STATE_DIR / "known_hosts"
STANDINS = Path(__file__).parent / "standins"


def root_of(name: str) -> Path:
    return settings.HOSTS_DIR / name


def ensure_lab_key() -> None:
    """The lab's SSH key pair (no passphrase), made once."""
    if not settings.SSH_KEY.exists():
        settings.SSH_KEY.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "wirebot-lab", "-f", str(settings.SSH_KEY)])


def prepare(name: str, rootfs: Path) -> None:
    """Host `name`'s root: a copy of `rootfs` with its hostname, host keys and the lab's key (once)."""
    root = root_of(name)
    if not (root / ".lab-host").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.parent.mkdir(parents=True, exist_ok=True)
        run(["cp", "-a", "--reflink=auto", str(rootfs), str(root)])
        (root / "etc/hostname").write_text(f"{name}\n")
        hosts = "127.0.0.1 localhost\n" + "".join(
            f"{settings.address(other)} {other}\n" for other in settings.HOSTS
        )
        (root / "etc/hosts").write_text(hosts)
        run(["ssh-keygen", "-A", "-f", str(root)])
        (root / "etc/machine-id").write_text("")  # systemd makes a fresh one at first boot
        (root / ".lab-host").write_text(name + "\n")
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    keys = ssh_dir / "authorized_keys"
    lab_key = settings.SSH_KEY.with_suffix(".pub").read_text()
    if lab_key not in (keys.read_text() if keys.exists() else ""):
        with open(keys, "a") as handle:
            handle.write(lab_key)
    keys.chmod(0o600)


def install_standins(name: str) -> None:
    """Put the stand-ins where the real binaries live on host `name` (test equipment, lab only), and
    /usr/bin/node and /usr/bin/openclaw where NodeSource and `npm install -g` put them on a real host,
    pointing into the gateway bundle that boot() mounts read-only."""
    root = root_of(name)
    places = {
        "cloudflared.py": root / "usr/bin/cloudflared",
        "scoreboard.py": root / "data/wirebot/bin/wirebot-scoreboard",
    }
    for source, target in places.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(STANDINS / source, target)
        target.chmod(0o755)
    (root / "data/wirebot/bin/openclaw-gateway").unlink(missing_ok=True)  # the old stand-in's place
    for command in ("node", "openclaw"):
        link = root / "usr/bin" / command
        if not link.is_symlink() or str(link.readlink()) != f"{gateway_bundle.MOUNT}/bin/{command}":
            link.unlink(missing_ok=True)
            link.symlink_to(f"{gateway_bundle.MOUNT}/bin/{command}")
    lab_conf = root / "etc/cloudflared-lab"
    lab_conf.mkdir(parents=True, exist_ok=True)
    (lab_conf / "edge-url").write_text(settings.EDGE_URL + "\n")
    (lab_conf / "origin-ip").write_text(settings.address(name) + "\n")


def host_key_line(name: str) -> str:
    key = (root_of(name) / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2]
    return f"{name},{settings.address(name)} {' '.join(key)}\n"


def write_access_files() -> None:
    """known_hosts pinning every lab host's key, and an ssh_config for people and testinfra."""
    KNOWN_HOSTS.write_text("".join(host_key_line(name) for name in settings.SYSTEMD_HOSTS))
    blocks = []
    for name in settings.SYSTEMD_HOSTS:
        blocks.append(
            f"Host {name} {settings.address(name)}\n"
            f"  HostName {settings.address(name)}\n"
            "  User root\n"
            f"  IdentityFile {settings.SSH_KEY}\n"
            "  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {KNOWN_HOSTS}\n"
            "  StrictHostKeyChecking yes\n"
            "  ConnectTimeout 5\n"
            "  LogLevel ERROR\n"
        )
    settings.SSH_CONFIG.write_text("\n".join(blocks))


def is_running(name: str) -> bool:
    return processes.pid_of(name) is not None


def boot(name: str) -> None:
    """Boot host `name` (no-op when it is running) and wait until SSH answers and systemd is up."""
    if not is_running(name):
        bundle = gateway_bundle.ensure()  # cached: built by `lab up`, found here on a later boot
        processes.start(name, [
            "systemd-nspawn", "-D", str(root_of(name)), "-M", name, "-b", "--console=pipe",
            "--register=no", "--keep-unit", f"--network-namespace-path=/run/netns/{settings.netns(name)}",
            # nftables inside the host (its own network namespace): the firewall and the serving lease
            "--capability=CAP_NET_ADMIN",
            # the real OpenClaw gateway: Node and openclaw from the control machine's bundle, read-only
            f"--bind-ro={bundle}:{gateway_bundle.MOUNT}",
        ])
    wait_ready(name)


def wait_ready(name: str, timeout: float = 90.0) -> str:
    """Wait for SSH and `systemctl is-system-running --wait`; returns systemd's verdict."""
    def booted():
        if not is_running(name):
            raise LabError(f"host {name} stopped while booting; see {processes.log_file(name)}")
        socket.create_connection((settings.address(name), 22), timeout=1).close()
        verdict = ssh(name, "systemctl is-system-running --wait", check=False, timeout=60).stdout.strip()
        return verdict if verdict in ("running", "degraded") else None

    try:
        return wait_for(booted, timeout, interval=0.5, what=f"host {name} to boot (SSH and systemd up)",
                        ignore=(OSError, subprocess.TimeoutExpired))
    except WaitTimeout as timed_out:
        raise LabError(f"{timed_out}; see {processes.log_file(name)}") from None


def ssh(name: str, command: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run `command` on lab host `name` as root over real SSH."""
    return run(["ssh", "-F", str(settings.SSH_CONFIG), name, command], check=check, timeout=timeout)


def shutdown(name: str) -> bool:
    """A clean shutdown (SIGTERM to systemd-nspawn makes the container's systemd power off)."""
    return processes.stop(name, signal.SIGTERM, timeout=60)


def kill(name: str) -> bool:
    """A hard crash: SIGKILL to the container's init (which takes its whole PID namespace) and nspawn."""
    pid = processes.pid_of(name)
    if pid is None:
        return False
    for child in _children(pid):
        run(["kill", "-9", str(child)], check=False)
    return processes.stop(name, signal.SIGKILL)


def _children(pid: int) -> list:
    """Pids whose parent is `pid` (nspawn's only child is the container's init)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(proc.name))
    return found


def pids(name: str) -> list:
    """Every pid in host `name`'s PID namespace (its init is nspawn's only child); LabError when it is down."""
    nspawn = processes.pid_of(name)
    inits = _children(nspawn) if nspawn else []
    if not inits:
        raise LabError(f"host {name} is not running")
    ns = os.readlink(f"/proc/{inits[0]}/ns/pid")
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.readlink(proc / "ns/pid") == ns:
                    found.append(int(proc.name))
            except OSError:
                continue
    return found

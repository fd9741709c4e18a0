"""The lab's life cycle: up (idempotent, clears leftovers), down (removes everything it made), status."""

import shutil
import time

from lab import chaos, edge_service, freezer, gateway_bundle, machines, network, processes, rootfs, secrets, settings
from lab.chaos import HOG
from lab.shell import LabError, run


def up() -> float:
    """Bring the whole lab up from any state; returns the seconds it took."""
    started = time.monotonic()
    for tool in ("debootstrap", "systemd-nspawn", "ssh", "rsync", "npm"):
        if shutil.which(tool) is None:
            raise LabError(f"'{tool}' is not installed: apt-get install -y debootstrap systemd-container "
                           "openssh-client rsync npm")
    for folder in (settings.STATE_DIR, settings.RUN_DIR, settings.HOSTS_DIR):
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    image = rootfs.ensure()
    gateway_bundle.ensure()
    machines.ensure_lab_key()
    secrets.ensure()
    network.ensure_bridge()
    for name in settings.HOSTS:
        if name in settings.SYSTEMD_HOSTS and not machines.is_running(name):
            network.remove_namespace(name)  # a namespace without its machine is a leftover
        network.ensure_namespace(name)
    edge_service.start()
    for name in settings.SYSTEMD_HOSTS:
        machines.prepare(name, image)
        machines.install_standins(name)
    machines.write_access_files()
    for name in settings.SYSTEMD_HOSTS:
        machines.boot(name)
    return time.monotonic() - started


def down() -> None:
    """Stop every lab process and remove the namespaces, bridge, hosts and state (keeps the rootfs cache)."""
    chaos.heal_all()  # injected faults: delay proxies, CPU hogs and their cpu groups, nft chaos tables
    for name in settings.SYSTEMD_HOSTS:
        freezer.remove(name)  # a frozen host would never shut down
        machines.kill(name) if not machines.shutdown(name) else None
        freezer.remove(name)
    edge_service.stop()
    for name in settings.HOSTS:
        network.remove_namespace(name)
    network.remove_bridge()
    shutil.rmtree(settings.STATE_DIR, ignore_errors=True)


def status() -> dict:
    """What is up: per host its process, namespace and (for systemd hosts) systemd's verdict."""
    report = {"bridge": network.bridge_exists(), "hosts": {}}
    for name in settings.HOSTS:
        running = name in settings.PROCESS_HOSTS and processes.pid_of(name) is not None
        entry = {"address": settings.address(name), "namespace": network.namespace_ready(name),
                 "running": running}
        if running and name in settings.SYSTEMD_HOSTS:
            result = machines.ssh(name, "systemctl is-system-running", check=False, timeout=10)
            entry["systemd"] = result.stdout.strip() or result.stderr.strip()
        report["hosts"][name] = entry
    return report


def leftovers() -> list:
    """Anything the lab makes that still exists on this machine (empty after `down`)."""
    found = []
    if network.bridge_exists():
        found.append(f"bridge {settings.BRIDGE}")
    netns = run(["ip", "netns", "list"], check=False).stdout.split()
    found += [f"namespace {settings.netns(name)}" for name in settings.HOSTS if settings.netns(name) in netns]
    links = run(["ip", "-o", "link", "show"], check=False).stdout
    found += [f"veth {network.veth(name)}" for name in settings.HOSTS if f" {network.veth(name)}@" in links]
    found += [f"cpu group {group}" for group in chaos.active()["cpu"]]
    if settings.STATE_DIR.exists():
        found.append(f"state dir {settings.STATE_DIR}")
    for proc in run(["ps", "-eo", "args"], check=False).stdout.splitlines():
        if ("systemd-nspawn" in proc and str(settings.HOSTS_DIR) in proc) or (
                "-m lab.edge" in proc and f"--listen {settings.address('edge')} " in proc) or (
                "-m lab.model_server" in proc and f"--listen {settings.address('edge')} " in proc) or (
                f"wirebot-lab{settings.LAB_ID}-" in proc and ("lab.delay_proxy" in proc or HOG in proc)):
            found.append(f"process {proc.strip()}")
    return found

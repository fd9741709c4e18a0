"""A Debian 12 root filesystem built once with debootstrap and cached on disk.

The cache key is a hash of everything that shapes the tree (suite, variant, mirror, package list), so
changing the package list builds a new rootfs; an interrupted build never becomes the cache (it is built
in a temporary folder and renamed when complete).
"""

import hashlib
import shutil
import time
from pathlib import Path

from lab import settings
from lab.shell import run

SUITE = "bookworm"
VARIANT = "minbase"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = (
    # a real systemd host reached over SSH
    "systemd", "systemd-sysv", "dbus", "openssh-server", "openssh-client", "iproute2", "procps",
    # what the agents and the deploy need on every host (the lab hosts have no package registry)
    "python3", "python3-yaml", "sqlite3", "rsync", "curl", "ca-certificates",
    # the host firewall and the serving lease (nftables in each host's own network namespace)
    "nftables",
)


def cache_key() -> str:
    """A short hash of the inputs of the build."""
    text = "\n".join([SUITE, VARIANT, MIRROR, *sorted(PACKAGES)])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cached_path() -> Path:
    """Where the rootfs for the current inputs lives (whether or not it is built yet)."""
    return settings.CACHE_DIR / f"rootfs-{SUITE}-{cache_key()}"


def ensure() -> Path:
    """The cached rootfs, building it first when absent. Stale builds for other keys are removed."""
    target = cached_path()
    if (target / ".complete").exists():
        return target
    settings.CACHE_DIR.mkdir(parents=True, exist_ok=True)
    for stale in settings.CACHE_DIR.glob(f"rootfs-{SUITE}-*"):
        if stale != target:
            shutil.rmtree(stale, ignore_errors=True)
    building = target.with_name(target.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    started = time.monotonic()
    print(f"lab: building the Debian {SUITE} rootfs (once; cached in {target}) ...", flush=True)
    run([
        "debootstrap", f"--variant={VARIANT}", f"--include={','.join(PACKAGES)}",
        SUITE, str(building), MIRROR,
    ])
    # The hosts get their SSH host keys per copy (see machines.py), never from the shared image.
    for key in (building / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (building / ".complete").write_text(cache_key() + "\n")
    building.rename(target)
    print(f"lab: rootfs built in {time.monotonic() - started:.0f} s", flush=True)
    return target

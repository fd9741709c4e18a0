"""Lab and deploy timings, printed as tables.

``python bench/deploy_bench.py --noop N`` (the lab of WIREBOT_LAB_ID up and deployed): the no-change
re-deploy of both hosts, before and after, interleaved N times: "before" is a copy of the working tree
with the round-trip savings undone (BEFORE_PATCHES: the agents' code synced by files.sync, a stat and a
sha1sum per file; each directory by its own files.directory; the wirebot account by server.group and
server.user; each secret file by two facts), "after" the working tree; each
``pyinfra -y`` and ``pyinfra --dry`` on the same lab, with the number of remote commands each ran
(``>>>`` lines of ``-vvv``) and the load (``uptime``) around. Both are no-ops: they deploy the same
state in different numbers of round trips.

``python bench/deploy_bench.py --runs N``: each run ``lab down``, ``lab up`` from nothing (warm rootfs
cache), a first deploy of both hosts, then a no-change re-deploy. Leaves the lab up and deployed.
"""

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))
# (file, text in the working tree, what it was before): the "before" deploy
BEFORE_PATCHES = [
    ("tasks/provision/base/__init__.py",
     "from tasks.provision.ops import directories, secret_file, system_account, tree_sync",
     "from tasks.provision.ops import secret_file"),
    ("tasks/provision/base/__init__.py",
     """    system_account(name=f"Ensure system user {user} exists (group {user}).", user=user, group=user,
                   home=str(Path(data.wirebot_workspace).parent), shell="/usr/sbin/nologin")""",
     """    server.group(name=f"Ensure group {user} exists.", group=user, system=True)
    server.user(name=f"Ensure system user {user} exists.", user=user, group=user, system=True,
                home=str(Path(data.wirebot_workspace).parent), shell="/usr/sbin/nologin", create_home=False)"""),
    ("tasks/provision/base/__init__.py", "    tree = [\n", "    for path, owner, mode in [\n"),
    ("tasks/provision/base/__init__.py",
     """    ]
    directories(name=f"Ensure the {len(tree)} directories of the seed's tree exist (owners, modes).",
                specs=[(path, owner, "root" if owner == "root" else user, mode) for path, owner, mode in tree])""",
     """    ]:
        group = "root" if owner == "root" else user
        files.directory(name=f"Ensure {path} exists ({owner}, {mode}).", path=path,
                        user=owner, group=group, mode=mode)"""),
    ("tasks/provision/base/__init__.py",
     """    tree_sync(name="Ensure the agents' code is installed.", src=str(AGENTS_SRC),  # one round trip
              dest=f"{data.wirebot_agents_dir}/wirebot", user="root", group="root", mode="644", dir_mode="755")""",
     """    files.sync(name="Ensure the agents' code is installed.", src=str(AGENTS_SRC),
               dest=f"{data.wirebot_agents_dir}/wirebot", user="root", group="root", mode="644",
               dir_mode="755", delete=True, exclude=["*.pyc", "__pycache__"], exclude_dir=["__pycache__"])"""),
    ("tasks/provision/ops.py", "from pyinfra.facts.files import File\n",
     "from pyinfra.facts.files import File, Sha256File\n"),
    ("tasks/provision/ops.py",
     """    remote = host.get_fact(PathStats, paths=[dest], digests=True).get(dest)  # one round trip
    if remote and remote["kind"] != "f":
        raise OperationError(f"{host.name}: {dest} exists and is not a regular file")
    changed = not remote or remote["sha256"] != _sha256(src)""",
     """    remote = host.get_fact(File, path=dest)
    changed = not remote or host.get_fact(Sha256File, path=dest) != _sha256(src)"""),
    ("tasks/provision/ops.py",
     """    if changed or (remote["user"], remote["group"]) != (user, group):
        yield StringCommand("chown", f"{user}:{group}", dest)
    if changed or remote["mode"] != mode.lstrip("0"):""",
     """    if changed or remote.get("user") != user or remote.get("group") != group:
        yield StringCommand("chown", f"{user}:{group}", dest)
    if changed or str(remote.get("mode")) != mode.lstrip("0"):"""),
]


def before_tree(folder: str) -> str:
    """A copy of the working tree (tracked and untracked files) with BEFORE_PATCHES applied."""
    names = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "-z"], check=True,
                           capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, names):
        src, dest = ROOT / name, Path(folder) / name
        if src.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
    (Path(folder) / ".venv").symlink_to(ROOT / ".venv")
    for name, now, then in BEFORE_PATCHES:
        path = Path(folder) / name
        text = path.read_text()
        if now not in text:
            sys.exit(f"deploy_bench: {name} no longer holds the code BEFORE_PATCHES replaces; update the bench")
        path.write_text(text.replace(now, then))
    return folder


def timed(argv, cwd=ROOT) -> float:
    started = time.monotonic()
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return time.monotonic() - started


def noop(cwd, dry=False) -> tuple:
    """(seconds, remote commands, changed operations) of one no-change deploy run from `cwd`."""
    argv = [PYINFRA, "-vvv", *(["--dry"] if dry else ["-y"]), "lab/inventory.py", "deploy.py"]
    started = time.monotonic()
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"{' '.join(argv)} in {cwd} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    out = result.stdout + result.stderr
    total = [line for line in out.splitlines() if "Grand total" in line]
    changed = total[-1].split()[3] if total else "n/a"  # Operation, Change, Success, Error, No Change
    return seconds, sum(">>>" in line for line in out.splitlines()), changed


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.split("load average: ")[-1].strip()


def bench_noop(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="deploy-bench-") as tmp:
        sides = {"before": before_tree(tmp), "after": str(ROOT)}
        noop(str(ROOT))  # settle: the first run may still apply something
        results = {(side, dry): [] for side in sides for dry in (False, True)}
        loads = [load()]
        for _ in range(runs):
            for side, cwd in sides.items():
                for dry in (False, True):
                    results[side, dry].append(noop(cwd, dry))
        loads.append(load())
    print(f"no-change re-deploy of both hosts, {runs} interleaved runs each; load before {loads[0]}, "
          f"after {loads[1]}")
    print("| deploy | mode | median s | min s | max s | remote commands | changed ops |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for (side, dry), rows in results.items():
        seconds = [r[0] for r in rows]
        print(f"| {side} | {'--dry' if dry else '-y'} | {statistics.median(seconds):.1f} | {min(seconds):.1f} | "
              f"{max(seconds):.1f} | {statistics.median(r[1] for r in rows):.0f} | {rows[-1][2]} |")


def bench_cycle(runs: int) -> None:
    steps = {"lab up (warm cache)": [], "first deploy (both hosts)": [], "no-change re-deploy": []}
    for _ in range(runs):
        timed([sys.executable, "-m", "lab", "down"])
        steps["lab up (warm cache)"].append(timed([sys.executable, "-m", "lab", "up"]))
        steps["first deploy (both hosts)"].append(timed([PYINFRA, "-y", "lab/inventory.py", "deploy.py"]))
        steps["no-change re-deploy"].append(timed([PYINFRA, "-y", "lab/inventory.py", "deploy.py"]))
    print("| step | runs | median s | min s | max s |\n|---|---:|---:|---:|---:|")
    for name, seconds in steps.items():
        print(f"| {name} | {len(seconds)} | {statistics.median(seconds):.1f} | {min(seconds):.1f} | "
              f"{max(seconds):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="how many full cycles (default 2)")
    parser.add_argument("--noop", type=int, metavar="N", help="only the no-change re-deploy, before/after, N times")
    a = parser.parse_args()
    if a.noop:
        bench_noop(a.noop)
    else:
        bench_cycle(a.runs)


if __name__ == "__main__":
    main()

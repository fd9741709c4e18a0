"""tasks/core/ops.tree_sync: the agents' code checked in one round trip. Table-driven like pyinfra's
own operation tests (facts in, commands out), plus the fact's command run for real on a local tree: the
remote listing of an exact copy must plan nothing, and applying a plan must make an exact copy."""

import os
import shutil
import subprocess

import pytest

from tasks.core import ops

A, B = "a" * 64, "b" * 64
DEST = "/opt/wirebot/agents/wirebot"
LOCAL = {".": {"type": "d"}, "x.py": {"type": "f", "sha256": A}, "sub": {"type": "d"},
         "sub/y.py": {"type": "f", "sha256": B}}


def entry(kind, sha=None, mode=None, user="root", group="root"):
    return {"type": kind, "mode": mode or ("755" if kind == "d" else "644"), "user": user, "group": group,
            "sha256": sha}


SAME = {".": entry("d"), "x.py": entry("f", A), "sub": entry("d"), "sub/y.py": entry("f", B)}

CASES = {
    "in place: nothing": (SAME, []),
    "absent: everything": (None, [
        f"install -d -m 755 -o root -g root -- {DEST} {DEST}/sub",
        ("upload", "sub/y.py"), ("upload", "x.py"),
        f"chown root:root -- {DEST}/sub/y.py {DEST}/x.py",
        f"chmod 644 -- {DEST}/sub/y.py {DEST}/x.py"]),
    "one file changed": ({**SAME, "x.py": entry("f", B)}, [
        ("upload", "x.py"), f"chown root:root -- {DEST}/x.py", f"chmod 644 -- {DEST}/x.py"]),
    "one file missing": ({k: v for k, v in SAME.items() if k != "sub/y.py"}, [
        ("upload", "sub/y.py"), f"chown root:root -- {DEST}/sub/y.py", f"chmod 644 -- {DEST}/sub/y.py"]),
    "extra file and extra folder with contents": (
        {**SAME, "old.py": entry("f", A), "gone": entry("d"), "gone/z.py": entry("f", B)},
        [f"rm -rf -- {DEST}/gone {DEST}/old.py {DEST}/__pycache__/old.*.pyc"]),
    "a module moved into a folder: its old bytecode goes too": (
        {**SAME, "sub/old_name.py": entry("f", A)},
        [f"rm -rf -- {DEST}/sub/old_name.py {DEST}/sub/__pycache__/old_name.*.pyc"]),
    "wrong modes and owner, content right": (
        {**SAME, "x.py": entry("f", A, mode="666"), "sub": entry("d", mode="777"),
         "sub/y.py": entry("f", B, user="wirebot")},
        [f"chown root:root -- {DEST}/sub/y.py", f"chmod 644 -- {DEST}/x.py", f"chmod 755 -- {DEST}/sub"]),
    "a folder where a file belongs": ({**SAME, "x.py": entry("d"), "x.py/q": entry("f", A)}, [
        f"rm -rf -- {DEST}/x.py", ("upload", "x.py"), f"chown root:root -- {DEST}/x.py",
        f"chmod 644 -- {DEST}/x.py"]),
    "a link where a file belongs": ({**SAME, "x.py": entry("l")}, [
        f"rm -rf -- {DEST}/x.py", ("upload", "x.py"), f"chown root:root -- {DEST}/x.py",
        f"chmod 644 -- {DEST}/x.py"]),
    "root folder with the wrong owner": ({**SAME, ".": entry("d", user="nobody")},
                                         [f"chown root:root -- {DEST}"]),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_plan(case):
    remote, expected = CASES[case]
    assert ops.tree_sync_plan(LOCAL, remote, DEST, "root", "root", "644", "0755") == expected


@pytest.mark.parametrize("output, expected", [
    (["ABSENT"], None),
    ([], None),  # no answer: treated as absent, everything is made
    (["TREE", "e d 755 root root .", "e f 644 root wirebot ./a b.py", f"{A}  ./a b.py"],
     {".": entry("d"), "a b.py": entry("f", A, group="wirebot")}),
])
def test_manifest_parsing(output, expected):
    assert ops.TreeManifest().process(output) == expected


def _fact(path):
    """TreeManifest's command run by a local shell, parsed as pyinfra would."""
    command = ops.TreeManifest().command(str(path))
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout
    return ops.TreeManifest().process(out.splitlines())


def _apply(plan, src, dest):
    for step in plan:
        if isinstance(step, tuple):
            shutil.copyfile(src / step[1], dest / step[1])
        else:
            me = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
            subprocess.run(["sh", "-c", step.replace("root:root", f"{me}:{me}").replace("-o root -g root",
                                                                                         f"-o {me} -g {me}")],
                           check=True)


def test_fact_command_on_a_real_tree_then_the_plan_makes_an_exact_copy(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    (src / "sub").mkdir(parents=True)
    (src / "x.py").write_text("print('x')\n")
    (src / "sub" / "y y.py").write_text("y = 1\n")
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    me = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    local = ops.local_tree(str(src))
    assert set(local) == {".", "x.py", "sub", "sub/y y.py"}  # caches left out
    assert _fact(dest) is None
    plan = ops.tree_sync_plan(local, None, str(dest), me, me, "644", "755")
    _apply(plan, src, dest)
    # the host's Python wrote caches; an old module lingers: the caches stay, the old module and its cache go
    (dest / "__pycache__").mkdir()
    (dest / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\1")
    (dest / "__pycache__" / "old.cpython-39.pyc").write_bytes(b"\1")
    (dest / "old.py").write_text("")
    plan = ops.tree_sync_plan(local, _fact(dest), str(dest), me, me, "644", "755")
    assert plan == [f"rm -rf -- {dest}/old.py {dest}/__pycache__/old.*.pyc"]
    _apply(plan, src, dest)
    remote = _fact(dest)
    assert ops.tree_sync_plan(local, remote, str(dest), me, me, "644", "755") == []
    assert {r: e.get("sha256") for r, e in remote.items()} == {r: e.get("sha256") for r, e in local.items()}
    assert oct(os.stat(dest / "sub" / "y y.py").st_mode & 0o777) == "0o644"
    assert (dest / "__pycache__" / "x.cpython-311.pyc").exists()
    assert not (dest / "__pycache__" / "old.cpython-39.pyc").exists()


def test_links_in_the_source_are_refused(tmp_path):
    (tmp_path / "a.py").write_text("")
    (tmp_path / "link.py").symlink_to(tmp_path / "a.py")
    with pytest.raises(ValueError, match="symbolic link"):
        ops.local_tree(str(tmp_path))



# --- directories: many checked in one round trip --------------------------------------------------------

def stats(kind="d", user="root", group="root", mode="755", sha=None):
    return {"kind": kind, "user": user, "group": group, "mode": mode, "sha256": sha}


SPECS = [("/data", "wirebot", "wirebot", "750"), ("/data/a", "wirebot", "wirebot", "750"),
         ("/etc/w", "root", "root", "755"), ("/etc/w/secrets", "root", "root", "700")]
IN_PLACE = {"/data": stats(user="wirebot", group="wirebot", mode="750"),
            "/data/a": stats(user="wirebot", group="wirebot", mode="750"),
            "/etc/w": stats(), "/etc/w/secrets": stats(mode="700")}

DIRECTORY_CASES = {
    "in place: nothing": (IN_PLACE, []),
    "all missing: made in order, one command": ({}, [
        "install -d -m 750 -o wirebot -g wirebot -- /data && install -d -m 750 -o wirebot -g wirebot -- /data/a"
        " && install -d -m 755 -o root -g root -- /etc/w && install -d -m 700 -o root -g root -- /etc/w/secrets"]),
    "one missing": ({k: v for k, v in IN_PLACE.items() if k != "/data/a"},
                    ["install -d -m 750 -o wirebot -g wirebot -- /data/a"]),
    "owners and modes off: one command per owner and per mode": (
        {**IN_PLACE, "/data": stats(mode="755"), "/data/a": stats(mode="700"), "/etc/w/secrets": stats(mode="755")},
        ["chown wirebot:wirebot -- /data /data/a", "chmod 750 -- /data /data/a", "chmod 700 -- /etc/w/secrets"]),
}


@pytest.mark.parametrize("case", DIRECTORY_CASES, ids=list(DIRECTORY_CASES))
def test_directories_plan(case):
    current, expected = DIRECTORY_CASES[case]
    assert ops.directories_plan(SPECS, current) == expected


def test_directories_refuse_a_file_in_the_way():
    with pytest.raises(ValueError, match="/data/a exists and is not a directory"):
        ops.directories_plan(SPECS, {**IN_PLACE, "/data/a": stats(kind="f")})


def test_path_stats_command_on_real_paths(tmp_path):
    (tmp_path / "d d").mkdir(mode=0o750)
    (tmp_path / "f").write_text("secret\n")
    (tmp_path / "f").chmod(0o600)
    (tmp_path / "l").symlink_to(tmp_path / "f")
    paths = [str(tmp_path / n) for n in ("d d", "f", "l", "missing")]
    command = ops.PathStats().command(paths, digests=True)
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout
    me = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    grp = subprocess.run(["id", "-gn"], capture_output=True, text=True).stdout.strip()
    import hashlib
    digest = hashlib.sha256(b"secret\n").hexdigest()
    got = ops.PathStats().process(out.splitlines())
    assert got == {paths[0]: stats("d", me, grp, "750"), paths[1]: stats("f", me, grp, "600", digest),
                   paths[2]: stats("l", me, grp, "777", None)}


# --- a system account in one round trip --------------------------------------------------------------

ACCOUNT_CASES = {
    "in place": ({"group": "998", "user": {"uid": "998", "gid": "998", "home": "/home/wirebot",
                                           "shell": "/usr/sbin/nologin"}}, []),
    "absent": ({"group": None, "user": None}, [
        "groupadd --system wirebot",
        "useradd --system --gid wirebot --home-dir /home/wirebot --no-create-home --shell /usr/sbin/nologin wirebot"]),
    "user in another group, wrong shell": (
        {"group": "998", "user": {"uid": "998", "gid": "100", "home": "/home/wirebot", "shell": "/bin/bash"}},
        ["usermod --gid wirebot --shell /usr/sbin/nologin wirebot"]),
    "group missing, user there": (
        {"group": None, "user": {"uid": "998", "gid": "100", "home": "/srv", "shell": "/usr/sbin/nologin"}},
        ["groupadd --system wirebot", "usermod --gid wirebot --home /home/wirebot wirebot"]),
}


@pytest.mark.parametrize("case", ACCOUNT_CASES, ids=list(ACCOUNT_CASES))
def test_system_account_plan(case):
    current, expected = ACCOUNT_CASES[case]
    assert ops.system_account_plan("wirebot", "wirebot", "/home/wirebot", "/usr/sbin/nologin", current) == expected


def test_account_fact_command_on_this_machine():
    command = ops.Account().command(user="root", group="root")
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout
    assert ops.Account().process(out.splitlines()) == {
        "group": "0", "user": {"uid": "0", "gid": "0", "home": "/root", "shell": os.popen("getent passwd root").read()
                               .strip().split(":")[6]}}
    out = subprocess.run(["sh", "-c", ops.Account().command(user="no-such-user-x", group="no-such-group-x")],
                         capture_output=True, text=True, check=True).stdout
    assert ops.Account().process(out.splitlines()) == {"group": None, "user": None}

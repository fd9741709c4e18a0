"""wirebot.common.safefs: what root reads from the replica tree and writes into live folders never goes
through a link it was not meant to (links made by a real `rsync --munge-links`, as the standby's forced
command makes them)."""

import os
import stat
import subprocess

import pytest
from wirebot.common import safefs

UID = 4242  # the replication accounts' stand-in


@pytest.fixture
def replica(tmp_path):
    """replica_root with litestream/ and files/ (owned by UID) and a synced folder files/<live>."""
    root = tmp_path / "replica"
    live = tmp_path / "live" / "clawd"
    synced = root / "files" / str(live).lstrip("/")
    synced.mkdir(parents=True)
    (root / "litestream" / "epoch-1" / "scoreboard" / "events.db").mkdir(parents=True)
    (root / "litestream" / "epoch-1" / "scoreboard" / "events.db" / "0001.ltx").write_bytes(b"ltx")
    return root, synced, live


def own(root):
    subprocess.run(["chown", "-R", "-h", f"{UID}:{UID}", str(root / "files"), str(root / "litestream")], check=True)


def munged_sync(src, dest):
    """What file sync leaves on the standby: rsync -rlpt with --munge-links on the receiving side."""
    subprocess.run(["rsync", "-rlpt", "-M--munge-links", f"{src}/", f"{dest}/"], check=True)


def test_a_clean_tree_has_no_problems_and_munged_inside_links_are_fine(replica, tmp_path):
    root, synced, live = replica
    src = tmp_path / "src"
    (src / "skills" / "v2").mkdir(parents=True)
    (src / "skills" / "v2" / "tool.md").write_text("tool\n")
    (src / "current").symlink_to("skills/v2")
    (src / "skills" / "up").symlink_to("../current/tool.md")
    munged_sync(src, synced)
    assert os.readlink(synced / "current") == "/rsyncd-munged/skills/v2"
    own(root)
    assert safefs.replica_problems(str(root), [str(live)]) == []


@pytest.mark.parametrize("name, target, why", [
    ("abs", "/root/.ssh", "outside"),
    ("up", "../../../../etc", "outside"),
    ("dotdot", "..", "outside"),
    ("deep", "a/../../x", "outside"),
])
def test_links_leaving_their_synced_folder_are_problems(replica, tmp_path, name, target, why):
    root, synced, live = replica
    src = tmp_path / "src"
    src.mkdir()
    (src / name).symlink_to(target)
    munged_sync(src, synced)
    own(root)
    problems = safefs.replica_problems(str(root), [str(live)])
    assert problems == [f"{synced}/{name} is a symlink to {target}, {why} {synced}"]


def test_a_chain_of_links_that_leaves_is_caught(replica, tmp_path):
    """Each link alone stays inside (d/l1 -> .. ; l2 -> d/l1/..), together they leave."""
    root, synced, live = replica
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "l1").symlink_to("..")
    (src / "l2").symlink_to("d/l1/..")
    munged_sync(src, synced)
    own(root)
    assert safefs.replica_problems(str(root), [str(live)]) == [
        f"{synced}/l2 is a symlink to d/l1/.., outside {synced}"]


def test_litestream_links_foreign_files_and_specials_are_problems(replica):
    root, synced, live = replica
    (root / "litestream" / "epoch-2").symlink_to("/etc")
    os.mkfifo(synced / "pipe")
    (synced / "hardlinked").write_text("root's\n")
    own(root)
    os.chown(synced / "hardlinked", 0, 0)
    problems = safefs.replica_problems(str(root), [str(live)])
    assert f"{root}/litestream/epoch-2 is a symlink (-> /etc); Litestream never makes one" in problems
    assert f"{synced}/pipe is not a file, folder or link" in problems
    assert f"{synced}/hardlinked is owned by uid 0, not by the account that writes here (uid {UID})" in problems


def test_a_synced_folder_that_is_a_link_is_a_problem(replica, tmp_path):
    root, synced, live = replica
    os.rmdir(synced)
    synced.symlink_to(tmp_path)
    own(root)
    assert safefs.replica_problems(str(root), [str(live)]) == [f"{synced} is a symlink: refusing to go through it"]


def test_open_dir_never_goes_through_a_link(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(safefs.UnsafePath, match=f"{tmp_path}/link is a symlink"):
        safefs.open_dir(f"{tmp_path}/link/x", create=True)
    assert list((tmp_path / "real").iterdir()) == []
    fd = safefs.open_dir(f"{tmp_path}/real/a/b", create=True)
    os.close(fd)
    assert (tmp_path / "real" / "a" / "b").is_dir()


def test_copy_replaces_live_links_instead_of_following_them(replica, tmp_path):
    root, synced, live = replica
    src = tmp_path / "src"
    (src / "memory").mkdir(parents=True)
    (src / "memory" / "notes.md").write_text("replicated\n")
    (src / "identity.md").write_text("me\n")
    (src / "tool").write_text("#!/bin/sh\n")
    (src / "tool").chmod(0o4777)
    (src / "current").symlink_to("memory/notes.md")
    munged_sync(src, synced)
    own(root)
    victim = tmp_path / "victim"
    (victim / "dir").mkdir(parents=True)
    (victim / "file").write_text("root's\n")
    live.mkdir(parents=True)
    os.chown(live, 1234, 1235)
    (live / "memory").symlink_to(victim / "dir")         # a folder replaced by a link
    (live / "identity.md").symlink_to(victim / "file")    # a file replaced by a link
    (live / "own.md").write_text("the standby's own\n")
    counts = safefs.copy_tree(str(synced), str(live), UID)
    assert counts == {"files": 3, "links": 1, "folders": 1}
    assert list((victim / "dir").iterdir()) == [] and (victim / "file").read_text() == "root's\n"
    assert (live / "memory" / "notes.md").read_text() == "replicated\n" and not (live / "memory").is_symlink()
    assert (live / "identity.md").read_text() == "me\n" and not (live / "identity.md").is_symlink()
    assert os.readlink(live / "current") == "memory/notes.md"  # unmunged
    assert (live / "own.md").read_text() == "the standby's own\n"
    info = (live / "tool").stat()
    assert stat.S_IMODE(info.st_mode) == 0o775 and (info.st_uid, info.st_gid) == (1234, 1235)
    assert os.lstat(live / "current").st_uid == 1234
    assert not [name for name in os.listdir(live) if name.startswith(".wirebot-")]


def test_copy_stops_at_a_link_leaving_the_folder(replica, tmp_path):
    root, synced, live = replica
    (synced / "escape").symlink_to("/rsyncd-munged//root/.ssh")
    own(root)
    with pytest.raises(safefs.UnsafePath, match="escape is a symlink to /root/.ssh, outside"):
        safefs.copy_tree(str(synced), str(live), UID)
    assert not os.path.lexists(live / "escape")


def test_copy_refuses_a_live_path_through_a_link(replica, tmp_path):
    root, synced, live = replica
    (synced / "a.md").write_text("a\n")
    own(root)
    target = tmp_path / "target"
    target.mkdir()
    live.parent.mkdir(parents=True)
    live.symlink_to(target)
    with pytest.raises(safefs.UnsafePath, match=f"{live} is a symlink: refusing to go through it"):
        safefs.copy_tree(str(synced), str(live), UID)
    assert list(target.iterdir()) == []

"""The file-sync account's forced command (files/libexec/wirebot-replica-rsync): parsed requests, and
real rsync transfers through it (a stand-in `ssh` hands the client's command to it as sshd would)."""

import importlib.machinery
import importlib.util
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
SCRIPT = ROOT / "files" / "libexec" / "wirebot-replica-rsync"
CLIENT_REQUEST = "rsync --server -ltpre.iLsfxCIvu --delete --mkpath . /files/home/wirebot/clawd/"


def _module():
    loader = importlib.machinery.SourceFileLoader("wirebot_replica_rsync", str(SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


forced = _module()


def test_the_file_syncs_own_request_is_accepted():
    options, relative = forced.parse(CLIENT_REQUEST)
    assert options == ["-ltpre.iLsfxCIvu", "--delete", "--mkpath"]
    assert relative == "files/home/wirebot/clawd/"


@pytest.mark.parametrize("request_, why", [
    ("", "no interactive shell"),
    ("sh", "only `rsync --server`"),
    ("internal-sftp", "only `rsync --server`"),
    ("/bin/bash -c id", "only `rsync --server`"),
    ("rsync --server --sender -logDtpre.iLsfxCIvu . /files/etc/", "'--sender' is not allowed"),
    ("rsync --server --daemon .", "'--daemon' is not allowed"),
    ("rsync --server -ltpre.iLsfxCIvu --log-file=/var/tmp/x . /files/a/", "'--log-file=/var/tmp/x'"),
    ("rsync --server -ltpre.iLsfxCIvu --backup-dir=/var/tmp/y -b . /files/a/", "'--backup-dir=/var/tmp/y'"),
    ("rsync --server -ltpre.iLsfxCIvu --temp-dir=/tmp . /files/a/", "'--temp-dir=/tmp'"),
    ("rsync --server -ltpre.iLsfxCIvu --files-from=/etc/shadow . /files/a/", "--files-from"),
    ("rsync --server -rKe.iLsfxCIvu . /files/a/", "'-rKe.iLsfxCIvu' is not allowed"),
    ("rsync --server -rHe.iLsfxCIvu . /files/a/", "is not allowed"),
    ("rsync --server -rDe.iLsfxCIvu . /files/a/", "is not allowed"),
    ("rsync --server -rRe.iLsfxCIvu . /files/a/", "is not allowed"),
    ("rsync --server -rze.iLsfxCIvu . /files/a/", "is not allowed"),
    ("rsync --server -rle.iLsfxCIvu -rle.iLsfxCIvu . /files/a/", "is not allowed"),
    ("rsync --server --delete --delete -rle.iLsfxCIvu . /files/a/", "'--delete' is not allowed"),
    ("rsync --server --mkpath . /files/a/", "no rsync short options"),
    ("rsync --server -rle.iLsfxCIvu . /etc/", "is not below /files/"),
    ("rsync --server -rle.iLsfxCIvu . /files/", "is not below /files/"),
    ("rsync --server -rle.iLsfxCIvu . /files", "is not below /files/"),
    ("rsync --server -rle.iLsfxCIvu . /filesx/a/", "is not below /files/"),
    ("rsync --server -rle.iLsfxCIvu . files/a/", "is not below /files/"),
    ("rsync --server -rle.iLsfxCIvu . /files/../etc/", "'..' is not a plain name"),
    ("rsync --server -rle.iLsfxCIvu . /files/a/../../etc/", "'..' is not a plain name"),
    ("rsync --server -rle.iLsfxCIvu . /files/./a/", "'.' is not a plain name"),
    ("rsync --server -rle.iLsfxCIvu . /files//a/", "component '' is not a plain name"),
    ("rsync --server -rle.iLsfxCIvu . /files/a/ /files/b/", "expected `. DESTINATION`"),
    ("rsync --server -rle.iLsfxCIvu . /files/a\\ b/", "quoting or escapes"),
    ("rsync --server -rle.iLsfxCIvu . /files/$(id)/", "is not a plain name"),
    ("rsync --server -rle.iLsfxCIvu . /files/a;id/", "is not a plain name"),
    ("rsync  --server -rle.iLsfxCIvu . /files/a/", "only `rsync --server`"),
    ("sh -c 'rsync --server -rle.iLsfxCIvu . /files/a/'", "quoting or escapes"),
])
def test_everything_else_is_refused(request_, why):
    with pytest.raises(forced.Refused) as refused:
        forced.parse(request_)
    assert why in str(refused.value)


# --- real transfers through the forced command -------------------------------------------------------

@pytest.fixture
def standby(tmp_path):
    """ROOT laid out like the standby's replica tree, and an `ssh` that runs the forced command."""
    root = tmp_path / "replica"
    (root / "files").mkdir(parents=True)
    ssh = tmp_path / "ssh"
    # rsync -e calls: ssh [-l user] host COMMAND...; sshd would put COMMAND in SSH_ORIGINAL_COMMAND
    # and run the forced command instead.
    ssh.write_text("#!/bin/sh\n[ \"$1\" = -l ] && shift 2\nshift\n"
                   f"SSH_ORIGINAL_COMMAND=\"$*\" exec {SCRIPT} {root}\n")
    ssh.chmod(0o755)
    return root, str(ssh)


def rsync(ssh, *args):
    return subprocess.run(["rsync", "-e", ssh, *args], capture_output=True, text=True, timeout=60)


def test_a_sync_lands_below_files_with_every_link_munged(standby, tmp_path):
    root, ssh = standby
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.md").write_text("a\n")
    (src / "inside").symlink_to("sub/a.md")
    (src / "outside").symlink_to("/etc")
    result = rsync(ssh, "-rlpt", "--delete", "--mkpath", f"{src}/", "x@standby:/files/home/wirebot/clawd/")
    assert result.returncode == 0, result.stderr
    landed = root / "files" / "home" / "wirebot" / "clawd"
    assert (landed / "sub" / "a.md").read_text() == "a\n"
    assert os.readlink(landed / "inside") == "/rsyncd-munged/sub/a.md"
    assert os.readlink(landed / "outside") == "/rsyncd-munged//etc"


def test_a_planted_link_cannot_be_written_through(standby, tmp_path):
    """Issue 9: `files/x -> /tmp` planted by one rsync, then `rsync -rK` writes through it."""
    root, ssh = standby
    target = tmp_path / "outside"
    target.mkdir()
    plant = tmp_path / "plant"
    plant.mkdir()
    (plant / "x").symlink_to(target)
    assert rsync(ssh, "-rlpt", f"{plant}/", "x@standby:/files/a/").returncode == 0
    payload = tmp_path / "payload"
    (payload / "x").mkdir(parents=True)
    (payload / "x" / "owned").write_text("pwned\n")
    second = rsync(ssh, "-rK", f"{payload}/", "x@standby:/files/a/")
    assert second.returncode != 0 and "is not allowed" in second.stderr
    third = rsync(ssh, "-rlpt", f"{payload}/x/", "x@standby:/files/a/x/")
    assert third.returncode != 0 and "symlink" in third.stderr
    assert list(target.iterdir()) == []


def test_client_chosen_options_write_nothing_outside(standby, tmp_path):
    root, ssh = standby
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("f\n")
    for option in (f"-M--log-file={tmp_path}/log", f"-M--backup-dir={tmp_path}/backup",
                   f"--rsync-path=touch {tmp_path}/pwned; rsync"):
        result = rsync(ssh, "-rlpt", "-b", option, f"{src}/", "x@standby:/files/a/")
        assert result.returncode != 0, option
        assert "refused" in result.stderr, option
    assert sorted(p.name for p in tmp_path.iterdir()) == ["replica", "src", "ssh"]
    assert not (root / "files" / "a").exists()


def test_reading_back_is_refused(standby, tmp_path):
    root, ssh = standby
    (root / "files" / "secret").write_text("s\n")
    result = rsync(ssh, "-rlpt", "x@standby:/files/secret", str(tmp_path / "copy"))
    assert result.returncode != 0 and "'--sender' is not allowed" in result.stderr
    assert not (tmp_path / "copy").exists()

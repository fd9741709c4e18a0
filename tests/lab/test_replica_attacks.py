"""The replication key as an attacker holding it would use it (issue 9, items 2-5 and the sshd drop-in):
from the primary, with the real key, every trick against the standby's two replication accounts is
refused and leaves nothing outside the replica tree; a link planted through the key before an
activation makes the activation refuse, with an alert, before anything changes; sshd takes keys only
and forwards nothing on both hosts, and the operator's root login and the fence key still work.
Litestream and file sync through the same key keep working (the positive controls below; the failover
and recovery modules prove them end to end)."""

import json
import shlex
import time
import uuid

import pytest
from labtest import ssh, standby_status, wait_for, webhooks

from lab import settings

STANDBY = settings.address("standby")
ROOT = "/var/lib/wirebot-replica"
KEYS = "/etc/ssh/wirebot-authorized-keys"
SSH = ("ssh -i /root/.ssh/wirebot-replication -o BatchMode=yes -o ConnectTimeout=5 "
       "-o UserKnownHostsFile=/etc/wirebot/standby_known_hosts")
SFTP = ("sftp -i /root/.ssh/wirebot-replication -o BatchMode=yes -o ConnectTimeout=5 "
        f"-o UserKnownHostsFile=/etc/wirebot/standby_known_hosts -b - wirebot-repl@{STANDBY}")
# Anything the two accounts could have made or changed outside their tree would be theirs.
OUTSIDE = (f"find / -xdev \\( -path /proc -o -path /sys -o -path {ROOT} \\) -prune -o "
           "\\( -user wirebot-repl -o -user wirebot-files \\) -print")
GUARDED = f"{KEYS}/* /root/.ssh/authorized_keys /etc/passwd /etc/shadow /etc/ssh/sshd_config.d/*"
TARGETS = ["/var/tmp/x", "/var/tmp/y", "/tmp/pwned", "/tmp/owned", "/tmp/sftp-wrote"]


def from_primary(command, timeout=60):
    return ssh("primary", command, check=False, timeout=timeout)


def as_account(account, command="", options=""):
    """Run `command` over SSH as `account` on the standby, from the primary, with the replication key."""
    remote = f" {shlex.quote(command)}" if command else ""
    return from_primary(f"{SSH} {options} {account}@{STANDBY}{remote} </dev/null")


def rsync(args):
    return from_primary(f"rsync -e {shlex.quote(SSH)} {args}")


def sftp(*commands):
    return from_primary(f"printf '%s\\n' {' '.join(shlex.quote(c) for c in commands)} | {SFTP}")


def snapshot():
    """What must never change on the standby: (files the accounts own outside the tree, the guarded
    files' digests, which of the tricks' targets exist)."""
    theirs = ssh("standby", OUTSIDE, check=False).stdout.split()
    digests = ssh("standby", f"sha256sum {GUARDED}").stdout
    present = ssh("standby", f"ls -d {' '.join(TARGETS)} 2>/dev/null; true").stdout.split()
    return theirs, digests, present


@pytest.fixture(scope="module")
def before():
    ssh("primary", "rm -rf /tmp/attack && mkdir -p /tmp/attack && echo payload > /tmp/attack/f")
    state = snapshot()
    assert state[0] == [] and state[2] == [], state
    yield state
    ssh("standby", f"rm -rf {ROOT}/files/attack {ROOT}/litestream/probe", check=False)
    ssh("primary", "rm -rf /tmp/attack", check=False)


@pytest.fixture
def unchanged(before):
    yield
    assert snapshot() == before


# --- the tree and the accounts ------------------------------------------------------------------------

def test_the_replica_tree_is_roots_and_each_half_belongs_to_one_account(standby):
    expected = {ROOT: ("root", 0o755), f"{ROOT}/litestream": ("wirebot-repl", 0o750),
                f"{ROOT}/files": ("wirebot-files", 0o750), KEYS: ("root", 0o755),
                f"{KEYS}/wirebot-repl": ("root", 0o644), f"{KEYS}/wirebot-files": ("root", 0o644)}
    for path, (owner, mode) in expected.items():
        info = standby.file(path)
        assert (info.user, info.mode) == (owner, mode), path
    assert not standby.file(f"{ROOT}/.ssh").exists
    for account in ("wirebot-repl", "wirebot-files"):
        line = standby.file(f"{KEYS}/{account}").content_string
        assert line.startswith(f'restrict,from="{settings.address("primary")}",command="'), line


@pytest.mark.parametrize("command", ["", "id", "/bin/sh -c id", "sh", "bash -i", "internal-sftp",
                                     "rsync --server --sender -r . /files/", "rsync --server -r . /etc/cron.d/",
                                     "scp -t /tmp"])
def test_no_shell_and_no_other_command(command, unchanged):
    result = as_account("wirebot-files", command)
    assert result.returncode != 0 and "wirebot-replica-rsync: refused" in result.stderr
    assert "uid=" not in result.stdout
    sftp_account = as_account("wirebot-repl", command or "id")
    assert "uid=" not in sftp_account.stdout  # internal-sftp runs whatever was asked


def test_a_pty_is_refused(unchanged):
    result = as_account("wirebot-files", "id", options="-tt")
    assert "PTY allocation request failed" in result.stderr and "uid=" not in result.stdout


@pytest.mark.parametrize("account", ["wirebot-repl", "wirebot-files"])
def test_no_forwarding_with_the_replication_key(account, unchanged):
    """ssh -L to the standby's agent port, and the same as stdio forwarding (-W)."""
    result = as_account(account, options=f"-W {STANDBY}:8300")
    assert result.returncode != 0 and "administratively prohibited" in result.stderr
    local = from_primary(f"(timeout 4 {SSH} -N -L 127.0.0.1:18399:{STANDBY}:8300 {account}@{STANDBY} "
                         "</dev/null >/dev/null 2>&1 &); sleep 1.5; curl -s -m 2 http://127.0.0.1:18399/health; "
                         "echo \" curl=$?\"")
    assert '"ok"' not in local.stdout and "curl=0" not in local.stdout


# --- rsync tricks (the file-sync account) ---------------------------------------------------------------

@pytest.mark.parametrize("destination", ["/etc/", "/tmp/", "../../etc/", "/files/../../../tmp/", "/files/",
                                         "files/attack/", "/litestream/epoch-1/", "/.ssh/", "~/.ssh/",
                                         f"{ROOT}/files/attack/"])
def test_rsync_outside_the_files_folder_is_refused(destination, unchanged):
    result = rsync(f"-rlpt /tmp/attack/ wirebot-files@{STANDBY}:{shlex.quote(destination)}")
    assert result.returncode != 0 and "wirebot-replica-rsync: refused" in result.stderr, destination


@pytest.mark.parametrize("option", ["-M--log-file=/var/tmp/x", "-b -M--backup-dir=/var/tmp/y", "-M--temp-dir=/tmp",
                                    "-M--files-from=/etc/shadow", "-H", "-D", "-R", "-z", "-K",
                                    "--rsync-path='sh -c \"id >/tmp/pwned\"; rsync'"])
def test_client_chosen_options_are_refused(option, unchanged):
    result = rsync(f"-rlpt {option} /tmp/attack/ wirebot-files@{STANDBY}:/files/attack/")
    assert result.returncode != 0 and "wirebot-replica-rsync: refused" in result.stderr, option


def test_a_planted_link_is_munged_and_cannot_be_written_through(unchanged):
    """Issue 9: `files/x -> /tmp` planted by one rsync, then `rsync -rK` writes through it."""
    plant = from_primary("mkdir -p /tmp/attack/plant && ln -sfn /tmp /tmp/attack/plant/x && "
                         f"rsync -e {shlex.quote(SSH)} -rlpt /tmp/attack/plant/ wirebot-files@{STANDBY}:/files/attack/")
    assert plant.returncode == 0, plant.stderr
    assert ssh("standby", f"readlink {ROOT}/files/attack/x").stdout.strip() == "/rsyncd-munged//tmp"
    from_primary("mkdir -p /tmp/attack/payload/x && echo pwned > /tmp/attack/payload/x/owned")
    second = rsync(f"-rK /tmp/attack/payload/ wirebot-files@{STANDBY}:/files/attack/")
    assert second.returncode != 0 and "is not allowed" in second.stderr
    third = rsync(f"-rlpt /tmp/attack/payload/x/ wirebot-files@{STANDBY}:/files/attack/x/")
    assert third.returncode != 0 and "is a symlink: refusing to write through it" in third.stderr
    fourth = rsync(f"-rlpt /tmp/attack/payload/ wirebot-files@{STANDBY}:/files/attack/")  # replaces the link
    assert fourth.returncode == 0 and ssh("standby", "test ! -e /tmp/owned", check=False).returncode == 0


def test_the_accounts_cannot_reach_their_own_keys(unchanged):
    from_primary("mkdir -p /tmp/attack/ssh && cp /root/.ssh/wirebot-replication.pub /tmp/attack/ssh/authorized_keys")
    for destination in ("/.ssh/", "/files/../.ssh/", f"{KEYS}/", "/etc/ssh/wirebot-authorized-keys/"):
        result = rsync(f"-rlpt /tmp/attack/ssh/ wirebot-files@{STANDBY}:{destination}")
        assert result.returncode != 0, destination
    wrote = sftp("mkdir /.ssh", "put /tmp/attack/ssh/authorized_keys /.ssh/authorized_keys")
    assert wrote.returncode != 0
    assert ssh("standby", f"test ! -e {ROOT}/.ssh", check=False).returncode == 0


# --- SFTP tricks (Litestream's account) ----------------------------------------------------------------

@pytest.mark.parametrize("command", ["get /etc/passwd /tmp/attack/passwd", "get ../../../etc/passwd /tmp/attack/p",
                                     "put /tmp/attack/f /tmp/sftp-wrote", "put /tmp/attack/f /../../tmp/sftp-wrote",
                                     "put /tmp/attack/f /files/attack-sftp", "ls /files",
                                     "symlink /etc /litestream/evil", "ln /litestream /litestream/hard",
                                     "cd /proc", "get /files/data/wirebot/bin/x /tmp/attack/x"])
def test_sftp_stays_in_its_chroot_and_makes_no_links(command, unchanged):
    result = sftp(command)
    assert result.returncode != 0, (command, result.stdout, result.stderr)
    assert from_primary("test ! -e /tmp/attack/passwd && test ! -e /tmp/attack/p").returncode == 0
    assert ssh("standby", f"test ! -L {ROOT}/litestream/evil && test ! -e {ROOT}/files/attack-sftp",
               check=False).returncode == 0


def test_sftp_sees_only_the_replica_tree_and_writes_only_litestream(unchanged):
    listing = sftp("ls -1 /")
    assert listing.returncode == 0
    assert sorted(line.strip() for line in listing.stdout.splitlines() if not line.startswith("sftp>")) == \
        ["/files", "/litestream"]
    assert sftp("put /tmp/attack/f /litestream/probe").returncode == 0
    info = ssh("standby", f"stat -c '%U %a' {ROOT}/litestream/probe").stdout.split()
    assert info == ["wirebot-repl", "640"]
    assert sftp("rm /litestream/probe").returncode == 0


# --- what the design needs still works ------------------------------------------------------------------

def test_file_sync_through_the_key_lands_in_the_replica(unchanged):
    name = f"probe-{uuid.uuid4().hex[:8]}"
    ssh("primary", f"echo {name} > /home/wirebot/clawd/{name}.md && ln -sfn {name}.md /home/wirebot/clawd/{name}.ln")
    replica = f"{ROOT}/files/home/wirebot/clawd"
    wait_for(lambda: ssh("standby", f"test -f {replica}/{name}.md", check=False).returncode == 0, timeout=30,
             what="the file in the standby's replica")
    assert ssh("standby", f"stat -c %U {replica}/{name}.md").stdout.strip() == "wirebot-files"
    assert ssh("standby", f"readlink {replica}/{name}.ln").stdout.strip() == f"/rsyncd-munged/{name}.md"
    ssh("primary", f"rm -f /home/wirebot/clawd/{name}.md /home/wirebot/clawd/{name}.ln")


def test_litestream_streams_into_its_chroot():
    config = ssh("primary", "grep -E '^ +path: /litestream/epoch-' /etc/litestream.yml").stdout
    assert "path: /litestream/epoch-1/scoreboard/events.db" in config
    assert ssh("standby", f"find {ROOT}/litestream/epoch-1/scoreboard/events.db -name '*.ltx' | head -1").stdout


@pytest.mark.parametrize("role", ["primary", "standby"])
def test_sshd_takes_keys_only_and_forwards_nothing(role):
    effective = ssh(role, "sshd -T -C user=root,host=x,addr=203.0.113.9").stdout.splitlines()
    for line in ("passwordauthentication no", "kbdinteractiveauthentication no", "permitrootlogin without-password",
                 "allowtcpforwarding no", "allowagentforwarding no", "allowstreamlocalforwarding no",
                 "x11forwarding no", "permittunnel no", "gatewayports no", "disableforwarding yes",
                 "permituserenvironment no"):
        assert line in effective, line
    assert ssh(role, "sshd -t").returncode == 0


def test_root_logs_in_by_key_but_forwards_nothing():
    """The lab (like the operator and the deploy) logs in as root with a key: still works; -W does not."""
    assert ssh("standby", "id -u").stdout.strip() == "0"
    result = ssh("primary", f"ssh -o BatchMode=yes -o ConnectTimeout=5 -o StrictHostKeyChecking=no "
                            "-o UserKnownHostsFile=/dev/null "
                            f"-o PasswordAuthentication=yes -o PubkeyAuthentication=no root@{STANDBY} true",
                 check=False)
    assert result.returncode != 0 and "Permission denied (publickey)" in result.stderr


def test_the_fence_key_still_works():
    result = ssh("standby", "ssh -i /root/.ssh/wirebot-fence -o BatchMode=yes -o ConnectTimeout=5 "
                            "-o UserKnownHostsFile=/etc/wirebot/primary_known_hosts "
                            f"root@{settings.address('primary')} status")
    assert json.loads(result.stdout)["fenced"] is False


# --- a link planted before an activation ---------------------------------------------------------------

def test_a_link_planted_through_the_key_refuses_the_activation(unchanged):
    """Issue 9 item 4: the workspace in the replica replaced by a link to /root/.ssh (through the key, so
    munged), then an activation: refused before anything is stopped or copied, with an alert."""
    epoch = standby_status()["epoch"]
    plant = from_primary("mkdir -p /tmp/attack/home && ln -sfn /root/.ssh /tmp/attack/home/clawd && "
                         f"rsync -e {shlex.quote(SSH)} -rlpt --delete /tmp/attack/home/ "
                         f"wirebot-files@{STANDBY}:/files/home/wirebot/")
    assert plant.returncode == 0, plant.stderr
    since = time.time()
    config = "/etc/wirebot/standby.yml"
    try:
        ssh("standby", f"cd /opt/wirebot/agents && python3 -m wirebot.ctl --config {config} activate --force "
                       "--reason 'replica attack test' --wait 0")
        refused = wait_for(lambda: (s := standby_status()) and "replica tree refused" in str(
            (s.get("activation") or {}).get("error")) and s, timeout=30, what="the activation's refusal")
        assert refused["state"] == "ACTIVATING"
        assert f"{ROOT}/files/home/wirebot/clawd is a symlink" in refused["activation"]["error"]
        alerts = wait_for(lambda: [h for h in webhooks(since) if "replica-refused" in json.dumps(h)], timeout=15,
                          what="the replica-refused alert")
        assert "clawd is a symlink" in json.dumps(alerts[0])
        units = ssh("standby", "systemctl is-active openclaw-gateway wirebot-scoreboard cloudflared-wirebot",
                    check=False).stdout.split()
        assert units == ["inactive"] * 3
        assert ssh("standby", "test ! -e /home/wirebot/clawd/authorized_keys && "
                              "test ! -e /home/wirebot/clawd/wirebot-fence", check=False).returncode == 0
    finally:
        ssh("standby", f"cd /opt/wirebot/agents && python3 -m wirebot.ctl --config {config} deactivate --epoch {epoch}",
            check=False)
        ssh("standby", f"rm -f {ROOT}/files/home/wirebot/clawd", check=False)
        ssh("primary", "touch /home/wirebot/clawd/.nudge && sleep 0.2 && rm -f /home/wirebot/clawd/.nudge",
            check=False)  # a change: file sync brings the workspace replica back within seconds
    wait_for(lambda: (s := standby_status()) and s["state"] == "STANDBY", timeout=30, what="STANDBY again")
    wait_for(lambda: ssh("standby", f"test -d {ROOT}/files/home/wirebot/clawd", check=False).returncode == 0,
             timeout=90, what="file sync restoring the workspace replica")

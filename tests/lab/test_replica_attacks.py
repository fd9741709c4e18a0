"""The replication key as an attacker holding it would use it (issue 9, items 2-5 and the sshd drop-in):
from the primary, with the real key, every trick against the standby's two replication accounts is
refused and leaves nothing outside the replica tree; a link planted through the key before an
activation makes the activation refuse, with an alert, before anything changes; sshd takes keys only
and forwards nothing on both hosts, and root's key login and the fence key still work. Litestream and
file sync through the same key keep working (the positive controls below; the failover and recovery
modules prove them end to end).

The tricks run in batches (one SSH session to the primary runs many attempts) to keep this module fast.
"""

import json
import shlex
import time
import uuid

import pytest

from lab import settings
from lab.agents import standby_status
from lab.client import webhooks
from lab.machines import ssh
from tasks.core import ops
from tasks.core.wait import wait_for

PRIMARY, STANDBY = settings.address("primary"), settings.address("standby")
ROOT = "/var/lib/wirebot-replica"
KEYS = "/etc/ssh/wirebot-authorized-keys"
# One connection per account, many sessions over it (ControlMaster): sshd still runs the forced command
# for every session; only the key exchange is saved.
OPTIONS_ = ("-i /root/.ssh/wirebot-replication -o BatchMode=yes -o ConnectTimeout=5 "
            "-o UserKnownHostsFile=/etc/wirebot/standby_known_hosts -o ControlMaster=auto "
            "-o ControlPath=/tmp/attack-mux-%r -o ControlPersist=20")
SSH = f"ssh {OPTIONS_}"
SSH_DIRECT = SSH.split(" -o ControlMaster")[0]  # a connection of its own (forwarding is per connection)
SFTP = f"sftp {OPTIONS_} -b - wirebot-repl@{STANDBY}"
# Anything the two accounts could have made or changed outside their tree would be theirs.
OUTSIDE = (f"find / -xdev \\( -path /proc -o -path /sys -o -path {ROOT} \\) -prune -o "
           "\\( -user wirebot-repl -o -user wirebot-files \\) -print")
GUARDED = f"{KEYS}/* /root/.ssh/authorized_keys /etc/passwd /etc/shadow /etc/ssh/sshd_config.d/*"
TARGETS = ["/var/tmp/x", "/var/tmp/y", "/tmp/pwned", "/tmp/owned", "/tmp/sftp-wrote"]
BATCH = ("import json, subprocess, sys\n"
         "out = [subprocess.run(c, shell=True, capture_output=True, text=True, stdin=subprocess.DEVNULL)"
         " for c in json.loads(sys.argv[1])]\n"
         "print(json.dumps([[r.returncode, r.stdout, r.stderr] for r in out]))")


def batch(commands, timeout=120):
    """Run shell commands one after the other on the primary in one SSH session: [(code, out, err)]."""
    result = ssh("primary", f"python3 -c {shlex.quote(BATCH)} {shlex.quote(json.dumps(commands))}",
                 timeout=timeout)
    return [tuple(item) for item in json.loads(result.stdout)]


def as_account(account, command="", options=""):
    """The shell command that runs `command` over SSH as `account` on the standby with the key."""
    remote = f" {shlex.quote(command)}" if command else ""
    return f"{SSH} {options} {account}@{STANDBY}{remote} </dev/null"


def rsync(args):
    return f"rsync -e {shlex.quote(SSH)} {args}"


def sftp(*commands):
    return f"printf '%s\\n' {' '.join(shlex.quote(c) for c in commands)} | {SFTP}"


def snapshot():
    """What must never change on the standby: (files the accounts own outside the tree, the guarded
    files' digests, which of the tricks' targets exist)."""
    out = ssh("standby", f"{OUTSIDE}; echo ==; sha256sum {GUARDED}; echo ==; ls -d {' '.join(TARGETS)} "
                         "2>/dev/null; true").stdout
    theirs, digests, present = out.split("==\n")
    return theirs.split(), digests, present.split()


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
    """The test's tricks changed nothing outside the replica tree."""
    yield
    assert snapshot() == before


# --- the tree and the accounts ------------------------------------------------------------------------

def test_the_replica_tree_is_roots_and_each_half_belongs_to_one_account():
    expected = {ROOT: "root 755", f"{ROOT}/litestream": "wirebot-repl 750", f"{ROOT}/files": "wirebot-files 750",
                KEYS: "root 755", f"{KEYS}/wirebot-repl": "root 644", f"{KEYS}/wirebot-files": "root 644"}
    out = ssh("standby", f"stat -c '%n %U %a' {' '.join(expected)}; test ! -e {ROOT}/.ssh && echo no-ssh; "
                         f"cat {KEYS}/wirebot-repl {KEYS}/wirebot-files").stdout.splitlines()
    assert out[:len(expected)] == [f"{path} {owner}" for path, owner in expected.items()]
    assert out[len(expected)] == "no-ssh"
    assert len(out) == len(expected) + 3
    for line in out[len(expected) + 1:]:
        assert line.startswith(f'restrict,from="{PRIMARY}",command="'), line


COMMANDS = ["", "id", "/bin/sh -c id", "sh", "bash -i", "internal-sftp", "rsync --server --sender -r . /files/",
            "rsync --server -r . /etc/cron.d/", "scp -t /tmp"]


def test_no_shell_and_no_other_command(unchanged):
    results = batch([as_account("wirebot-files", command) for command in COMMANDS]
                    + [as_account("wirebot-repl", command or "id") for command in COMMANDS]
                    + [as_account("wirebot-files", "id", options="-tt")])
    for command, (code, out, err) in zip(COMMANDS, results):
        assert code != 0 and "wirebot-replica-rsync: refused" in err and "uid=" not in out, command
    for command, (_code, out, _err) in zip(COMMANDS, results[len(COMMANDS):]):
        assert "uid=" not in out, command  # internal-sftp runs, whatever was asked
    _code, out, err = results[-1]
    assert "PTY allocation request failed" in err and "uid=" not in out


def test_no_forwarding_with_the_replication_key(unchanged):
    """ssh -W (stdio forwarding) and ssh -L to the standby's agent port, with both accounts."""
    commands = []
    for number, account in enumerate(("wirebot-repl", "wirebot-files")):
        commands.append(f"{SSH_DIRECT} -W {STANDBY}:8300 {account}@{STANDBY} </dev/null")
        port = 18390 + number
        commands.append(f"(timeout 4 {SSH_DIRECT} -N -L 127.0.0.1:{port}:{STANDBY}:8300 {account}@{STANDBY} "
                        f"</dev/null >/dev/null 2>&1 &); sleep 1.5; curl -s -m 2 http://127.0.0.1:{port}/health; "
                        "echo \" curl=$?\"")
    results = batch(commands)
    for code, _out, err in results[0::2]:
        assert code != 0 and "administratively prohibited" in err, err
    for _code, out, _err in results[1::2]:
        assert '"ok"' not in out and "curl=0" not in out, out


# --- rsync tricks (the file-sync account) ---------------------------------------------------------------

DESTINATIONS = ["/etc/", "/tmp/", "../../etc/", "/files/../../../tmp/", "/files/", "files/attack/",
                "/litestream/epoch-1/", "/.ssh/", "~/.ssh/", f"{ROOT}/files/attack/", "/files/./attack/"]
OPTIONS = ["-M--log-file=/var/tmp/x", "-b -M--backup-dir=/var/tmp/y", "-M--temp-dir=/tmp", "-M--files-from=/etc/shadow",
           "-H", "-D", "-R", "-z", "-K", "-M--sender", "--rsync-path='sh -c \"id >/tmp/pwned\"; rsync'",
           "--rsync-path='id >/tmp/pwned; rsync'"]


def test_rsync_outside_the_files_folder_or_with_other_options_is_refused(unchanged):
    results = batch([rsync(f"-rlpt /tmp/attack/ wirebot-files@{STANDBY}:{shlex.quote(d)}") for d in DESTINATIONS]
                    + [rsync(f"-rlpt {o} /tmp/attack/ wirebot-files@{STANDBY}:/files/attack/") for o in OPTIONS])
    for what, (code, _out, err) in zip(DESTINATIONS + OPTIONS, results):
        assert code != 0 and "wirebot-replica-rsync: refused" in err, (what, err)
    assert ssh("standby", f"test ! -e {ROOT}/files/attack", check=False).returncode == 0


def test_a_planted_link_is_munged_and_cannot_be_written_through(unchanged):
    """Issue 9: `files/x -> /tmp` planted by one rsync, then `rsync -rK` writes through it."""
    plant, second, third = batch([
        "mkdir -p /tmp/attack/plant /tmp/attack/payload/x && ln -sfn /tmp /tmp/attack/plant/x && "
        "echo pwned > /tmp/attack/payload/x/owned && "
        + rsync(f"-rlpt /tmp/attack/plant/ wirebot-files@{STANDBY}:/files/attack/"),
        rsync(f"-rK /tmp/attack/payload/ wirebot-files@{STANDBY}:/files/attack/"),
        rsync(f"-rlpt /tmp/attack/payload/x/ wirebot-files@{STANDBY}:/files/attack/x/"),
    ])
    assert plant[0] == 0, plant[2]
    assert second[0] != 0 and "is not allowed" in second[2]
    assert third[0] != 0 and "is a symlink: refusing to write through it" in third[2]
    assert ssh("standby", f"readlink {ROOT}/files/attack/x").stdout.strip() == "/rsyncd-munged//tmp"


def test_the_accounts_cannot_reach_their_own_keys(unchanged):
    prepare = "mkdir -p /tmp/attack/ssh && cp /root/.ssh/wirebot-replication.pub /tmp/attack/ssh/authorized_keys"
    destinations = ["/.ssh/", "/files/../.ssh/", f"{KEYS}/", "/files/../../../../etc/ssh/wirebot-authorized-keys/"]
    results = batch([prepare] + [rsync(f"-rlpt /tmp/attack/ssh/ wirebot-files@{STANDBY}:{d}") for d in destinations]
                    + [sftp("mkdir /.ssh"), sftp("put /tmp/attack/ssh/authorized_keys /.ssh/authorized_keys"),
                       sftp(f"put /tmp/attack/ssh/authorized_keys {KEYS}/wirebot-repl")])
    assert results[0][0] == 0
    for code, _out, err in results[1:]:
        assert code != 0, err
    assert ssh("standby", f"test ! -e {ROOT}/.ssh", check=False).returncode == 0


# --- SFTP tricks (Litestream's account) ----------------------------------------------------------------

SFTP_TRICKS = ["get /etc/passwd /tmp/attack/passwd", "get ../../../etc/passwd /tmp/attack/p",
               "put /tmp/attack/f /tmp/sftp-wrote", "put /tmp/attack/f /../../tmp/sftp-wrote",
               "put /tmp/attack/f /files/attack-sftp", "ls /files", "symlink /etc /litestream/evil",
               "ln /litestream/epoch-1 /litestream/hard", "cd /proc", "get /files/data/wirebot/bin/x /tmp/attack/x"]


def test_sftp_stays_in_its_chroot_and_makes_no_links(unchanged):
    results = batch([sftp(command) for command in SFTP_TRICKS]
                    + ["test ! -e /tmp/attack/passwd && test ! -e /tmp/attack/p"])
    for command, (code, out, err) in zip(SFTP_TRICKS, results):
        assert code != 0, (command, out, err)
    assert results[-1][0] == 0
    assert ssh("standby", f"test ! -L {ROOT}/litestream/evil && test ! -e {ROOT}/litestream/hard && "
                          f"test ! -e {ROOT}/files/attack-sftp", check=False).returncode == 0


def test_sftp_sees_only_the_replica_tree_and_writes_only_litestream(unchanged):
    listing, put = batch([sftp("ls -1 /"), sftp("put /tmp/attack/f /litestream/probe")])
    assert listing[0] == 0 and put[0] == 0
    assert sorted(line.strip() for line in listing[1].splitlines() if not line.startswith("sftp>")) == \
        ["/files", "/litestream"]
    info = ssh("standby", f"stat -c '%U %a' {ROOT}/litestream/probe; rm -f {ROOT}/litestream/probe").stdout.split()
    assert info == ["wirebot-repl", "640"]


# --- what the design needs still works ------------------------------------------------------------------

def test_file_sync_and_litestream_through_the_key_land_in_the_replica(unchanged):
    name = f"probe-{uuid.uuid4().hex[:8]}"
    ssh("primary", f"echo {name} > /home/wirebot/clawd/{name}.md && ln -sfn {name}.md /home/wirebot/clawd/{name}.ln")
    replica = f"{ROOT}/files/home/wirebot/clawd"
    wait_for(lambda: ssh("standby", f"test -L {replica}/{name}.ln", check=False).returncode == 0, timeout=30,
             what="the file and its link in the standby's replica")
    out = ssh("standby", f"stat -c %U {replica}/{name}.md; readlink {replica}/{name}.ln; "
                         f"find {ROOT}/litestream/epoch-1/scoreboard/events.db -name '*.ltx' | head -1").stdout.split()
    assert out[:2] == ["wirebot-files", f"/rsyncd-munged/{name}.md"] and out[2].endswith(".ltx")
    assert "path: /litestream/epoch-1/scoreboard/events.db" in ssh("primary", "cat /etc/litestream.yml").stdout
    ssh("primary", f"rm -f /home/wirebot/clawd/{name}.md /home/wirebot/clawd/{name}.ln")


@pytest.mark.parametrize("role", ["primary", "standby"])
def test_sshd_takes_keys_only_and_forwards_nothing(role):
    effective = ssh(role, "sshd -t && sshd -T -C user=root,host=x,addr=203.0.113.9").stdout.splitlines()
    for line in ("passwordauthentication no", "kbdinteractiveauthentication no", "permitrootlogin without-password",
                 "allowtcpforwarding no", "allowagentforwarding no", "allowstreamlocalforwarding no",
                 "x11forwarding no", "permittunnel no", "gatewayports no", "disableforwarding yes",
                 "permituserenvironment no"):
        assert line in effective, line


def test_a_dropin_sshd_refuses_is_never_put_in_place():
    """The deploy's install step with a drop-in the real sshd refuses: nothing changes, sshd keeps going."""
    dropin = "/etc/ssh/sshd_config.d/10-wirebot.conf"
    script = ops._sshd_install_script(f"{dropin}.wirebot-new", dropin)
    before = ssh("standby", f"sha256sum {dropin}").stdout
    result = ssh("standby", f"printf 'NoSuchOption yes\\n' > {dropin}.wirebot-new && {script}", check=False)
    assert result.returncode == 1 and f"sshd -t refused {dropin}" in result.stderr, result.stderr
    assert "NoSuchOption" in result.stderr
    assert ssh("standby", f"sha256sum {dropin}; test ! -e {dropin}.wirebot-new && sshd -t && "
                          "systemctl is-active ssh").stdout == before + "active\n"


def test_root_logs_in_by_key_only_and_the_fence_key_still_works():
    """The lab (like the operator and the deploy) logs in as root with a key; a password is not asked;
    the standby's fence key still reaches its forced command on the primary (status: read-only)."""
    password, fence = batch([
        "ssh -o BatchMode=yes -o ConnectTimeout=5 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
        f"-o PasswordAuthentication=yes -o PubkeyAuthentication=no root@{STANDBY} true",
        f"{SSH} -W {STANDBY}:22 root@{STANDBY}",
    ])
    assert password[0] != 0 and "Permission denied (publickey)" in password[2]
    assert fence[0] != 0  # the replication key is no root key
    result = ssh("standby", "ssh -i /root/.ssh/wirebot-fence -o BatchMode=yes -o ConnectTimeout=5 "
                            f"-o UserKnownHostsFile=/etc/wirebot/primary_known_hosts root@{PRIMARY} status")
    assert json.loads(result.stdout)["fenced"] is False


def test_secrets_reach_both_hosts_by_the_deploy_and_never_the_replica_tree():
    names = ["agent-hmac.key", "discord-webhook.url", "cloudflare-api-token", "gateway.env"]
    for role in ("primary", "standby"):
        listing = ssh(role, "stat -c '%n %U %a' " + " ".join(f"/run/wirebot/{n}" for n in names)).stdout
        assert listing.split("\n")[:-1] == [f"/run/wirebot/{n} root 600" for n in names], role
    synced = ssh("primary", "python3 -c 'import json, yaml; print(json.dumps(yaml.safe_load("
                            "open(\"/etc/wirebot/replicator.yml\"))[\"file_sync\"][\"paths\"]))'").stdout
    assert json.loads(synced) and not [path for path in json.loads(synced) if path.startswith("/run")]
    leaked = ssh("standby", f"test ! -e {ROOT}/files/run && for f in /run/wirebot/*; do "
                            f"grep -rlF -f \"$f\" {ROOT} || true; done", check=False)
    assert leaked.returncode == 0 and leaked.stdout == ""


# --- a link planted before an activation ---------------------------------------------------------------

def test_a_link_planted_through_the_key_refuses_the_activation(unchanged):
    """Issue 9 item 4: the workspace in the replica replaced by a link to /root/.ssh (through the key, so
    munged), then an activation: refused before anything is stopped or copied, with an alert."""
    epoch = standby_status()["epoch"]
    plant = batch(["mkdir -p /tmp/attack/home && ln -sfn /root/.ssh /tmp/attack/home/clawd && "
                   + rsync(f"-rlpt --delete /tmp/attack/home/ wirebot-files@{STANDBY}:/files/home/wirebot/")])[0]
    assert plant[0] == 0, plant[2]
    since = time.time()
    ctl = "cd /opt/wirebot/agents && python3 -m wirebot.hosttools.ctl --config /etc/wirebot/standby.yml"
    try:
        ssh("standby", f"{ctl} activate --force --reason 'replica attack test' --wait 0")
        refused = wait_for(lambda: (s := standby_status()) and "replica tree refused" in str(
            (s.get("activation") or {}).get("error")) and s, timeout=30, what="the activation's refusal")
        assert refused["state"] == "ACTIVATING"
        assert f"{ROOT}/files/home/wirebot/clawd is a symlink" in refused["activation"]["error"]
        alerts = wait_for(lambda: [h for h in webhooks(since) if "replica-refused" in json.dumps(h)], timeout=15,
                          what="the replica-refused alert")
        assert "clawd is a symlink" in json.dumps(alerts[0])
        out = ssh("standby", "systemctl is-active openclaw-gateway wirebot-scoreboard cloudflared-wirebot; "
                             "ls -A /home/wirebot/clawd", check=False).stdout.split()
        assert out[:3] == ["inactive"] * 3 and not {"authorized_keys", "wirebot-fence"} & set(out[3:])
    finally:
        ssh("standby", f"{ctl} deactivate --epoch {epoch}; rm -f {ROOT}/files/home/wirebot/clawd", check=False)
        ssh("primary", "touch /home/wirebot/clawd/.nudge && sleep 0.2 && rm -f /home/wirebot/clawd/.nudge",
            check=False)  # a change: file sync brings the workspace replica back within seconds
    wait_for(lambda: (s := standby_status()) and s["state"] == "STANDBY", timeout=30, what="STANDBY again")
    wait_for(lambda: ssh("standby", f"test -d {ROOT}/files/home/wirebot/clawd", check=False).returncode == 0,
             timeout=90, what="file sync restoring the workspace replica")

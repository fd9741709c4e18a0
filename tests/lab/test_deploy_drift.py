"""A deploy that reads each host once (tasks/core/hoststate.py) still finds and repairs every kind of
drift, reports as changed exactly the operations that repair something, and a second run changes
nothing (both `--dry` and `-y`)."""

import re

from lab import settings
from lab.commands import changes_in_dry_run, pyinfra
from lab.machines import ssh

SECRET = "/etc/wirebot/secrets/agent-hmac.key"
RUN_SECRET = "/run/wirebot/agent-hmac.key"
TMPFILES = "/etc/tmpfiles.d/wirebot.conf"
AGENT_CODE = "/opt/wirebot/agents/wirebot/__init__.py"
RSYNC = "/usr/local/libexec/wirebot-replica-rsync"
OLD_SHELL = "/usr/local/libexec/wirebot-replica-shell"

DRIFT = {  # host -> shell commands that each break one guarantee
    "primary": [
        f"echo '# drifted' >> {TMPFILES}",  # content
        f"chmod 644 {SECRET}",  # a secret's mode
        "chown nobody /data/wirebot/discovery",  # a directory's owner
        f"echo '# drifted' >> {AGENT_CODE}",  # the agents' code
        "systemctl stop wirebot-scoreboard",  # a unit that must run
        "systemctl disable -q wirebot-firewall",  # a unit that must be enabled
    ],
    "standby": [
        f"rm -f {RSYNC}",  # a missing file
        f"touch {OLD_SHELL}",  # a file that must not exist
        "userdel -f wirebot-files",  # a removed account (its files then belong to no user)
        "usermod --shell /bin/bash wirebot-repl",  # an account's attribute
        f"chown root:wirebot {SECRET}",  # a secret's group
        f"echo drifted > {RUN_SECRET}",  # a secret's content
    ],
}
EXPECTED = {  # operation name -> hosts whose drift it repairs (everything else: no change)
    "Base system | Ensure /run/wirebot and its secrets are recreated at boot (tmpfiles.d).": ["primary"],
    "Base system | Ensure secret agent-hmac.key is persisted (0600).": ["primary", "standby"],
    "Base system | Ensure secret agent-hmac.key is in /run/wirebot (0600).": ["standby"],
    "Base system | Ensure the 17 directories of the seed's tree exist (owners, modes).": ["primary"],
    "Base system | Ensure the agents' code is installed.": ["primary"],
    "Scoreboard | Ensure wirebot-scoreboard is running/stopped here.": ["primary"],
    "Host firewall | Ensure wirebot-firewall is enabled and applied.": ["primary"],
    "Trust between primary and standby | Ensure the file-sync account's forced command is installed.": ["standby"],
    "Trust between primary and standby | Ensure the old replica forced command is gone.": ["standby"],
    "Trust between primary and standby | Ensure wirebot-files exists (file sync's rsync; its key's only use).":
        ["standby"],
    "Trust between primary and standby | Ensure wirebot-repl exists (Litestream's SFTP; its key's only use).":
        ["standby"],
    "Trust between primary and standby | Ensure /var/lib/wirebot-replica is root's (0755: the SFTP chroot), each "
    "half its account's (0750).": ["standby"],  # files/ belonged to the removed account
    "Trust between primary and standby | Ensure everything below /var/lib/wirebot-replica/files is "
    "wirebot-files's.": ["standby"],
}


def _role(host: str) -> str:
    return {settings.address(role): role for role in DRIFT}[host]


def _changed_ops() -> dict:
    """{operation: roles} a dry run would change; an operation named per role (running here, stopped
    there) goes by one name, whichever host named it first."""
    return {re.sub(r"is (running|stopped) here\.", "is running/stopped here.", name): sorted(_role(h) for h in hosts)
            for name, hosts in changes_in_dry_run()}


def test_drift_of_every_kind_is_repaired_and_only_what_drifted_is_changed():
    for host, commands in DRIFT.items():
        ssh(host, " && ".join(commands))

    assert _changed_ops() == EXPECTED  # --dry: what drifted, and nothing else

    result = pyinfra("lab/inventory.py", "deploy.py")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    stat = "stat -c '%U:%G %a'"
    for host in DRIFT:
        assert ssh(host, f"{stat} {SECRET}").stdout.split() == ["root:root", "600"]
    assert ssh("standby", f"{stat} {RUN_SECRET}; cmp {SECRET} {RUN_SECRET} && echo same").stdout.split() == [
        "root:root", "600", "same"]
    assert not ssh("standby", "ls -A /run/wirebot /etc/wirebot/secrets | grep wirebot-new", check=False).stdout
    assert ssh("primary", f"grep -c drifted {TMPFILES} {AGENT_CODE}", check=False).stdout.split() == [
        f"{TMPFILES}:0", f"{AGENT_CODE}:0"]
    assert ssh("primary", f"{stat} /data/wirebot/discovery").stdout.split() == ["wirebot:wirebot", "750"]
    assert ssh("primary", "systemctl is-active wirebot-scoreboard; systemctl is-enabled wirebot-firewall",
               check=False).stdout.split() == ["active", "enabled"]
    assert ssh("standby", f"{stat} {RSYNC}; test ! -e {OLD_SHELL} && echo gone").stdout.split() == [
        "root:root", "755", "gone"]
    assert ssh("standby", "getent passwd wirebot-files wirebot-repl | cut -d: -f1,7").stdout.split() == [
        "wirebot-files:/bin/sh", "wirebot-repl:/usr/sbin/nologin"]
    assert ssh("standby", "find /var/lib/wirebot-replica/files -nouser -print -quit").stdout.strip() == ""

    assert changes_in_dry_run() == []  # a second run: nothing to do, --dry
    again = pyinfra("lab/inventory.py", "deploy.py")  # and -y: every operation "No change"
    assert again.returncode == 0, again.stderr[-3000:]
    total = [line for line in (again.stdout + again.stderr).splitlines() if "Grand total" in line][-1]
    operations, success = re.search(r"Grand total\s+(\d+)\s+(\S+)", total).groups()
    assert success == "-", total  # no operation ran a command

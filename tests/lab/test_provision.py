"""deploy.py on the lab (issue: provision the primary and the standby): the target state on both hosts,
replication for real, idempotency and masked secrets (the replication key's limits:
test_replica_attacks.py)."""

import shutil
import time
import uuid

import pytest

from lab import settings
from lab.commands import changes_in_dry_run, pyinfra
from lab.machines import ssh
from tasks.core.wait import wait_for

DIRECTORIES = [  # path, owner, group, mode (both hosts)
    ("/data/wirebot", "wirebot", "wirebot", 0o751),
    ("/data/wirebot/scoreboard", "wirebot-scoreboard", "wirebot-scoreboard", 0o750),
    ("/data/wirebot/scoreboard/tenants", "wirebot-scoreboard", "wirebot-scoreboard", 0o750),
    ("/data/wirebot/discovery", "wirebot", "wirebot", 0o750),
    ("/data/wirebot/users/verious/memory", "wirebot", "wirebot", 0o750),
    ("/data/wirebot/bin", "root", "root", 0o755),
    ("/home/wirebot/clawd", "wirebot", "wirebot", 0o750),
    ("/etc/wirebot", "root", "root", 0o755),
    ("/etc/wirebot/secrets", "root", "root", 0o700),
    ("/var/log/wirebot", "root", "root", 0o750),
    ("/var/lib/wirebot", "root", "root", 0o750),
    ("/run/wirebot", "root", "root", 0o700),
    ("/etc/wirebot/agent-keys", "root", "root", 0o700),
]
SECRETS = ["/run/wirebot/agent-hmac.key", "/etc/wirebot/secrets/agent-hmac.key",
           "/etc/cloudflared/wirebot.yml", f"/root/.cloudflared/{settings.TUNNEL_ID}.json",
           "/etc/wirebot/agent-keys/agent.key", "/etc/wirebot/agent-keys/control.key"]
SERVICES = ["openclaw-gateway", "wirebot-scoreboard", "cloudflared-wirebot"]
LITESTREAM = "/usr/local/bin/litestream"
AS_SCOREBOARD = "runuser -u wirebot-scoreboard --"  # writes into the scoreboard's folder as the scoreboard would


@pytest.mark.parametrize("role", ["primary", "standby"])
@pytest.mark.parametrize("path,owner,group,mode", DIRECTORIES)
def test_directory_tree(role, path, owner, group, mode, request):
    directory = request.getfixturevalue(role).file(path)
    assert directory.is_directory
    assert (directory.user, directory.group, directory.mode) == (owner, group, mode)


@pytest.mark.parametrize("role", ["primary", "standby"])
@pytest.mark.parametrize("path", SECRETS)
def test_secrets_are_root_only(role, path, request):
    secret = request.getfixturevalue(role).file(path)
    assert secret.is_file and (secret.user, secret.group, secret.mode) == ("root", "root", 0o600)


def test_each_host_pins_the_others_agent_certificate_and_keeps_its_own_keys(primary, standby):
    """The agents' channel: each host made its own TLS key and control key (different on each host, never
    in the operator's secrets directory) and pins exactly the other host's certificate."""
    keys = "/etc/wirebot/agent-keys"
    for me, peer in ((primary, standby), (standby, primary)):
        assert me.file(f"{keys}/peer.crt").content_string == peer.file(f"{keys}/agent.crt").content_string
        assert me.file(f"{keys}/agent.crt").content_string != peer.file(f"{keys}/agent.crt").content_string
        text = me.check_output(f"openssl x509 -in {keys}/agent.crt -noout -text")
        assert "CA:FALSE" in text and "TLS Web Client Authentication" in text
        socket = me.file("/run/wirebot-agent/control.sock")
        assert socket.is_socket and (socket.user, socket.mode) == ("root", 0o600)
    assert primary.file(f"{keys}/control.key").content_string != standby.file(f"{keys}/control.key").content_string
    reader = settings.SECRETS_DIR / "prometheus" / "client.crt"  # the metrics reader's: the operator's, public
    assert set(settings.SECRETS_DIR.rglob("*.crt")) == {reader} and not list(settings.SECRETS_DIR.rglob("control.key"))
    for host in (primary, standby):  # the lab's agent_metrics_sources is set: both pin the reader
        pin = host.file(f"{keys}/metrics-reader.crt")
        assert (pin.user, pin.mode, pin.content_string) == ("root", 0o644, reader.read_text())


@pytest.mark.parametrize("role", ["primary", "standby"])
def test_runtime_secrets_come_back_after_a_reboot(role, request):
    assert "C /run/wirebot/agent-hmac.key" in request.getfixturevalue(role).file(
        "/etc/tmpfiles.d/wirebot.conf").content_string


@pytest.mark.parametrize("role", ["primary", "standby"])
def test_litestream_is_the_pinned_binary(role, request):
    host = request.getfixturevalue(role)
    assert host.file(LITESTREAM).mode == 0o755
    assert host.check_output(f"{LITESTREAM} version") == "0.5.17"


def test_primary_serves(primary):
    for name in SERVICES + ["litestream", "wirebot-replicator"]:
        assert primary.service(name).is_running, name
        assert primary.service(name).is_enabled, name
    assert primary.socket("tcp://0.0.0.0:8100").is_listening
    assert primary.socket("tcp://127.0.0.1:18789").is_listening  # the gateway: loopback only
    assert primary.socket(f"tcp://{settings.address('primary')}:8300").is_listening
    assert "RestartSec=5s" in primary.file("/usr/local/lib/systemd/system/litestream.service").content_string


def test_standby_waits_with_everything_installed(standby):
    for name in SERVICES:
        unit = standby.service(name)
        assert unit.exists, name
        assert not unit.is_running and not unit.is_enabled, name
    assert not standby.service("litestream").is_running
    assert standby.service("wirebot-standby").is_running and standby.service("wirebot-standby").is_enabled
    assert standby.socket(f"tcp://{settings.address('standby')}:8300").is_listening


def test_units_are_identical_on_both_hosts(primary, standby):
    for name in SERVICES:
        path = f"/usr/local/lib/systemd/system/{name}.service"
        assert primary.file(path).sha256sum == standby.file(path).sha256sum, name
    gate = "/etc/systemd/system/cloudflared-wirebot.service.d/10-wirebot-gate.conf"
    primary_gate, standby_gate = primary.file(gate).content_string, standby.file(gate).content_string
    # each side's connector has its own start gate: the primary's refuses while fenced or outranked,
    # the standby's allows a start only while its agent activates or serves
    assert "wirebot.hosttools.gate" in primary_gate and "--standby" not in primary_gate
    assert "wirebot.hosttools.gate" in standby_gate and "--standby" in standby_gate


def test_litestream_config_pins_the_standby_host_key_and_carries_the_epoch(primary, standby):
    config = primary.file("/etc/litestream.yml").content_string
    ecdsa = " ".join(standby.file("/etc/ssh/ssh_host_ecdsa_key.pub").content_string.split()[:2])
    assert f'host-key: "{ecdsa}"' in config
    assert "type: sftp" in config and "/litestream/epoch-1/scoreboard/events.db" in config
    assert "dir: /data/wirebot/scoreboard/tenants" in config and "watch: true" in config


def _restored_ids(replica: str, table: str = "events") -> set:
    out = f"/tmp/restore-{uuid.uuid4().hex}.db"
    result = ssh("standby", f"{LITESTREAM} restore -o {out} file://{replica} >/dev/null 2>&1 && "
                            f"sqlite3 {out} 'select id from {table}'; rm -f {out}*", check=False)
    return set(result.stdout.split())


def _replica(path: str) -> str:
    return f"/var/lib/wirebot-replica/litestream/epoch-1/{path}"


def test_a_row_written_on_the_primary_is_restorable_on_the_standby_within_5_s():
    marker = str(uuid.uuid4())
    ssh("primary", f"{AS_SCOREBOARD} sqlite3 /data/wirebot/scoreboard/events.db "
                   f"\"insert into events(id,type,tenant,payload,score_delta,created_at,received_at,received_by) "
                   f"values('{marker}','ship',null,'{{}}',10,'t','t','test')\"")
    written = time.monotonic()
    wait_for(lambda: marker in _restored_ids(_replica("scoreboard/events.db")), timeout=5, interval=0.2,
             what="the row in a restore from the standby's replica")
    print(f"replicated and restored in {time.monotonic() - written:.2f} s")


def test_a_new_tenant_db_is_replicated_without_restarting_anything():
    pid = ssh("primary", "systemctl show -p MainPID --value litestream").stdout.strip()
    tenant = f"t{uuid.uuid4().hex[:8]}"
    ssh("primary", f"{AS_SCOREBOARD} sqlite3 /data/wirebot/scoreboard/tenants/{tenant}.db "
                   "'pragma journal_mode=wal; create table events(id text primary key); "
                   "insert into events values (\"tenant-row\");'")
    wait_for(lambda: "tenant-row" in _restored_ids(_replica(f"scoreboard/tenants/{tenant}.db")), timeout=15,
             what="the new tenant DB in the standby's replica")
    assert ssh("primary", "systemctl show -p MainPID --value litestream").stdout.strip() == pid


def test_a_second_deploy_changes_nothing():
    assert changes_in_dry_run() == []


def test_dry_run_diff_shows_changes_but_masks_secrets(tmp_path):
    secrets = tmp_path / "secrets"
    shutil.copytree(settings.SECRETS_DIR, secrets)
    (secrets / "gateway.env").write_text("OPENCLAW_LAB_MODEL_KEY=changed-secret-value-42\n")
    result = pyinfra("--dry", "--diff", "--data", f"secrets_dir={secrets}", "lab/inventory.py", "deploy.py",
                     confirm=False)
    assert result.returncode == 0, result.stderr[-2000:]
    output = result.stdout + result.stderr
    assert "Will write secret /run/wirebot/gateway.env (content not shown)" in output
    assert "Ensure secret gateway.env is in /run/wirebot (0600)." in output  # listed as a change
    assert "changed-secret-value-42" not in output
    assert "lab-not-a-real-key" not in output


def test_a_malformed_credentials_file_fails_before_any_host_is_touched(tmp_path):
    secrets = tmp_path / "secrets"
    shutil.copytree(settings.SECRETS_DIR, secrets)
    (secrets / "cloudflared" / "credentials.json").write_text('{"AccountTag": "x"}')
    result = pyinfra("--data", f"secrets_dir={secrets}", "lab/inventory.py", "deploy.py")
    assert result.returncode != 0
    assert f"{secrets}/cloudflared/credentials.json: 'TunnelSecret' is required" in result.stdout + result.stderr
    assert "Connecting to hosts" not in result.stdout

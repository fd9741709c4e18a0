"""deploy.py against pyinfra's @fake connector: the production code paths the lab cannot run (AlmaLinux
and dnf, Cloudflare's rpm repository, Node.js and npm's openclaw, the aarch64 Litestream for the CAX11)
are executed against scripted hosts and the commands they would run are checked."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab import secrets as lab_secrets
from lab import settings as lab_settings

ROOT = Path(__file__).resolve().parents[4]
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory):
    """A secrets directory shaped like the operator's (the lab's generator, into a temp dir)."""
    return lab_secrets.ensure_in(tmp_path_factory.mktemp("secrets"))


def run_fake(secrets_dir, *extra):
    env = dict(os.environ, WIREBOT_FAKE_SECRETS=str(secrets_dir))
    return subprocess.run([PYINFRA, "-y", "-vvv", *extra, "tests/unit/tasks/provision/fake/inventory.py", "deploy.py"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def almalinux_run(secrets_dir):
    result = run_fake(secrets_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def commands(log: str, host: str) -> list:
    prefix = f"[@fake/{host}.example] >>> "
    return [line.split(prefix, 1)[1] for line in log.splitlines() if prefix in line]


def installed(dest: str, owner: str, mode: str) -> str:
    """The command ops.managed_file runs after uploading a new `dest` beside it."""
    folder, name = dest.rsplit("/", 1)
    temp = f"{folder}/.{name}.wirebot-new"
    return f"chown {owner} -- {temp} && chmod {mode} -- {temp} && mv -f -- {temp} {dest}"


@pytest.mark.parametrize("host", ["primary", "standby"])
def test_almalinux_packages_come_from_dnf(almalinux_run, host):
    ran = commands(almalinux_run, host)
    assert "dnf install -y rsync sqlite python3 python3-pyyaml openssh-clients curl openssl nftables" in ran
    assert not [command for command in ran if command.startswith("apt-get")]


@pytest.mark.parametrize("host", ["primary", "standby"])
def test_cloudflared_comes_from_cloudflares_rpm_repository_pinned(almalinux_run, host):
    ran = commands(almalinux_run, host)
    assert any("https://pkg.cloudflare.com/cloudflared-ascii.repo" in command for command in ran)
    assert "dnf install -y cloudflared-2025.11.1" in ran


@pytest.mark.parametrize("host", ["primary", "standby"])
def test_openclaw_is_the_pinned_npm_package_on_nodejs_24(almalinux_run, host):
    ran = commands(almalinux_run, host)
    assert "dnf install -y nodejs" in ran
    assert "npm install -g openclaw@2026.9.6" in ran
    assert "Ensure the Node.js 24 rpm repository is configured." in almalinux_run
    # npm 11 skips install scripts: openclaw's own postinstall runs as root right after the install
    lifecycle = [c for c in ran if "postinstall-bundled-plugins.mjs" in c]
    assert lifecycle and "/usr/lib/node_modules/openclaw/.openclaw-lifecycle-pending" in lifecycle[0]
    assert ran.index("npm install -g openclaw@2026.9.6") < ran.index(lifecycle[0])


def test_the_gateway_serves_on_the_primary_once_ready_and_waits_on_the_standby(almalinux_run):
    primary, standby = commands(almalinux_run, "primary"), commands(almalinux_run, "standby")
    assert "systemctl start openclaw-gateway.service" in primary
    assert "systemctl start openclaw-gateway.service" not in standby
    waits = [c for c in primary if "http://127.0.0.1:18789/readyz" in c and "not 200 within" in c]
    assert waits and primary.index("systemctl start openclaw-gateway.service") < primary.index(waits[0])
    assert primary.index(waits[0]) < primary.index("systemctl start cloudflared-wirebot.service")
    assert not [c for c in standby if "/readyz" in c]


def test_only_the_primary_streams_and_only_the_standby_waits(almalinux_run):
    primary, standby = commands(almalinux_run, "primary"), commands(almalinux_run, "standby")
    assert "systemctl start litestream.service" in primary
    assert "systemctl start litestream.service" not in standby
    assert "systemctl start wirebot-replicator.service" in primary
    assert "systemctl start wirebot-standby.service" in standby
    assert "systemctl start cloudflared-wirebot.service" in primary
    assert "systemctl start cloudflared-wirebot.service" not in standby


def test_secrets_never_appear_in_the_output(almalinux_run, secrets_dir):
    for name in ("agent-hmac.key", "cloudflare-api-token", "gateway.env"):
        assert (secrets_dir / name).read_text().strip() not in almalinux_run
    token = (secrets_dir / "gateway-token.env").read_text().strip().split("=", 1)[1]
    assert token not in almalinux_run
    assert lab_settings.TUNNEL_SECRET not in almalinux_run


def test_a_missing_secrets_file_fails_before_connecting(secrets_dir, tmp_path):
    broken = tmp_path / "secrets"
    shutil.copytree(secrets_dir, broken)
    (broken / "agent-hmac.key").unlink()
    result = run_fake(broken)
    assert result.returncode != 0
    assert f"{broken}/agent-hmac.key: missing" in result.stdout + result.stderr
    assert "Connecting to hosts" not in result.stdout


def test_a_malformed_gateway_token_fails_before_connecting(secrets_dir, tmp_path):
    broken = tmp_path / "secrets"
    shutil.copytree(secrets_dir, broken)
    (broken / "gateway-token.env").write_text("short\n")
    result = run_fake(broken)
    assert result.returncode != 0
    assert f"{broken}/gateway-token.env: expected exactly one line OPENCLAW_GATEWAY_TOKEN=<token>" in (
        result.stdout + result.stderr)
    assert "Connecting to hosts" not in result.stdout


def test_almalinux_standby_confines_the_replication_accounts_without_rrsync(almalinux_run):
    """AlmaLinux 9's rsync has no rrsync in PATH: the standby's own forced command does the job there
    exactly as on Debian."""
    ran = commands(almalinux_run, "standby")
    assert ("useradd --system --gid wirebot-repl --home-dir /var/lib/wirebot-replica --no-create-home "
            "--shell /usr/sbin/nologin wirebot-repl") in ran
    assert ("useradd --system --gid wirebot-files --home-dir /var/lib/wirebot-replica --no-create-home "
            "--shell /bin/sh wirebot-files") in ran
    made = " ".join(command for command in ran if command.startswith("install -d"))
    for path, owner, mode in (("/var/lib/wirebot-replica", "root", "755"),
                              ("/var/lib/wirebot-replica/litestream", "wirebot-repl", "750"),
                              ("/var/lib/wirebot-replica/files", "wirebot-files", "750"),
                              ("/etc/ssh/wirebot-authorized-keys", "root", "755")):
        assert f"install -d -m {mode} -o {owner} -g {owner} -- {path}" in made, path
    assert installed("/usr/local/libexec/wirebot-replica-rsync", "root:root", "755") in ran
    assert "Ensure the file-sync account's forced command is installed." in almalinux_run
    assert not [command for command in ran if "rrsync" in command]
    assert not [command for command in commands(almalinux_run, "primary") if "wirebot-authorized-keys" in command]


@pytest.mark.parametrize("host", ["primary", "standby"])
def test_almalinux_sshd_dropin_is_checked_before_it_is_used(almalinux_run, host):
    script = [command for command in commands(almalinux_run, host) if "sshd -t -f" in command]
    assert len(script) == 1
    text = script[0]
    assert text.index("sshd -t -f") < text.index("mv -f /etc/ssh/sshd_config.d/10-wirebot.conf.wirebot-new")
    assert "systemctl try-reload-or-restart \"$unit\"" in text and "unit=sshd.service" in text


@pytest.mark.parametrize("host,peer", [("primary", "standby"), ("standby", "primary")])
def test_each_host_makes_its_own_tls_identity_and_control_key_and_pins_the_peer(almalinux_run, host, peer):
    """The agents' channel: key + self-signed certificate and the control key made on the host (0600,
    umask 077), never uploaded; the peer's certificate written as peer.crt."""
    ran = commands(almalinux_run, host)
    made = [c for c in ran if "openssl req -x509" in c]
    assert len(made) == 1 and "umask 077" in made[0] and "CA:FALSE" in made[0]
    assert f"/CN=wirebot-{host}" in made[0] and "/etc/wirebot/agent-keys/agent.key" in made[0]
    assert f"subjectAltName=DNS:wirebot-{host}" in made[0]  # the name Prometheus checks as server_name
    assert [c for c in ran if "openssl rand -hex 32 > /etc/wirebot/agent-keys/control.key.tmp" in c]
    pin = almalinux_run.split(f"[@fake/{host}.example] >>> install -d -m 700 /etc/wirebot/agent-keys && printf", 1)
    assert len(pin) == 2 and pin[1].split("\n", 1)[0].strip().startswith("'%s' '-----BEGIN CERTIFICATE-----")
    assert "> /etc/wirebot/agent-keys/peer.crt.tmp && chmod 644" in pin[1][:400]


def test_the_metrics_reader_is_pinned_only_where_metrics_sources_are_set(almalinux_run):
    """The fake standby has agent_metrics_sources: the operator's prometheus/client.crt is pinned there
    (root, 0644); the primary has none: nothing is written, the file is only checked to be absent."""
    standby, primary = commands(almalinux_run, "standby"), commands(almalinux_run, "primary")
    assert installed("/etc/wirebot/agent-keys/metrics-reader.crt", "root:root", "644") in standby
    writes = ("rm ", "mv ", "chmod ", "chown ")  # the primary only reads it (stat), finds nothing to remove
    assert not [c for c in primary if "metrics-reader.crt" in c and any(w in c for w in writes)]

"""Two pairs in one inventory (tests/unit/tasks/provision/fake/pairs_inventory.py, pyinfra's @fake connector):
each host is wired to its own pair's peer only, the whole deploy plans all four hosts in one run, and pairs that share
a tunnel are refused before pyinfra connects to anything."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab import secrets as lab_secrets
from lab import settings as lab_settings

ROOT = Path(__file__).resolve().parents[4]
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))
ACME_TUNNEL = "0a1b2c3d-0000-4000-8000-0000000acme1"
ADDRESSES = {"wirebot": {"203.0.113.10", "203.0.113.20"}, "acme": {"198.51.100.10", "198.51.100.20"}}


def make_secrets(folder: Path, tunnel: str = None) -> Path:
    """An operator-shaped secrets directory (lab/secrets.py), with `tunnel` as its tunnel's id."""
    lab_secrets.ensure_in(folder)
    if tunnel:
        for path in (folder / "cloudflared" / "credentials.json", folder / "cloudflared" / "wirebot.yml"):
            path.write_text(path.read_text().replace(lab_settings.TUNNEL_ID, tunnel))
    return folder


@pytest.fixture(scope="module")
def secrets(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    return make_secrets(root / "wirebot"), make_secrets(root / "acme", ACME_TUNNEL)


def run(secrets, deploy, *extra):
    env = dict(os.environ, WIREBOT_FAKE_SECRETS=str(secrets[0]), WIREBOT_FAKE_SECRETS_ACME=str(secrets[1]))
    return subprocess.run([PYINFRA, "-y", *extra, "tests/unit/tasks/provision/fake/pairs_inventory.py", deploy],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)


def test_each_host_is_wired_to_its_own_pair_only(secrets):
    result = run(secrets, "tests/unit/tasks/provision/fake/show_peers.py")
    assert result.returncode == 0, result.stderr[-3000:]
    seen = {row["host"]: row for row in (json.loads(line.split("PEERS ", 1)[1])
                                         for line in result.stdout.splitlines() if line.startswith("PEERS "))}
    assert {host: (row["pair"], row["peer"]) for host, row in seen.items()} == {
        "@fake/primary.example": ("wirebot", "@fake/standby.example"),
        "@fake/standby.example": ("wirebot", "@fake/primary.example"),
        "@fake/acme-primary.example": ("acme", "@fake/acme-standby.example"),
        "@fake/acme-standby.example": ("acme", "@fake/acme-primary.example"),
    }
    for row in seen.values():
        config = json.dumps(row["config"])
        other = "wirebot" if row["pair"] == "acme" else "acme"
        assert not [address for address in ADDRESSES[other] if address in config], (row["host"], config)
        assert all(address in config for address in ADDRESSES[row["pair"]]), (row["host"], config)
    assert ACME_TUNNEL in json.dumps(seen["@fake/acme-standby.example"]["config"])
    assert ACME_TUNNEL not in json.dumps(seen["@fake/standby.example"]["config"])


def test_one_deploy_provisions_every_pair(secrets):
    result = run(secrets, "deploy.py", "-vvv")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = re.sub(r"\] +>>>", "] >>>", result.stdout + result.stderr)
    for host in ("standby", "acme-standby"):  # each standby makes its own fence key
        assert f"[@fake/{host}.example] >>> ssh-keygen -q -t ed25519 -N '' -C wirebot-fence" in log


def test_pairs_sharing_a_tunnel_are_refused_before_connecting(secrets, tmp_path):
    shared = tmp_path / "acme"
    shutil.copytree(secrets[1], shared)
    for path in (shared / "cloudflared" / "credentials.json", shared / "cloudflared" / "wirebot.yml"):
        path.write_text(path.read_text().replace(ACME_TUNNEL, lab_settings.TUNNEL_ID))
    for name in ("agent-hmac.key", "gateway-token.env"):  # only the tunnel is shared
        assert (shared / name).read_text() != (secrets[0] / name).read_text()
    result = run((secrets[0], shared), "deploy.py", "-vvv")
    assert result.returncode != 0
    assert f"pairs 'acme' and 'wirebot' share the tunnel {lab_settings.TUNNEL_ID}" in result.stdout + result.stderr
    assert ">>>" not in result.stdout + result.stderr  # nothing ran on any host


def test_no_peer_lookup_outside_tasks_pairs():
    """Every 'my pair / my peer' question goes through tasks/core/pairs.py: no deploy or playbook takes the
    first host of a role group."""
    found = [f"{path.relative_to(ROOT)}:{n}" for path in sorted((ROOT / "tasks").rglob("*.py"))
             if path.name != "pairs.py"
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if re.search(r"get_group\(|\.groups\)\[0\]|inventory\.groups", line)]
    assert found == []

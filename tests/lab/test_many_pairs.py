"""Two labs as two pairs of one inventory (issue 12, tasks/core/pairs.py), destructive for the second lab only.

Pair A is this run's lab (WIREBOT_LAB_ID), pair B a second lab this module brings up itself and takes down
at the end: WIREBOT_LAB_SECOND_ID, else lab 9 (lab 8 when this run's lab is 9) - lab/labs.py
second_lab_id. lab/inventory.py with WIREBOT_LAB_IDS=A,B makes them the pairs labA and labB, each with
its own edge, tunnel, secrets and keys. One deploy provisions both; a second changes nothing; killing B's
primary activates only B's standby while A's edge sees only A's primary; the recovery and a drill of B
(`--limit labB`) leave A alone; the status shows both pairs; a playbook without --limit is refused.

WIREBOT_LAB_PAIRS=skip (environment) skips the module, with that reason: for a machine that cannot run a
second lab. WIREBOT_LAB_PAIRS=keep leaves the second lab up afterwards (to look at it).
"""

import json
import os
import shlex
import subprocess
import sys
import time

import pytest

from lab import settings
from lab.baseline import ensure_clean_lab
from lab.commands import PYINFRA, ROOT
from lab.labs import lab_settings, pair_name, second_lab_id
from tasks.core.wait import wait_for

MODE = os.environ.get("WIREBOT_LAB_PAIRS", "")
pytestmark = pytest.mark.skipif(MODE == "skip", reason="WIREBOT_LAB_PAIRS=skip: the second lab is not brought up")

A_ID, B_ID = settings.LAB_ID, second_lab_id(settings.LAB_ID)
IDS = f"{A_ID},{B_ID}"
PAIR_A, PAIR_B = pair_name(A_ID), pair_name(B_ID)
SOCKET = "/run/wirebot-agent/control.sock"  # group_data agent_control_socket


class Lab:
    """One lab seen from the control machine: SSH to its hosts, its edge, its standby agent."""

    def __init__(self, lab_id):
        self.id, self.s = lab_id, lab_settings(lab_id)
        self.primary, self.standby = self.s.address("primary"), self.s.address("standby")

    def ssh(self, name, command, check=True, timeout=60):
        result = subprocess.run(["ssh", "-F", str(self.s.SSH_CONFIG), name, command], capture_output=True,
                                text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            pytest.fail(f"lab {self.id} {name}: {command}: {result.stderr[-1000:]}")
        return result

    def cli(self, *args, timeout=600):
        result = subprocess.run([sys.executable, "-m", "lab", *args], cwd=ROOT, capture_output=True, text=True,
                                timeout=timeout, stdin=subprocess.DEVNULL,
                                env={**os.environ, "WIREBOT_LAB_ID": str(self.id)})
        if result.returncode != 0:
            pytest.fail(f"WIREBOT_LAB_ID={self.id} python -m lab {' '.join(args)}: {result.stderr[-2000:]}")
        return result

    def edge(self, path):
        from lab import client

        status, body = client.request(f"{self.s.EDGE_URL}{path}", "GET", None, None, 5)
        assert status == 200, (self.id, path, body)
        return body

    def connectors(self):
        return {c["origin_ip"] for c in self.edge("/lab/connectors")}

    def health(self):
        from lab import client

        return client.request(f"{self.s.EDGE_PUBLIC_URL}/health", "GET", None, {"Host": "wins.wirebot.chat"}, 5)[0]

    def standby_status(self):
        command = f"curl -s -m 5 --unix-socket {SOCKET} http://agent/status"
        result = self.ssh("standby", command, check=False, timeout=30)
        try:
            return json.loads(result.stdout) if result.returncode == 0 else None
        except ValueError:
            return None

    def serving_origins_since(self, since):
        """Every origin the edge connected or routed a request to since `since`."""
        history = {i["origin_ip"] for i in self.edge("/lab/history") if (i["closed_at"] or time.time()) >= since}
        requests = {r["origin_ip"] for r in self.edge(f"/lab/requests?since={since}") if r.get("origin_ip")}
        return history | requests

    def untouched_since(self, since):
        """The pair is as deployed: its standby watches at epoch 1, the edge saw only its primary."""
        status = self.standby_status() or {}
        assert (status.get("state"), status.get("epoch")) == ("STANDBY", 1), status
        assert status.get("last_heartbeat_age_seconds") is not None and status["last_heartbeat_age_seconds"] < 5
        assert self.connectors() == {self.primary}
        assert self.serving_origins_since(since) == {self.primary}
        assert self.edge(f"/lab/overlaps?since={since}") == []
        assert self.health() == 200


def pyinfra(*args, timeout=900):
    """pyinfra over both labs (the inventory's two pairs); the CompletedProcess, with its run time printed."""
    started = time.monotonic()
    result = subprocess.run([PYINFRA, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL, env={**os.environ, "WIREBOT_LAB_IDS": IDS})
    print(f"pyinfra {' '.join(args)}: exit {result.returncode} in {time.monotonic() - started:.1f} s")
    return result


A, B = Lab(A_ID), Lab(B_ID)


@pytest.fixture(scope="module")
def two_pairs():
    """Lab A clean (as deployed), lab B brought up fresh, both deployed by ONE run of the two-pair inventory."""
    started = time.monotonic()
    ensure_clean_lab()
    B.cli("down")  # whatever a previous run left
    B.cli("up")
    since = time.time()
    result = pyinfra("-y", "lab/inventory.py", "deploy.py")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]

    def b_ready():
        status = B.standby_status() or {}
        return (status.get("state") == "STANDBY" and status.get("last_heartbeat") and B.connectors() == {B.primary}
                and B.health() == 200)

    wait_for(b_ready, timeout=120, what=f"heartbeats and the primary's connector in lab {B_ID}")
    print(f"two pairs ready in {time.monotonic() - started:.1f} s")
    yield {"since": since, "deploy": result.stdout + result.stderr}
    if MODE != "keep":
        B.cli("down")


def test_one_deploy_provisions_both_pairs_each_wired_to_its_own(two_pairs):
    for lab in (A, B):
        log = two_pairs["deploy"]
        assert f"[{lab.primary}]" in log and f"[{lab.standby}]" in log  # both pairs in the one run
        standby_config = lab.ssh("standby", "cat /etc/wirebot/standby.yml").stdout
        litestream = lab.ssh("primary", "cat /etc/litestream.yml").stdout
        replicator = lab.ssh("primary", "cat /etc/wirebot/replicator.yml").stdout
        other = B if lab is A else A
        assert f"address: {lab.primary}" in standby_config and other.primary not in standby_config
        assert f'host: "{lab.standby}:22"' in litestream and other.standby not in litestream
        assert lab.standby in replicator and other.standby not in replicator and other.primary not in replicator
        # the channel pins the pair's own peer: the standby's peer.crt is its own primary's certificate
        pinned = lab.ssh("standby", "cat /etc/wirebot/agent-keys/peer.crt").stdout
        assert pinned == lab.ssh("primary", "cat /etc/wirebot/agent-keys/agent.crt").stdout
        assert pinned != other.ssh("primary", "cat /etc/wirebot/agent-keys/agent.crt").stdout
        # the fence key authorized on the primary is its own standby's, from its own standby's address
        fence_pub = lab.ssh("standby", "cut -d' ' -f2 /root/.ssh/wirebot-fence.pub").stdout.strip()
        authorized = lab.ssh("primary", "grep wirebot-fence /root/.ssh/authorized_keys").stdout
        assert fence_pub in authorized and f'from="{lab.standby}"' in authorized
        assert other.ssh("standby", "cut -d' ' -f2 /root/.ssh/wirebot-fence.pub").stdout.strip() not in authorized
    assert A.ssh("primary", "cat /run/wirebot/agent-hmac.key").stdout != B.ssh("primary",
                                                                               "cat /run/wirebot/agent-hmac.key").stdout
    A.untouched_since(two_pairs["since"])


def test_a_second_deploy_changes_nothing(two_pairs):
    result = pyinfra("--dry", "--json", "lab/inventory.py", "deploy.py")
    assert result.returncode == 0, result.stderr[-3000:]
    changes = [(op["name"], op["hosts_with_change"]) for op in json.loads(result.stdout)["plan"]
               if op["hosts_with_change"]]
    assert changes == []


def test_a_playbook_without_a_pair_is_refused_before_anything(two_pairs):
    result = pyinfra("-y", "lab/inventory.py", "tasks/failover.py")
    assert result.returncode != 0
    names = ", ".join(sorted([PAIR_A, PAIR_B]))
    assert f"acts on one pair and the inventory has 2 ({names})" in result.stdout + result.stderr
    assert (B.standby_status() or {}).get("state") == "STANDBY"


def test_the_status_shows_every_pair(two_pairs):
    result = pyinfra("-y", "lab/inventory.py", "tasks/status.py")
    assert result.returncode == 0, result.stderr[-3000:]
    for pair, lab in ((PAIR_A, A), (PAIR_B, B)):
        table = result.stdout[result.stdout.index(f"=== Wirebot status of pair {pair}"):]
        assert f"primary {lab.primary}" in table.splitlines()[2]


def test_killing_one_primary_activates_only_its_own_standby(two_pairs):
    since = time.time()
    B.cli("kill", "primary")
    seen_a = []

    def b_active():
        seen_a.append((A.standby_status() or {}).get("state"))
        status = B.standby_status() or {}
        return status.get("state") == "ACTIVE" and B.connectors() == {B.standby}

    wait_for(b_active, timeout=150, interval=1, what=f"lab {B_ID}'s standby ACTIVE and serving")
    assert set(seen_a) == {"STANDBY"}, seen_a  # A's standby never moved while B failed over
    assert B.health() == 200
    A.untouched_since(since)


def test_recovery_of_that_pair_leaves_the_other_alone(two_pairs):
    since = time.time()
    B.cli("boot", "primary")
    wait_for(lambda: B.ssh("primary", "systemctl is-system-running --wait", check=False, timeout=120).returncode
             in (0, 1), timeout=150, what=f"lab {B_ID}'s primary booted")
    result = pyinfra("-y", "--limit", PAIR_B, "lab/inventory.py", "tasks/recovery.py")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert f"[{A.primary}]" not in result.stdout + result.stderr  # --limit: pair A was not even connected
    wait_for(lambda: B.connectors() == {B.primary} and (B.standby_status() or {}).get("state") == "STANDBY",
             timeout=60, what=f"lab {B_ID}'s primary serving again")
    A.untouched_since(since)


def test_a_drill_of_that_pair_leaves_the_other_alone(two_pairs, tmp_path):
    since = time.time()
    result = pyinfra("-y", "--limit", PAIR_B, "--data", f"drill_local_dir={tmp_path}", "lab/inventory.py",
                     "tasks/drill.py", timeout=1200)
    log = tmp_path / "fire-drill.log"
    report = json.loads(log.read_text().splitlines()[-1]) if log.exists() else {}
    A.untouched_since(since)  # first: pair A is left alone whatever the drill's verdict
    failed = [(s["n"], s["status"], s["detail"][:500]) for s in report.get("steps", []) if s["status"] != "ok"]
    assert result.returncode == 0, (failed, report.get("events"), result.stdout[-3000:])
    assert "Fire drill PASSED" in result.stdout
    assert report["hosts"] == {"primary": B.primary, "standby": B.standby, "pair": PAIR_B}
    assert f"[{A.primary}]" not in result.stdout + result.stderr
    lines = B.ssh("primary", "tail -n1 /var/log/wirebot/fire-drill.log").stdout
    assert json.loads(lines)["drill_id"] == report["drill_id"]
    assert A.ssh("primary", "grep -c " + shlex.quote(report["drill_id"]) + " /var/log/wirebot/fire-drill.log || true",
                 check=False).stdout.strip() in ("", "0")

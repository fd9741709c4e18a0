"""Runtime agents on the lab, disruptive: the link between the primary and the standby is cut while the
primary serves (issue 10: "primary cut from the standby only"). With the kernel-enforced serving lease the
primary cannot tell this from the standby about to serve, so it stops serving when its lease ends (no
acknowledged heartbeat); the standby cannot tell it from a dead primary and takes over after detection.
The edge never sees two origins, the old primary acknowledges nothing after the standby's ACTIVE, and once
the link heals the primary sees the standby ACTIVE and fences itself. (Before the lease, the standby
refused here because the primary still served: that refusal now happens only with the lease disabled.)
"""

import pytest

from lab import fencing, settings
from lab.agents import standby_status
from lab.baseline import ensure_clean_lab
from lab.machines import ssh
from tasks.core.wait import wait_for

PRIMARY, STANDBY = settings.address("primary"), settings.address("standby")


@pytest.fixture(scope="module")
def partition():
    ensure_clean_lab()
    return fencing.run_scenario("cut-standby")


def test_one_side_serves_and_never_two(partition):
    print(f"\n{partition}")
    assert partition["activated"], "both sides down: the standby never took over"
    assert partition["overlaps"] == 0 and partition["overlap_s"] == 0
    assert partition["old_acks"] == 0 and partition["old_writes"] == 0
    assert {c["origin_ip"] for c in fencing.edge("/lab/connectors")} == {STANDBY}


def test_the_activation_rests_on_the_lease_not_on_the_witness(partition):
    reason = standby_status()["activation"]["reason"]
    assert "kernel-enforced lease ran out" in reason


def test_after_healing_the_primary_fences_itself(partition):
    wait_for(lambda: ssh("primary", "test -e /var/lib/wirebot/fenced.json && "
                                    "! systemctl is-active -q cloudflared-wirebot openclaw-gateway wirebot-scoreboard",
                         check=False).returncode == 0, timeout=30, what="the primary to fence itself after healing")
    journal = ssh("primary", "journalctl -u wirebot-replicator -o cat --no-pager | grep '\"demoted\"'").stdout
    assert "the standby is ACTIVE" in journal

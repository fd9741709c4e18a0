"""Edge detection (issue 14, issue 10's edge-only cut) on the lab: the standby suspects from the edge's own
view (the primary's connector gone from the API and the public endpoint failing on consecutive probes),
without waiting for missed heartbeats, and activates once the lease it last granted has ended or the SSH
fence confirmed; a primary only briefly unreachable at the edge changes nothing. Timings are printed, never
asserted (bench/fencing_bench.py prints them per scenario); what is asserted is which detector fired and
which path the standby took. The non-destructive test runs first, so the module resets the lab at most once.
"""

import time

from lab import fencing, network, settings
from lab.agents import journal, standby_status
from lab.baseline import ensure_clean_lab, recover_primary
from lab.machines import ssh
from tasks.core.wait import wait_for

PRIMARY, STANDBY = settings.address("primary"), settings.address("standby")


def state_changes(since):
    return [(e["state"], e["reason"]) for e in journal("standby", "wirebot-standby", since)
            if e["event"] == "state-change"]


def test_a_primary_briefly_unreachable_at_the_edge_is_not_suspected():
    """Cut from the edge for less than the edge's connector expiry: the public endpoint fails, but the API
    still lists the primary's connector, so the standby never suspects, keeps granting, and nothing moves."""
    ensure_clean_lab()
    since = time.time()
    network.cut("primary", "edge")
    try:
        time.sleep(settings.CONNECTOR_EXPIRY_SECONDS * 0.6)
    finally:
        network.heal("primary", "edge")
    time.sleep(3 * fencing.deployed_timings().probe + 1)
    assert [state for state, _ in state_changes(since)] == []
    status = standby_status()
    assert status["state"] == "STANDBY" and not (status.get("edge") or {}).get("down")
    assert ssh("primary", "test ! -e /var/lib/wirebot/fenced.json", check=False).returncode == 0
    wait_for(lambda: {c["origin_ip"] for c in fencing.edge("/lab/connectors") or []} == {PRIMARY},
             timeout=10, what="the primary's connector still the only one")


def test_an_edge_only_cut_is_suspected_from_the_edge_and_fenced_at_once():
    """The primary keeps heartbeating (its beats say serving: false) but the edge lost it: the edge detector
    suspects, the SSH fence (the primary is reachable) or the lease the standby stopped renewing ends it, and
    the standby serves; never two origins, no write acknowledged by the old primary after the ACTIVE."""
    ensure_clean_lab()
    since = time.time()
    row = fencing.run_scenario("cut-edge")
    print(f"\n{row}")
    assert row["activated"] and row["overlaps"] == 0 and row["old_acks"] == 0 and row["old_writes"] == 0
    changes = state_changes(since)
    suspect = next(reason for state, reason in changes if state == "SUSPECT")
    # not the missed-heartbeats path: the edge's verdict, or - the lab's D = 3 s is shorter than E + k P = 4 s -
    # the heartbeat detector on beats that arrive but say the connector cannot reach the edge
    assert suspect.startswith(("the edge lost the primary", "no heartbeat showing the primary serving")), changes
    assert {c["origin_ip"] for c in fencing.edge("/lab/connectors")} == {STANDBY}
    recover_primary()  # the lab is left serving from the primary (at a higher epoch)

"""Runtime agents on the lab (issue: runtime agents), disruptive: only the primary-standby link is cut
while the primary serves -> heartbeats stop, the standby goes SUSPECT, the witness (the public endpoint
through the edge and the tunnel-connections API) says the primary still serves, so it goes back to
watching with one alert and never activates; the edge never sees the standby's origin. Healing the link
brings the heartbeats back.

Starts from a clean lab (reset when it is not); heals the link whatever happens.
"""

import time

import pytest
from labtest import (
    agent,
    connector_origins,
    edge,
    ensure_clean_lab,
    iso_ts,
    journal,
    lab_cli,
    public,
    standby_status,
    wait_for,
    webhooks,
)

from lab import settings

PRIMARY, STANDBY = settings.address("primary"), settings.address("standby")
RECHECKS = 3  # witness checks to sit through before healing


def changes(since: float) -> list:
    """The standby's state changes since `since`: [(ts, previous, state, reason)]."""
    return [(iso_ts(e["ts"]), e["previous"], e["state"], e["reason"])
            for e in journal("standby", "wirebot-standby", since) if e["event"] == "state-change"]


@pytest.fixture(scope="module")
def partition():
    """A clean lab; the link cut for RECHECKS witness checks, then healed. Returns what was seen."""
    ensure_clean_lab()
    cut_at = time.time()
    lab_cli("cut", "primary", "standby")
    try:
        suspicions = wait_for(lambda: (c := [x for x in changes(cut_at) if x[2] == "SUSPECT"])
                              and len(c) >= RECHECKS and c,
                              timeout=60, interval=0.5, what=f"{RECHECKS} suspicions during the cut")
        during = standby_status()
        replicator = agent("primary", "/status")[1]
        public_during = [public("wins.wirebot.chat", "/health")[0] for _ in range(10)]
    finally:
        healed_at = time.time()
        lab_cli("heal", "primary", "standby")
    return {"cut_at": cut_at, "healed_at": healed_at, "suspicions": suspicions, "during": during,
            "replicator": replicator, "public_during": public_during}


def test_the_standby_suspects_but_the_witness_sees_the_primary_serving(partition):
    seen = changes(partition["cut_at"])
    cut_changes = [c for c in seen if c[0] <= partition["healed_at"]]
    assert {state for _, _, state, _ in cut_changes} == {"SUSPECT", "STANDBY"}
    first = partition["suspicions"][0]
    print(f"\ncut -> first SUSPECT: {first[0] - partition['cut_at']:.2f} s; {len(partition['suspicions'])} "
          "suspicions, each answered by the witness")
    for _, previous, state, reason in cut_changes:
        print(f"  {previous} -> {state}: {reason}")
        if state == "STANDBY":
            assert reason.startswith("not activating: the public endpoint is served (HTTP 200) while our "
                                     "connector is down; watching, re-check in 3s")
    during = partition["during"]
    assert during["state"] in ("STANDBY", "SUSPECT") and during["epoch"] == 1
    assert during["witness"]["primary_serving"] and during["witness"]["other_connector"]
    assert during["witness"]["api"]["other_origins"] == [PRIMARY]
    assert during["activation"] == {} and during["fence"] is None  # never got as far as fencing
    hb = partition["replicator"]["heartbeat"]
    assert hb["consecutive_failures"] >= 1 and not hb["last"]["ok"]
    print(f"  replicator meanwhile: {hb['last']['reason']}")


def test_no_activation_and_the_edge_never_saw_the_standby(partition):
    assert not [c for c in changes(partition["cut_at"]) if c[2] in ("ACTIVATING", "ACTIVE", "FENCE_BLOCKED")]
    assert partition["public_during"] == [200] * 10
    _, requests = edge(f"/lab/requests?since={partition['cut_at']}")
    assert requests and {r["origin_ip"] for r in requests} == {PRIMARY}
    _, history = edge("/lab/history")
    assert not [i for i in history if i["origin_ip"] == STANDBY and
                (i["closed_at"] is None or i["closed_at"] >= partition["cut_at"])]
    assert connector_origins() == {PRIMARY}
    _, overlaps = edge(f"/lab/overlaps?since={partition['cut_at']}")
    assert overlaps == []


def test_one_refusal_alert_reaches_the_webhook(partition):
    def refused():
        hooks = webhooks(partition["cut_at"])
        return [h for h in hooks if "] activation-refused: " in h["body"]["content"]]

    hooks = wait_for(refused, timeout=10, what="the refusal alert at the webhook receiver")
    print(f"\nalert: {hooks[0]['body']['content']}")
    assert len(hooks) == 1  # the same refusal is not repeated on every re-check
    assert hooks[0]["body"]["content"] == (
        "[wirebot standby] activation-refused: not activating: the public endpoint is served (HTTP 200) "
        "while our connector is down (epoch=1, state=STANDBY)")


def test_heartbeats_resume_after_healing(partition):
    healed_at = partition["healed_at"]

    def resumed():
        status = standby_status()
        beat = status["last_heartbeat"]
        return status if beat["received_at"] > healed_at and beat["node"] == "primary" else None

    status = wait_for(resumed, timeout=30, what="heartbeats after healing the link")
    print(f"\nheal -> first heartbeat: {status['last_heartbeat']['received_at'] - healed_at:.2f} s")
    wait_for(lambda: standby_status()["reason"] == "heartbeats resumed after a refused activation",
             timeout=10, what="the standby to note that heartbeats resumed")
    status = standby_status()
    assert (status["state"], status["epoch"]) == ("STANDBY", 1)
    wait_for(lambda: agent("primary", "/status")[1]["components"]["heartbeat"] == "ok", timeout=10,
             what="the replicator's heartbeat component to be ok again")

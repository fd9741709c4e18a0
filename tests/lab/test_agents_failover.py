"""Runtime agents on the lab (issue: runtime agents), destructive: the primary machine is killed outright
-> the standby activates (epoch 2) with the data it replicated, the edge routes only to it, new events
land on it, the activation alert reaches the webhook; then the primary reboots while the standby is
ACTIVE -> its connector stays down (the start gate refuses) and the edge never sees two origins.

Fast timings (heartbeat 1 s x 3). The module starts from a clean lab (reset when it is not).
"""

import time
import uuid

import pytest

from lab import settings
from lab.agents import iso_ts, journal, standby_status
from lab.baseline import ensure_clean_lab
from lab.client import connector_origins, edge, public, webhooks
from lab.commands import lab_cli, pyinfra
from lab.machines import ssh
from tasks.core.wait import wait_for

PRIMARY, STANDBY = settings.address("primary"), settings.address("standby")
EVENTS_DB = "/data/wirebot/scoreboard/events.db"
TENANT_DIR = "/data/wirebot/scoreboard/tenants"
REPLICA = "/var/lib/wirebot-replica/litestream/epoch-1/scoreboard"
LITESTREAM = "/usr/local/bin/litestream"
STEPS = ["restore", "files", "services", "epoch", "tunnel", "ready"]


def db_ids(name: str, path: str) -> set:
    """Event ids in the SQLite DB `path` on host `name` (empty when the file does not exist)."""
    result = ssh(name, f"if [ -e {path} ]; then sqlite3 -readonly {path} 'select id from events'; fi")
    return set(result.stdout.split())


def replica_ids(replica: str) -> set:
    """Event ids in a restore of the standby's replica dir `replica` (empty while there is none)."""
    out = f"/tmp/restore-{uuid.uuid4().hex}.db"
    result = ssh("standby", f"{LITESTREAM} restore -o {out} file://{replica} >/dev/null 2>&1 && "
                            f"sqlite3 {out} 'select id from events'; rm -f {out}*", check=False)
    return set(result.stdout.split())


def post_event(event: dict) -> tuple:
    """POST an event to the scoreboard through the edge (the public hostname); (status, reply)."""
    return public("api.wirebot.chat", "/v1/events", "POST", event)


def served_by(since: float, method: str = None) -> list:
    """Origin IPs of the public requests the edge logged since `since` (optionally one method)."""
    status, log = edge(f"/lab/requests?since={since}")
    assert status == 200
    return [entry["origin_ip"] for entry in log if method is None or entry["method"] == method]


@pytest.fixture(scope="module")
def incident():
    """Clean lab; events (one per a new tenant) written through the edge and replicated; the primary
    killed; the standby ACTIVE. Returns what happened. The lab is left as the scenario leaves it: the next
    module that needs a clean lab resets it (lab.baseline.ensure_clean_lab)."""
    ensure_clean_lab()
    started = time.time()
    tenant = f"lab-{uuid.uuid4().hex[:8]}"
    events = [{"id": str(uuid.uuid4()), "type": "ship"} for _ in range(5)]
    events.append({"id": str(uuid.uuid4()), "type": "complete", "tenant": tenant})
    for event in events:
        status, reply = post_event(event)
        assert status == 201, reply
    assert set(served_by(started, "POST")) == {PRIMARY}
    ids = {e["id"] for e in events}
    tenant_ids = {events[-1]["id"]}
    wait_for(lambda: ids <= replica_ids(f"{REPLICA}/events.db")
             and tenant_ids <= replica_ids(f"{REPLICA}/tenants/{tenant}.db"),
             timeout=30, interval=0.5, what="the events in the standby's replica")
    assert not ids & db_ids("standby", EVENTS_DB), "the standby's live DB must not have them before the restore"
    killed_at = time.time()
    lab_cli("kill", "primary")
    # ACTIVE is recorded before the tunnel starts; the activation completes once the gateway is ready
    active = wait_for(lambda: (s := standby_status()) and s["state"] == "ACTIVE"
                      and (s.get("activation") or {}).get("completed_at") and s,
                      timeout=120, interval=0.25, what="the standby to become ACTIVE")
    facts = {"started": started, "killed_at": killed_at, "ids": ids, "tenant": tenant, "tenant_ids": tenant_ids,
             "active": active}
    return facts


def test_the_standby_activates_at_epoch_2_after_the_primary_is_killed(incident):
    status, killed_at = incident["active"], incident["killed_at"]
    assert (status["state"], status["epoch"]) == ("ACTIVE", 2)
    activation = status["activation"]
    assert [name for name in STEPS if activation["steps"][name]["status"] == "done"] == STEPS
    assert activation["epoch"] == 2 and activation["error"] is None and not activation["forced"]
    assert "the primary's kernel-enforced lease ran out" in activation["reason"]  # fenced without SSH
    for unit in ("openclaw-gateway", "wirebot-scoreboard", "cloudflared-wirebot"):
        assert ssh("standby", f"systemctl is-active {unit}").stdout.strip() == "active", unit

    lines = journal("standby", "wirebot-standby", killed_at)
    changes = [(iso_ts(e["ts"]), e["state"]) for e in lines if e["event"] == "state-change"]
    states = [state for _, state in changes]
    assert "SUSPECT" in states and "ACTIVATING" in states
    assert states.index("SUSPECT") < states.index("ACTIVATING")
    suspect = next(ts for ts, state in changes if state == "SUSPECT")
    activating = next(ts for ts, state in changes if state == "ACTIVATING")
    refusals = [e["reason"] for e in lines if e["event"] == "state-change" and e["state"] == "STANDBY"]
    # no refuse-then-wait-a-threshold: a refused suspicion is looked at again one edge probe interval later
    assert not [reason for reason in refusals if "re-check in 3s" in reason], refusals
    print(f"\nkill -> first SUSPECT (detection): {suspect - killed_at:.2f} s")
    print(f"kill -> ACTIVATING (decision, after {len(refusals)} refusal(s) while the dead connector expired "
          f"at the edge): {activating - killed_at:.2f} s")
    print(f"kill -> ACTIVE: {activation['active_at'] - killed_at:.2f} s "
          f"(activation {activation['total_seconds']:.2f} s); complete (gateway ready) "
          f"{activation['completed_at'] - killed_at:.2f} s")
    for name in STEPS:
        print(f"  step {name:9s} {activation['steps'][name]['seconds']:.3f} s")
    for reason in refusals:
        print(f"  refused: {reason}")


def test_events_written_before_the_kill_were_restored_on_the_standby(incident):
    restored = incident["active"]["activation"]["steps"]["restore"]["detail"]
    assert EVENTS_DB in [r["live"] for r in restored["restored"]]
    assert f"{TENANT_DIR}/{incident['tenant']}.db" in [r["live"] for r in restored["restored"]]
    assert incident["ids"] <= db_ids("standby", EVENTS_DB)
    assert incident["tenant_ids"] <= db_ids("standby", f"{TENANT_DIR}/{incident['tenant']}.db")
    check = ssh("standby", f"sqlite3 -readonly {EVENTS_DB} 'pragma integrity_check'").stdout.strip()
    assert check == "ok"


def test_the_edge_routes_only_to_the_standby(incident):
    assert connector_origins() == {STANDBY}
    since = time.time()
    for i in range(30):
        host, path = [("wins.wirebot.chat", "/health"), ("api.wirebot.chat", "/v1/scoreboard")][i % 2]
        status, reply = public(host, path)
        assert status == 200, reply
    assert len(served_by(since)) == 30 and set(served_by(since)) == {STANDBY}


def test_an_event_posted_through_the_edge_lands_in_the_standbys_events_db(incident):
    since = time.time()
    event = {"id": str(uuid.uuid4()), "type": "ship", "payload": {"during": "failover"}}
    status, reply = post_event(event)
    assert status == 201 and reply == {"id": event["id"], "duplicate": False, "score_delta": 10}
    assert served_by(since, "POST") == [STANDBY]
    row = ssh("standby", f"sqlite3 -readonly {EVENTS_DB} "
                         f"\"select received_by from events where id = '{event['id']}'\"").stdout.strip()
    assert row == "standby"


def test_the_activation_alert_reaches_the_webhook(incident):
    def activated():
        return [h for h in webhooks(incident["started"]) if "] activated: " in h["body"].get("content", "")]

    (hook,) = wait_for(activated, timeout=10, what="the activation alert at the webhook receiver")
    content = hook["body"]["content"]
    print(f"\nalert: {content}")
    assert hook["name"] == "wirebot"
    assert content.startswith("[wirebot standby] activated: standby is ACTIVE at epoch 2 (restore ")
    for name in ("files", "services", "tunnel"):
        assert f"{name} " in content
    assert "epoch=2" in content


@pytest.fixture(scope="module")
def rebooted(incident):
    """The killed primary booted again while the standby is ACTIVE."""
    booted_at = time.time()
    lab_cli("boot", "primary")

    def refusals():
        lines = journal("primary", "cloudflared-wirebot", booted_at)
        refused = [e for e in lines if e.get("component") == "gate" and e.get("event") == "refuse"]
        # refused at boot; then the replicator's first heartbeat sees the standby ACTIVE and the primary
        # fences itself (fence record, units masked: no more retries)
        demoted = ssh("primary", "test -e /var/lib/wirebot/fenced.json && [ \"$(systemctl show -p LoadState "
                                 "--value cloudflared-wirebot)\" = masked ]", check=False).returncode == 0
        return refused if refused and demoted else None

    refused = wait_for(refusals, timeout=60, interval=1, what="the start gate to refuse and the primary to "
                                                              "fence itself")
    return {"booted_at": booted_at, "refused": refused}


def test_a_rebooted_primary_keeps_its_connector_down(incident, rebooted):
    for entry in rebooted["refused"]:
        assert entry["reason"] == "the standby is ACTIVE at epoch 2 >= our epoch 1"
        assert entry["checks"]["standby"]["state"] == "ACTIVE"
    status = ssh("primary", "systemctl status cloudflared-wirebot --no-pager", check=False).stdout
    assert "Active: active (running)" not in status
    text = ssh("primary", "journalctl -u cloudflared-wirebot -o cat --no-pager -b").stdout
    assert ("wirebot.hosttools.gate: refusing to start the connector: the standby is ACTIVE at epoch 2 >= our epoch 1"
            in text)
    print(f"\ngate on the rebooted primary: {rebooted['refused'][0]['reason']}")

    # self-demotion: the gateway and the scoreboard are fenced too; the replicator runs (it reports)
    assert ssh("primary", "systemctl is-active wirebot-replicator", check=False).returncode == 0
    assert ssh("primary", "systemctl is-active openclaw-gateway wirebot-scoreboard", check=False).returncode != 0
    assert connector_origins() == {STANDBY}
    since = time.time()
    for _ in range(20):
        assert public("wins.wirebot.chat", "/health")[0] == 200
    assert set(served_by(since)) == {STANDBY}
    assert set(served_by(rebooted["booted_at"])) <= {STANDBY}
    status, history = edge("/lab/history")
    assert not [i for i in history if i["origin_ip"] == PRIMARY and i["opened_at"] >= incident["killed_at"]]
    status, overlaps = edge(f"/lab/overlaps?since={incident['started']}")
    assert status == 200 and overlaps == []
    assert standby_status()["state"] == "ACTIVE"


def test_the_standby_alerts_that_the_fenced_primary_is_alive(incident, rebooted):
    def alive():
        return [h for h in webhooks(rebooted["booted_at"]) if "] primary-alive: " in h["body"]["content"]]

    (hook,) = wait_for(alive, timeout=30, what="the primary-alive alert")
    print(f"\nalert: {hook['body']['content']}")
    assert "heartbeat from primary (epoch 1) while this standby is ACTIVE at epoch 2" in hook["body"]["content"]


def test_a_deploy_during_the_incident_succeeds_and_leaves_the_incident_alone(incident, rebooted):
    """An operator re-running deploy.py mid-incident must not fail on the gated connector, nor start it,
    nor stop the active standby."""
    result = pyinfra("lab/inventory.py", "deploy.py")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert ssh("primary", "systemctl is-active cloudflared-wirebot", check=False).stdout.strip() != "active"
    assert standby_status()["state"] == "ACTIVE"
    assert ssh("standby", "systemctl is-active cloudflared-wirebot wirebot-scoreboard openclaw-gateway",
               check=False).returncode == 0
    assert connector_origins() == {STANDBY}

"""Step planning of the incident playbooks from facts (tasks/playbooks/model.py): pure, no hosts."""

import pytest

from tasks.playbooks import model
from tasks.playbooks.model import HostView, Refusal

CONNECTOR = "cloudflared-wirebot"
SERVICES = ("openclaw-gateway", "wirebot-scoreboard")
SERVING = (CONNECTOR,) + SERVICES
TOKEN = "/run/wirebot/cloudflare-api-token"


def host(name="primary", state=None, running=(), fenced=False, masked=False, markers=None, reachable=True,
         sha=None):
    units = {unit: {"active": "active" if unit in running else "inactive",
                    "enabled": "masked" if masked and unit == CONNECTOR else "enabled"}
             for unit in SERVING + ("litestream", "wirebot-replicator")}
    return HostView(name, reachable, state or {}, units, fenced, markers or {}, True, sha)


def test_snapshot_lines_parse_to_a_view():
    lines = ['STATE {"state": "ACTIVE", "epoch": 4}', "UNIT cloudflared-wirebot active enabled",
             "UNIT wirebot-scoreboard inactive masked", "FENCED", "MARKERS epoch-5 started.json 1-stopped.json ",
             "MARKERS epoch-x junk", "HELPER", "LITESTREAM abc123"]
    view = HostView.from_snapshot("standby", model.parse_snapshot(lines))
    assert (view.agent_state, view.epoch, view.fenced, view.helper) == ("ACTIVE", 4, True, True)
    assert view.active(CONNECTOR) and not view.active("wirebot-scoreboard")
    assert view.masked("wirebot-scoreboard") and not view.masked(CONNECTOR)
    assert view.marks(5) == {"started.json", "1-stopped.json"} and view.litestream_sha == "abc123"


def test_a_snapshot_with_a_broken_state_file_reads_as_defaults():
    view = HostView.from_snapshot("p", model.parse_snapshot(["STATE {not json", "LITESTREAM "]))
    assert (view.epoch, view.agent_state, view.litestream_sha) == (1, "STANDBY", None)


# --- failover ---------------------------------------------------------------------------------------
def test_fence_lists_the_connector_first_then_the_services():
    todo = model.fence_todo(host(running=SERVING), CONNECTOR, SERVICES)
    assert todo == "fence cloudflared-wirebot (running), stop openclaw-gateway, stop wirebot-scoreboard"


def test_fence_holds_when_fenced_and_stopped_and_is_skipped_when_unreachable():
    assert model.fence_todo(host(fenced=True), CONNECTOR, SERVICES) is None
    assert model.fence_todo(host(reachable=False), CONNECTOR, SERVICES) is None
    assert model.fence_todo(host(fenced=True, running=("wirebot-scoreboard",)), CONNECTOR, SERVICES) == \
        "stop wirebot-scoreboard"


def activation(primary, standby, witness=None, force=False, fence_first=False):
    return model.activation(primary, standby, witness, force, SERVING, CONNECTOR, TOKEN, fence_first)


def test_an_active_serving_standby_needs_no_activation():
    decision = activation(host(fenced=True), host("standby", {"state": "ACTIVE", "epoch": 3}, SERVING))
    assert decision.todo is None and "epoch 3" in decision.note


def test_an_active_standby_that_does_not_serve_means_a_recovery_is_half_done():
    with pytest.raises(Refusal, match="tasks/recovery.py"):
        activation(host(fenced=True), host("standby", {"state": "ACTIVE"}, (CONNECTOR,)))


def test_an_active_standby_still_finishing_its_own_activation_is_waited_for_not_refused():
    """ACTIVE is recorded before the tunnel and the gateway's readiness: a playbook arriving in between
    lets the agent finish (the activation command waits for completed_at) instead of calling it a
    half-done recovery."""
    finishing = {"state": "ACTIVE", "epoch": 4, "activation": {"steps": {"epoch": {"status": "done"}}}}
    decision = activation(host(reachable=False), host("standby", finishing, ("wirebot-scoreboard",)))
    assert decision.todo and "finish its activation" in decision.todo and not decision.force
    assert CONNECTOR in decision.todo
    done = dict(finishing, activation={"steps": {"epoch": {"status": "done"}}, "completed_at": 10.0})
    with pytest.raises(Refusal, match="tasks/recovery.py"):
        activation(host(reachable=False), host("standby", done, ("wirebot-scoreboard",)))


def test_a_reachable_primary_must_be_fenced_first_unless_the_fence_step_comes_before():
    primary, standby = host(running=SERVING), host("standby", {"state": "STANDBY"})
    with pytest.raises(Refusal, match="not fenced"):
        activation(primary, standby)
    assert activation(primary, standby, fence_first=True).todo
    assert not activation(host(fenced=True), standby).force


def test_an_unreachable_primary_is_activated_over_when_the_witness_api_is_clear():
    witness = {"api_clear": True, "summary": "public answered 530; API shows no connection from another origin"}
    decision = activation(host(reachable=False), host("standby", {"state": "FENCE_BLOCKED"}), witness)
    assert decision.todo and not decision.force and "witness confirms" in decision.note


@pytest.mark.parametrize("witness", [None, {"api_clear": False, "summary": "API check not configured"},
                                     {"api_clear": False, "other_connector": True, "summary": "API shows 10.0.0.2"}])
def test_an_unconfirmed_unreachable_primary_is_refused_with_what_would_be_needed(witness):
    with pytest.raises(Refusal) as refused:
        activation(host(reachable=False), host("standby", {"state": "FENCE_BLOCKED"}), witness)
    text = str(refused.value)
    assert "failover_force=true" in text and TOKEN in text and "SSH access to the primary" in text
    if witness and witness.get("other_connector"):
        assert "link fault" in text


def test_force_activates_an_unconfirmed_primary_and_says_so():
    decision = activation(host(reachable=False), host("standby"), {"api_clear": False, "summary": "x"}, force=True)
    assert decision.force and decision.todo.startswith("activate with --force") and "FORCED" in decision.note


# --- recovery ---------------------------------------------------------------------------------------
def test_an_active_standby_is_recovered_to_the_next_epoch():
    target = model.recovery_target(host(fenced=True), host("standby", {"state": "ACTIVE", "epoch": 4}))
    assert target.epoch == 5 and "ACTIVE at epoch 4" in target.reason


def test_an_activating_standby_is_refused():
    with pytest.raises(Refusal, match="ACTIVATING"):
        model.recovery_target(host(), host("standby", {"state": "ACTIVATING"}))


def test_a_recovery_interrupted_after_deactivation_is_resumed_from_its_markers():
    primary = host(state={"epoch": 5}, markers={3: ["started.json", "7-done.json"],
                                                 5: ["started.json", "1-stopped.json", "3-verified.json"]})
    target = model.recovery_target(primary, host("standby", {"state": "STANDBY", "epoch": 5}))
    assert target.epoch == 5 and "in progress" in target.reason


def test_a_stale_marker_below_the_standby_epoch_does_not_count():
    primary = host(markers={3: ["started.json"]})
    assert model.recovery_target(primary, host("standby", {"state": "STANDBY", "epoch": 5})) is None


def test_a_fenced_primary_with_an_idle_standby_is_recovered():
    target = model.recovery_target(host(state={"epoch": 2}, fenced=True),
                                   host("standby", {"state": "FENCE_BLOCKED", "epoch": 2}))
    assert target.epoch == 3


def test_nothing_to_recover_after_a_completed_recovery():
    primary = host(state={"epoch": 5}, running=SERVING, markers={5: ["started.json", "7-done.json"]})
    standby = host("standby", {"state": "STANDBY", "epoch": 5})
    assert model.recovery_target(primary, standby) is None
    assert "Nothing to recover" in model.nothing_to_recover(primary, standby)


def test_the_primary_step_lists_what_is_left_and_holds_when_serving():
    assert model.primary_todo(host(fenced=True, masked=True), CONNECTOR, SERVICES) == (
        "start openclaw-gateway, start wirebot-scoreboard, remove the fence record, unmask cloudflared-wirebot, "
        "start cloudflared-wirebot")
    assert model.primary_todo(host(running=SERVING), CONNECTOR, SERVICES) is None


def test_replication_checks_epoch_config_and_units():
    units = ["litestream", "wirebot-replicator"]
    primary = host(state={"epoch": 3}, sha="old", running=("litestream",))
    assert model.replication_todo(primary, 5, "new", units) == \
        "primary epoch 3 -> 5, litestream.yml for epoch 5, start wirebot-replicator"
    assert model.replication_todo(host(state={"epoch": 5}, sha="new", running=units), 5, "new", units) is None


def test_marker_names_are_flat():
    assert model.merge_marker("scoreboard/tenants") == "2-merged-scoreboard__tenants.json"


# --- failover: why the activation gave up ------------------------------------------------------------
def test_failover_prints_the_agents_activation_error_when_it_gives_up():
    from tasks.playbooks.failover_plan import activation_failure

    activation = {"attempts": 4, "error": "restore: sqlite3 .restore failed: No space left on device",
                  "steps": {"restore": {"status": "failed", "error": "sqlite3 .restore failed: No space left"
                                                                     " on device"}}}
    via_agent = {"ok": False, "error": "not ACTIVE after 20s",
                 "status": {"state": "ACTIVATING", "reason": "operator activation", "activation": activation}}
    text = activation_failure(1, via_agent, "")
    assert text.startswith("wirebot.standby.activation exited 1: not ACTIVE after 20s; the agent's activation error: ")
    assert "No space left on device" in text and "(4 attempts)" in text
    standalone = {"ok": False, "state": "ACTIVATING", "reason": "operator activation (x): fence skipped",
                  "activation": {"steps": activation["steps"]}}
    text = activation_failure(1, standalone, "")
    assert "state ACTIVATING (operator activation (x): fence skipped)" in text
    assert "restore: sqlite3 .restore failed: No space left on device" in text
    assert activation_failure(2, {}, "wirebot.standby.activation: no such file\n") == (
        "wirebot.standby.activation exited 2: wirebot.standby.activation: no such file")


# --- reports built from facts: merge and key counts, the public verdict ---

def test_merge_counts_per_database(merge_report):
    rows = model.merge_counts(merge_report)
    assert [(r["action"], r["source_rows"], r["inserted"]) for r in rows] == [("dry-run", 40, 12),
                                                                               ("dry-run-copy", 3, 3)]
    assert model.merge_counts(None) == [] and model.merge_counts({"databases": []}) == []


def test_key_counts_sum_the_tables_of_each_database():
    report = {"ok": False, "missing": 1, "databases": {
        "/p/events.db": {"events": {"source_keys": 5, "target_keys": 9, "missing": 0, "sample": []}},
        "/p/tenants/a.db": {"events": {"source_keys": 2, "target_keys": 1, "missing": 1, "sample": ["u"]},
                            "notes": {"source_keys": 1, "target_keys": 1, "missing": 0, "sample": []}}}}
    assert model.keys_counts(report) == [
        {"path": "/p/events.db", "source_keys": 5, "target_keys": 9, "missing": 0},
        {"path": "/p/tenants/a.db", "source_keys": 3, "target_keys": 2, "missing": 1}]


def probe(status_code=200, origin="10.0.0.3"):
    return {"status": status_code, "origin": origin, "error": None}


def test_served_by_needs_every_probe_from_the_expected_origin():
    ok, text = model.served_by([probe(), probe()], "10.0.0.3", {"configured": True, "ok": True,
                                                                "origins": ["10.0.0.3"]}, "X-Edge-Origin")
    assert ok and "X-Edge-Origin" in text and "only 10.0.0.3" in text
    ok, text = model.served_by([probe(), probe(origin="10.0.0.2")], "10.0.0.3", None)
    assert not ok and "10.0.0.2" in text
    assert not model.served_by([probe(530, None)], "10.0.0.3", None)[0]
    assert not model.served_by([], "10.0.0.3", None)[0]


def test_served_by_on_real_hosts_trusts_the_api_when_a_token_exists():
    real = [probe(origin=None)] * 3
    assert model.served_by(real, "203.0.113.9", {"configured": True, "ok": True, "origins": ["203.0.113.9"]})[0]
    ok, text = model.served_by(real, "203.0.113.9", {"configured": True, "ok": True,
                                                     "origins": ["198.51.100.1", "203.0.113.9"]})
    assert not ok and "198.51.100.1" in text
    ok, text = model.served_by(real, "203.0.113.9", {"configured": False})
    assert ok and "no API token" in text

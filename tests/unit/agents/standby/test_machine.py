"""wirebot.standby.machine: every transition of the pure decide(), incl. restarts from each state."""

import pytest
from wirebot.standby import machine as m

T = 90.0  # threshold: 3 x 30 s
RETRY = 10.0


def state(name=m.STANDBY, since=1000.0, **extra):
    data = m.default_state()
    data.update(state=name, since=since, reason="test")
    data.update(extra)
    return data


def obs(now=1100.0, age=0.0):
    return m.Observation(now=now, heartbeat_age=age, threshold=T, retry_seconds=RETRY)


def witness(at, public=None, api_configured=True, api_ok=True, others=()):
    serving = public is not None and 200 <= public < 300
    api = {"configured": api_configured, "ok": api_configured and api_ok, "origins": list(others),
           "other_origins": list(others), "error": None if api_ok else "HTTP 403"}
    public_result = {"status": public, "serving": serving, "error": None if public else "refused"}
    return {"at": at, "public": public_result,
            "api": api, "primary_serving": serving, "other_connector": bool(api["ok"] and others),
            "api_clear": bool(api["ok"] and not others), "summary": "test witness"}


def fence(at, ok):
    return {"at": at, "ok": ok, "fenced": ok, "connector_active": False if ok else None,
            "error": None if ok else "ssh exit 255: Connection timed out"}


# STANDBY ---------------------------------------------------------------------------------------------
def test_standby_stays_while_heartbeats_fresh():
    d = m.decide(state(), obs(age=30))
    assert d.state == m.STANDBY and d.actions == () and d.alerts == ()


def test_standby_at_exactly_threshold_stays():
    assert m.decide(state(), obs(age=T)).state == m.STANDBY


def test_standby_to_suspect_after_threshold_asks_witness():
    d = m.decide(state(), obs(age=T + 1))
    assert d.state == m.SUSPECT and d.actions == (m.CHECK_WITNESS,)
    assert "no valid heartbeat for 91s" in d.reason


def test_standby_waits_for_recheck_after_a_refusal():
    p = state(recheck_after=1150.0)
    assert m.decide(p, obs(now=1100.0, age=500)).state == m.STANDBY
    assert m.decide(p, obs(now=1150.0, age=500)).state == m.SUSPECT


# SUSPECT ---------------------------------------------------------------------------------------------
def test_suspect_asks_witness_when_no_fresh_result():
    p = state(m.SUSPECT, witness=witness(at=900.0))  # taken before this suspicion
    d = m.decide(p, obs(age=200))
    assert d.state == m.SUSPECT and d.actions == (m.CHECK_WITNESS,)


def test_heartbeat_during_suspect_returns_to_standby():
    p = state(m.SUSPECT, last_heartbeat={"received_at": 1050.0, "sequence": 7})
    d = m.decide(p, obs(age=50))
    assert d.state == m.STANDBY and "valid heartbeat" in d.reason and d.actions == ()


def test_old_heartbeat_does_not_clear_suspect():
    p = state(m.SUSPECT, last_heartbeat={"received_at": 900.0, "sequence": 7})
    assert m.decide(p, obs(age=200)).state == m.SUSPECT


def test_heartbeats_stop_but_witness_shows_primary_serving_no_activation():
    p = state(m.SUSPECT, witness=witness(at=1001.0, public=200, api_configured=False))
    d = m.decide(p, obs(now=1100.0, age=200))
    assert d.state == m.STANDBY and m.ACTIVATE not in d.actions and m.FENCE not in d.actions
    assert d.alerts and d.alerts[0][0] == "activation-refused"
    assert "served (HTTP 200)" in d.reason
    assert d.updates["recheck_after"] == 1100.0 + T and d.updates["last_refusal"] == "primary-serving"


def test_connector_attached_at_api_no_activation():
    p = state(m.SUSPECT, witness=witness(at=1001.0, public=530, others=["10.213.0.2"]))
    d = m.decide(p, obs(age=200))
    assert d.state == m.STANDBY and m.ACTIVATE not in d.actions
    assert "10.213.0.2" in d.reason and d.updates["last_refusal"] == "connector-attached"
    assert d.alerts[0][0] == "activation-refused"


def test_repeated_same_refusal_alerts_once():
    p = state(m.SUSPECT, witness=witness(at=1001.0, public=200), last_refusal="primary-serving")
    d = m.decide(p, obs(age=200))
    assert d.state == m.STANDBY and d.alerts == ()


def test_heartbeats_resuming_after_a_refusal_rearm_the_alert():
    p = state(m.STANDBY, since=1000.0, last_refusal="primary-serving",
              last_heartbeat={"received_at": 1001.0, "sequence": 3})
    d = m.decide(p, obs(age=1))
    assert d.state == m.STANDBY and d.updates == {"last_refusal": None}
    p.update(d.updates, reason=d.reason)
    assert m.decide(p, obs(age=1)).updates == {}


def test_witness_clear_requests_fence_first():
    p = state(m.SUSPECT, witness=witness(at=1001.0, public=530))
    d = m.decide(p, obs(age=200))
    assert d.state == m.SUSPECT and d.actions == (m.FENCE,)


def test_an_absent_connector_is_not_a_fence():
    """Issue 10: the API's "no connection" is absent, not fenced; without a lease or SSH: blocked."""
    p = state(m.SUSPECT, witness=witness(at=1001.0, public=530), fence=fence(1002.0, ok=False))
    d = m.decide(p, obs(age=200))
    assert d.state == m.FENCE_BLOCKED and m.ACTIVATE not in d.actions
    assert "absent is not fenced" in d.reason


def lease(granted_at, seconds=2.0, enforced=True):
    return {"granted_at": granted_at, "seconds": seconds, "enforced": enforced}


def test_an_expired_enforced_lease_fences_without_ssh():
    """A frozen primary cannot answer SSH; its own kernel stopped it: activate without waiting."""
    p = state(m.SUSPECT, witness=witness(at=1001.0, public=530), lease=lease(1090.0))
    d = m.decide(p, obs(now=1100.0, age=10))
    assert d.state == m.ACTIVATING and d.actions == (m.ACTIVATE,) and "lease ran out" in d.reason


@pytest.mark.parametrize("record", [lease(1099.0), lease(1090.0, enforced=False), None])
def test_a_running_or_unenforced_lease_needs_the_ssh_fence(record):
    p = state(m.SUSPECT, witness=witness(at=1001.0, public=530), lease=record)
    d = m.decide(p, obs(now=1100.0, age=10))
    assert d.state == m.SUSPECT and d.actions == (m.FENCE,)
    p["fence"] = fence(1002.0, ok=False)
    assert m.decide(p, obs(now=1100.0, age=10)).state == m.FENCE_BLOCKED


@pytest.mark.parametrize("current,manual,epoch,granted", [
    (m.STANDBY, None, 1, True), (m.SUSPECT, None, 1, True), (m.FENCE_BLOCKED, None, 1, True),
    (m.ACTIVATING, None, 1, False), (m.ACTIVE, None, 1, False), (m.STANDBY, {"reason": "x"}, 1, False),
    (m.STANDBY, None, 0, False)])
def test_a_lease_is_granted_only_while_watching(current, manual, epoch, granted):
    data = state(current, manual_request=manual)
    body = {"epoch": epoch, "lease": {"enforced": True, "seconds": 2}, "serving": True}
    assert m.grant_lease(data, body, 50.0) is granted
    assert (data.get("lease") == lease(50.0)) is granted


def test_an_active_standby_watches_every_watch_seconds():
    p = state(m.ACTIVE, witness=witness(at=1098.0, public=200))
    assert m.decide(p, m.Observation(1100.0, 0, T, RETRY, 1.0)).actions == (m.CHECK_WITNESS,)
    assert m.decide(p, m.Observation(1100.0, 0, T, RETRY, 5.0)).actions == ()


def test_no_api_token_and_fence_ssh_fails_fence_blocked():
    p = state(m.SUSPECT, witness=witness(at=1001.0, public=None, api_configured=False),
              fence=fence(1002.0, ok=False))
    d = m.decide(p, obs(age=200))
    assert d.state == m.FENCE_BLOCKED and m.ACTIVATE not in d.actions
    assert d.alerts[0][0] == "fence-blocked"
    assert "API check not configured" in d.reason and "Connection timed out" in d.reason


def test_api_failing_and_fence_ssh_fails_fence_blocked():
    p = state(m.SUSPECT, witness=witness(at=1001.0, public=None, api_ok=False), fence=fence(1002.0, False))
    d = m.decide(p, obs(age=200))
    assert d.state == m.FENCE_BLOCKED and "API check failed (HTTP 403)" in d.reason


def test_fence_ssh_succeeds_activates_without_api():
    p = state(m.SUSPECT, witness=witness(at=1001.0, public=None, api_configured=False),
              fence=fence(1002.0, ok=True))
    d = m.decide(p, obs(age=200))
    assert d.state == m.ACTIVATING and d.actions == (m.ACTIVATE,)
    assert "fence command over SSH confirmed" in d.reason


def test_stale_fence_result_is_not_used():
    p = state(m.SUSPECT, witness=witness(at=1001.0, public=None, api_configured=False),
              fence=fence(990.0, ok=True))
    assert m.decide(p, obs(age=200)).actions == (m.FENCE,)


# FENCE_BLOCKED -----------------------------------------------------------------------------------------
def blocked(**extra):
    return state(m.FENCE_BLOCKED, since=1000.0, **extra)


def test_fence_blocked_stays_without_new_alert():
    p = blocked(witness=witness(at=1095.0, api_configured=False), fence=fence(1096.0, ok=False))
    d = m.decide(p, obs(now=1100.0, age=300))
    assert d.state == m.FENCE_BLOCKED and d.alerts == () and d.actions == ()


def test_fence_blocked_rechecks_after_retry_seconds():
    p = blocked(witness=witness(at=1001.0, api_configured=False), fence=fence(1002.0, ok=False))
    d = m.decide(p, obs(now=1100.0, age=300))
    assert d.state == m.FENCE_BLOCKED and d.actions == (m.CHECK_WITNESS,)
    p["witness"] = witness(at=1100.0, api_configured=False)
    assert m.decide(p, obs(now=1100.5, age=300)).actions == (m.FENCE,)


def test_fence_blocked_to_activating_when_fence_later_succeeds():
    p = blocked(witness=witness(at=1099.0, api_configured=False), fence=fence(1099.5, ok=True))
    d = m.decide(p, obs(now=1100.0, age=300))
    assert d.state == m.ACTIVATING and d.actions == (m.ACTIVATE,)


def test_fence_blocked_heartbeat_returns_to_standby():
    p = blocked(last_heartbeat={"received_at": 1050.0, "sequence": 9})
    d = m.decide(p, obs(now=1100.0, age=50))
    assert d.state == m.STANDBY and d.alerts == ()


def test_fence_blocked_primary_serving_returns_to_standby():
    p = blocked(witness=witness(at=1099.0, public=200, api_configured=False))
    d = m.decide(p, obs(now=1100.0, age=300))
    assert d.state == m.STANDBY and d.updates["recheck_after"] == 1100.0 + T


# ACTIVATING / ACTIVE -------------------------------------------------------------------------------------
def test_activating_runs_activation():
    d = m.decide(state(m.ACTIVATING, activation={"steps": {}}), obs())
    assert d.state == m.ACTIVATING and d.actions == (m.ACTIVATE,)


def test_activating_failed_step_waits_retry_seconds():
    p = state(m.ACTIVATING, activation={"error": "services: boom", "last_attempt_at": 1095.0})
    assert m.decide(p, obs(now=1100.0)).actions == ()
    assert m.decide(p, obs(now=1105.0)).actions == (m.ACTIVATE,)


def test_activating_ignores_heartbeats():
    p = state(m.ACTIVATING, last_heartbeat={"received_at": 1099.0, "sequence": 1}, activation={})
    assert m.decide(p, obs(age=1)).state == m.ACTIVATING


def test_active_stays_active_and_checks_witness_periodically():
    p = state(m.ACTIVE, last_heartbeat={"received_at": 1099.0, "sequence": 1})
    d = m.decide(p, obs(age=1))
    assert d.state == m.ACTIVE and d.actions == (m.CHECK_WITNESS,)
    p["witness"] = witness(at=1090.0, public=200)  # our own connector serves: fine
    d = m.decide(p, obs(age=1))
    assert d.state == m.ACTIVE and d.actions == () and d.alerts == ()


def test_active_other_connector_alerts_split_brain_and_fences():
    p = state(m.ACTIVE, witness=witness(at=1090.0, public=200, others=["10.213.0.2"]))
    d = m.decide(p, obs())
    assert d.state == m.ACTIVE and d.actions == (m.FENCE,) and d.alerts[0][0] == "split-brain"
    p.update(d.updates, fence=fence(1091.0, ok=True))
    d = m.decide(p, obs())
    assert d.state == m.ACTIVE and d.actions == () and d.alerts == ()


# operator requests --------------------------------------------------------------------------------------
def manual(force, at=1050.0):
    return {"id": "abc", "force": force, "reason": "drill", "requested_at": at}


def test_forced_activation_skips_witness_and_fence():
    d = m.decide(state(manual_request=manual(True)), obs(age=0))
    assert d.state == m.ACTIVATING and d.actions == (m.ACTIVATE,)
    assert d.updates["manual_request"] is None and d.updates["last_manual"]["outcome"] == "activating"


def test_manual_activation_still_requires_the_fence():
    p = state(manual_request=manual(False))
    assert m.decide(p, obs(age=0)).actions == (m.CHECK_WITNESS,)
    # a serving primary does not refuse a manual request: only the fence counts
    p["witness"] = witness(at=1060.0, public=200, api_configured=False)
    assert m.decide(p, obs(age=0)).actions == (m.FENCE,)
    p["fence"] = fence(1061.0, ok=False)
    d = m.decide(p, obs(age=0))
    assert d.state == m.FENCE_BLOCKED and d.updates["last_manual"]["outcome"] == "fence-blocked"
    p["fence"] = fence(1061.0, ok=True)
    d = m.decide(p, obs(age=0))
    assert d.state == m.ACTIVATING and d.updates["last_manual"]["outcome"] == "activating"


# restart resume ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,expected_state,expected_actions", [
    (m.STANDBY, m.STANDBY, ()),                     # fresh agent: age counts from its start
    (m.SUSPECT, m.SUSPECT, (m.CHECK_WITNESS,)),     # resumes the suspicion
    (m.FENCE_BLOCKED, m.FENCE_BLOCKED, (m.CHECK_WITNESS,)),  # keeps re-evaluating
    (m.ACTIVATING, m.ACTIVATING, (m.ACTIVATE,)),    # resumes the activation
    (m.ACTIVE, m.ACTIVE, (m.CHECK_WITNESS,)),       # stays active, never restores again
])
def test_restart_resumes_from_each_persisted_state(name, expected_state, expected_actions):
    done = {"completed_at": 600.0} if name == m.ACTIVE else {}
    p = state(name, since=500.0, activation={"steps": {"restore": {"status": "done"}}, **done})
    d = m.decide(p, obs(now=2000.0, age=5.0))  # just restarted: heartbeat age counted from start
    assert d.state == expected_state and d.actions == expected_actions
    assert m.ACTIVATE not in d.actions or name == m.ACTIVATING


def test_default_state_is_standby_epoch_1():
    p = m.default_state()
    assert p["state"] == m.STANDBY and p["epoch"] == 1 and p["last_sequence"] == 0


def test_fence_satisfied_reasons():
    ok, why = m.fence_satisfied(witness(1, others=["1.2.3.4"]), fence(2, ok=False))
    assert not ok and "API shows connections from 1.2.3.4" in why and "SSH fence failed" in why
    ok, why = m.fence_satisfied(witness(1), fence(2, ok=True))
    assert ok and "confirmed" in why
    ok, why = m.fence_satisfied(witness(1), fence(2, ok=False), (True, "lease ran out"))
    assert ok and why == "lease ran out"


def test_a_primary_that_heartbeats_but_cannot_serve_is_suspected():
    """Cut from the edge only: heartbeats arrive, but its running connector is not ready."""
    p = state(m.STANDBY, since=900.0)
    m.note_serving(p, {"serving": True}, 1000.0)
    p["last_heartbeat"] = {"received_at": 1000.0}
    m.note_serving(p, {"serving": False}, 1095.0)
    p["last_heartbeat"] = {"received_at": 1095.0}
    assert m.alive_at(p) == 1000.0
    p["state"], p["since"] = m.SUSPECT, 1091.0
    d = m.decide(p, obs(now=1096.0, age=96))
    assert d.state == m.SUSPECT and d.actions == (m.CHECK_WITNESS,)  # the non-serving beat keeps no one calm
    m.note_serving(p, {"serving": None}, 1097.0)  # stopped/fenced: not meant to serve, alive
    assert m.decide(p, obs(now=1097.5, age=0)).state == m.STANDBY


def test_a_refused_suspicion_is_looked_at_again_one_probe_interval_later_never_a_threshold():
    """A crashed primary's connector is still listed for a few seconds (the edge has not expired it yet):
    the refusal is re-checked one edge probe interval later, whether or not the lease has run out."""
    for granted in (1090.0, 1099.0):
        p = state(m.SUSPECT, witness=witness(at=1099.0, public=502, others=["10.0.0.2"]), lease=lease(granted))
        d = m.decide(p, m.Observation(1100.0, 10, T, RETRY, 1.0, 0.5))
        assert d.state == m.STANDBY and d.updates["recheck_after"] == 1100.5
        p.update(state=m.STANDBY, since=1100.0, **d.updates)
        assert m.decide(p, m.Observation(1100.4, 100, T, RETRY, 1.0, 0.5)).state == m.STANDBY
        assert m.decide(p, m.Observation(1100.6, 100, T, RETRY, 1.0, 0.5)).actions == (m.CHECK_WITNESS,)


def test_once_the_ssh_fence_stopped_the_primary_the_standby_serves_whatever_heartbeats_say():
    """Cut from the edge only: the fence succeeds over SSH; the fenced primary's next heartbeats must not
    send the standby back to STANDBY (both sides would be down)."""
    p = state(m.SUSPECT, since=1090.0, witness=witness(at=1091.0, public=530), fence=fence(1093.0, ok=True))
    m.note_serving(p, {"serving": None}, 1094.0)
    d = m.decide(p, obs(now=1095.0, age=0))
    assert d.state == m.ACTIVATING and d.actions == (m.ACTIVATE,)


def test_a_unit_the_fence_does_not_know_blocks_with_the_reason():
    """Issue 9 item 10: a renamed unit is not loaded, so it is never fenced: FENCE_BLOCKED, reason named."""
    f = fence(1002.0, ok=False)
    f["reply"] = {"fenced": False, "problems": ["cloudflared-renamed is not loaded (LoadState not-found)"]}
    p = state(m.SUSPECT, witness=witness(at=1001.0, public=530), fence=f)
    d = m.decide(p, obs(age=200))
    assert d.state == m.FENCE_BLOCKED and "cloudflared-renamed is not loaded (LoadState not-found)" in d.reason


# edge detection (wirebot.standby.edgewatch) -------------------------------------------------------------------
def eobs(now=1100.0, age=0.0, fence_running=False):
    return m.Observation(now, age, T, RETRY, 5.0, 2.0, fence_running)


def edge(at, down=True):
    return {"at": at, "down": down, "window": 6.0, "summary": "public down (530), 3 failure(s) in a row; API: gone"}


def test_a_fresh_edge_verdict_suspects_without_missed_heartbeats():
    p = state(edge=edge(1099.0))
    d = m.decide(p, eobs(age=7.0))  # 7 s without a beat showing it alive (threshold 90 s)
    assert d.state == m.SUSPECT and d.actions == (m.CHECK_WITNESS,) and "edge lost the primary" in d.reason
    p["edge"] = edge(1093.0)  # older than 3 probe intervals: the detector's thread is stuck, no evidence
    assert m.decide(p, eobs(age=7.0)).state == m.STANDBY
    p["edge"] = edge(1099.0, down=False)
    assert m.decide(p, eobs(age=7.0)).state == m.STANDBY


def test_a_primary_whose_beats_show_it_alive_is_not_suspected_from_the_edge():
    """After a recovery the standby is deactivated while the primary's connector is still stopped (beats
    say serving: null) or starting (not ready yet): nobody serves for a while, and the edge sees it, but
    that is no reason to fence the primary. Only k x P seconds without a beat showing it alive are."""
    p = state(edge=edge(1099.0))
    # the agent's heartbeat age: since the last beat showing it alive (serving true or null), or since start
    assert m.decide(p, eobs(age=4.0)).state == m.STANDBY  # a beat 4 s ago (connector being started)
    assert m.decide(p, eobs(age=5.9)).state == m.STANDBY  # 5.9 s < window 6 s
    assert m.decide(p, eobs(age=6.1)).state == m.SUSPECT  # only "not ready" beats since: suspected


def test_edge_suspicion_activates_once_the_lease_provably_ended_without_waiting_for_ssh():
    p = state(m.SUSPECT, since=1099.0, edge=edge(1099.0), witness=witness(at=1099.5, public=530),
              lease=lease(1090.0, seconds=9.0))
    d = m.decide(p, eobs(now=1099.6))  # lease ends at 1099.25: the kernel already stops the primary
    assert d.state == m.ACTIVATING and d.actions == (m.ACTIVATE,)
    p["lease"] = lease(1098.0, seconds=9.0)  # runs to 1107.25: fence over SSH meanwhile (background)
    d = m.decide(p, eobs(now=1099.6))
    assert d.state == m.SUSPECT and d.actions == (m.FENCE,)
    d = m.decide(p, eobs(now=1100.0, fence_running=True))  # SSH hangs (host gone): wait, do not block
    assert d.state == m.SUSPECT and d.actions == () and "lease runs" in d.reason
    d = m.decide(p, eobs(now=1107.3, fence_running=True))  # the lease ended first
    assert d.state == m.ACTIVATING


def test_the_primary_back_before_activation_ends_the_suspicion():
    p = state(m.SUSPECT, since=1099.0, edge=edge(1099.0), witness=witness(at=1099.5, public=530),
              lease=lease(1098.0, seconds=9.0))
    m.note_serving(p, {"serving": True}, 1100.0)
    assert m.decide(p, eobs(now=1100.1)).state == m.STANDBY
    # ... but never while our SSH fence is under way: it may stop the primary (both sides down)
    d = m.decide(p, eobs(now=1100.1, fence_running=True))
    assert d.state == m.SUSPECT and d.actions == ()
    p["fence"] = fence(1099.6, ok=True)
    assert m.decide(p, eobs(now=1101.0)).state == m.ACTIVATING


def test_while_suspecting_a_primary_cut_from_the_edge_gets_no_lease():
    beat = {"epoch": 1, "lease": {"seconds": 10, "enforced": True}, "serving": False}
    # not suspecting: a lapsed or starting connector needs its lease to reach the edge at all
    assert m.grant_lease(state(m.STANDBY), beat, 1100.0)
    assert m.grant_lease(state(m.STANDBY, edge=edge(1100.0)), beat, 1100.0)
    for name in (m.SUSPECT, m.FENCE_BLOCKED):
        assert not m.grant_lease(state(name), beat, 1100.0)
        # connector stopped (our SSH fence stopping it, say): no grant either; ready at the edge: granted
        assert not m.grant_lease(state(name), dict(beat, serving=None), 1100.0)
        assert m.grant_lease(state(name), dict(beat, serving=True), 1100.0)
    assert not m.grant_lease(state(m.ACTIVATING), dict(beat, serving=True), 1100.0)


def test_an_active_standby_resumes_the_steps_left_after_active():
    p = state(m.ACTIVE, activation={"steps": {"epoch": {"status": "done"}}, "active_at": 1000.0})
    assert m.decide(p, eobs()).actions == (m.CHECK_WITNESS, m.ACTIVATE)  # tunnel, readiness; watched meanwhile
    p["activation"].update(error="tunnel: not ready", last_attempt_at=1095.0)
    assert m.decide(p, eobs()).actions == (m.CHECK_WITNESS,)  # retried after retry_seconds, watched meanwhile
    assert m.decide(p, eobs(now=1106.0)).actions == (m.CHECK_WITNESS, m.ACTIVATE)
    p["activation"]["completed_at"] = 1001.0
    assert m.ACTIVATE not in m.decide(p, eobs(now=1106.0)).actions


def test_the_grace_after_a_deactivation_holds_the_heartbeat_detector_only():
    """After a recovery (deactivate: recheck_after one threshold away) a primary that then crashes is taken
    over from the edge without waiting out the threshold; a refusal's short wait holds both detectors."""
    p = state(recheck_after=1150.0, edge=edge(1099.0))
    d = m.decide(p, eobs(age=100.0))
    assert d.state == m.SUSPECT and "edge lost the primary" in d.reason
    p["edge"] = None
    assert m.decide(p, eobs(age=100.0)).state == m.STANDBY  # heartbeat detector: waits for the grace
    p.update(edge=edge(1099.0), last_refusal="connector-attached", recheck_after=1100.4)
    assert m.decide(p, eobs(age=100.0)).state == m.STANDBY
    assert m.decide(p, eobs(now=1100.5, age=100.0)).state == m.SUSPECT


# the edge's verdict over the primary's own (issue 10: a primary cut from the edge only) --------------------
def down_verdict(at, down=True, since=None):
    """A fresh edge verdict as wirebot.edgewatch records it (probe interval 2 s, k = 3), "down" since ``since``
    (default: long enough for the grace of k x P + L)."""
    return dict(edge(at, down), interval=2.0, down_since=(at - 100.0 if since is None else since) if down else None)


def test_the_primarys_own_view_counts_for_the_grace_after_the_edges_verdict():
    """Loss on the primary's path to the edge (soak, lab 4): its connector's keepalive hung 5 s, the edge
    expired it, the verdict said down 1 s later; the connector said "ready" until its own timeout and
    registered again a second later. It gets k x P + L (6 s + the 10 s lease it asked for) to do so."""
    beat = {"epoch": 1, "lease": {"seconds": 10, "enforced": True}, "serving": True}
    p = state(m.STANDBY, since=900.0, last_serving_at=1000.0, lease=lease(1099.0, seconds=10.0),
              edge=down_verdict(1110.0, since=1100.0))
    m.note_serving(p, beat, 1110.0)
    assert p["last_serving_at"] == 1110.0 and m.grant_lease(p, beat, 1110.0)  # 10 s < 16 s: still believed
    p["edge"] = down_verdict(1116.5, since=1100.0)
    m.note_serving(p, beat, 1116.5)
    assert p["last_serving_at"] == 1110.0 and not m.grant_lease(p, beat, 1116.5)  # 16.5 s: the edge routes


def test_a_ready_connector_the_edge_has_lost_does_not_keep_the_primary_alive():
    """The primary's connector says ready (it has not noticed its cut yet); the edge has listed no connector of
    it and answered 5xx on k probes in a row: the edge routes, so the beat shows nothing alive."""
    p = state(m.STANDBY, since=900.0, last_serving_at=1000.0, edge=down_verdict(1099.0))
    m.note_serving(p, {"serving": True}, 1100.0)
    assert p["last_serving_at"] == 1000.0
    m.note_serving(p, {"serving": None}, 1100.5)  # stopped (a recovery starting it): alive, as before
    assert p["last_serving_at"] == 1100.5
    p["edge"] = down_verdict(1093.0)  # stale (the detector's thread stuck): no evidence, the beat counts
    m.note_serving(p, {"serving": True}, 1101.0)
    assert p["last_serving_at"] == 1101.0
    p["edge"] = down_verdict(1101.0, down=False)  # the edge shows it again (a flap): it counts
    m.note_serving(p, {"serving": True}, 1102.0)
    assert p["last_serving_at"] == 1102.0


def test_while_the_edge_says_down_no_lease_is_granted_and_it_comes_back_with_the_edge():
    beat = {"epoch": 1, "lease": {"seconds": 10, "enforced": True}, "serving": True}
    for name in (m.STANDBY, m.SUSPECT, m.FENCE_BLOCKED):
        p = state(name, edge=down_verdict(1099.0))
        assert not m.grant_lease(p, beat, 1100.0) and "lease" not in p
        assert not m.grant_lease(p, dict(beat, serving=False), 1100.0)
        p["edge"] = down_verdict(1100.0, down=False)  # the edge lists it again before any activation
        assert m.grant_lease(p, beat, 1100.5) and p["lease"]["granted_at"] == 1100.5
    # a stopped connector (a recovery, the keeper's restart after a long lapse) needs its lease to start
    assert m.grant_lease(state(m.STANDBY, edge=down_verdict(1099.0)), dict(beat, serving=None), 1100.0)
    # once the activation is decided, the edge coming back changes nothing
    p = state(m.ACTIVATING, edge=down_verdict(1100.0, down=False))
    assert not m.grant_lease(p, beat, 1100.5)


def test_an_edge_only_cut_activates_when_the_ungranted_lease_ends_not_when_ssh_finishes():
    """Lab run before the fix: SUSPECT 3.3 s after the cut, then 10.9 s waiting for the SSH fence (the
    gateway's stop), because the fence record makes the primary's beats say null ("alive"). The lease, not
    granted since the edge's verdict, ends first and is the fence."""
    p = state(m.SUSPECT, since=1099.0, edge=down_verdict(1099.0), witness=witness(at=1099.1, public=530),
              lease=lease(1099.0, seconds=2.0))
    m.note_serving(p, {"serving": None}, 1100.0)  # our SSH fence wrote its record: "not meant to serve"
    d = m.decide(p, eobs(now=1100.5, fence_running=True))
    assert d.state == m.SUSPECT and d.actions == () and "waiting for the SSH fence" in d.reason
    d = m.decide(p, eobs(now=1101.3, fence_running=True))  # 1099 + 2 + 0.25 margin passed
    assert d.state == m.ACTIVATING and d.actions == (m.ACTIVATE,) and "lease ran out" in d.reason
    # the witness saw the primary serve: never, whatever the lease says
    p["witness"] = witness(at=1099.1, public=200)
    assert m.decide(p, eobs(now=1101.3, fence_running=True)).state == m.SUSPECT


def test_a_flapping_edge_view_needs_the_verdict_to_hold_a_window_before_suspecting():
    """serving: true beats are ignored only while the edge says down; the suspicion then still needs a whole
    window (k x P) without a beat showing the primary alive: a verdict that drops in between starts over."""
    p = state(m.STANDBY, since=900.0, last_serving_at=1099.0, edge=down_verdict(1099.0))
    m.note_serving(p, {"serving": True}, 1100.0)  # ignored
    assert m.decide(p, eobs(now=1101.0, age=2.0)).state == m.STANDBY  # 2 s < window 6 s
    p["edge"] = down_verdict(1102.0, down=False)  # the connector is back at the edge
    m.note_serving(p, {"serving": True}, 1102.5)
    assert p["last_serving_at"] == 1102.5
    p["edge"] = down_verdict(1104.0)
    assert m.decide(p, eobs(now=1104.0, age=1.5)).state == m.STANDBY
    assert m.decide(p, eobs(now=1108.6, age=6.1)).state == m.SUSPECT


def test_a_primary_whose_beats_arrive_but_say_not_serving_is_suspected_with_that_reason():
    """Cut from the edge at the lab's timings (D = 3 s < E + k P = 4 s): the heartbeat detector may fire first,
    on beats that arrive but say the connector cannot reach the edge; its reason says so (not "no valid
    heartbeat", which is a silent primary)."""
    p = state(m.STANDBY, since=900.0, last_heartbeat={"received_at": 1099.5, "sequence": 7})
    d = m.decide(p, obs(now=1100.0, age=T + 1))
    assert d.state == m.SUSPECT and d.reason.startswith("no heartbeat showing the primary serving for 91s")
    p["last_heartbeat"]["received_at"] = 1000.0  # silent for 100 s
    assert m.decide(p, obs(now=1100.0, age=T + 1)).reason.startswith("no valid heartbeat for 91s")

"""The standby's pure state machine: decide(persisted state, observation) -> Decision. No I/O here.

States::

    STANDBY --(no valid heartbeat for miss_threshold*interval)--> SUSPECT
    STANDBY --(edge detector: the primary's connector gone from the API and the public endpoint failing
            on probe_failures consecutive probes; wirebot.standby.edgewatch)--> SUSPECT
    SUSPECT --(valid heartbeat)--> STANDBY
    SUSPECT --(witness: primary serves the public / its connector is attached)--> STANDBY (+alert,
            watch: looked at again one edge probe interval later, never a threshold later)
    SUSPECT --(witness clear, fence established)--> ACTIVATING
    SUSPECT --(witness clear, no fence)--> FENCE_BLOCKED (+alert)
    FENCE_BLOCKED --(valid heartbeat)--> STANDBY;  --(fence established on a re-check)--> ACTIVATING
    ACTIVATING --(fenced, restored, first services healthy; done by wirebot.standby.activation)--> ACTIVE
    ACTIVE --(activation steps left: the tunnel, then the remaining services' readiness)--> ACTIVE
    ACTIVE --(POST /deactivate; done by the agent)--> STANDBY

"Fence established" means: the primary's kernel-enforced serving lease, last granted by this standby,
has run out (``lease_expired``: then no SSH is needed, a frozen host cannot answer it anyway), or the SSH
fence command (run in the background: the lease may end first) confirmed the primary's
connector, gateway and scoreboard loaded, stopped and masked. The
witness's "no connection from another origin" is never a fence: absent is not fenced (docs/fencing.md).
An ACTIVE standby asks the witness every ``watch_seconds`` and fences at once when another origin's
connector shows up.

The agent runs decide, performs the requested actions (check_witness, fence, activate) and records
their results in the persisted state (``witness``, ``fence``, ``activation``), then decides again; so
decide only ever reads the persisted state and the observation.
"""

import collections

from wirebot.common import layout

STANDBY = "STANDBY"
SUSPECT = "SUSPECT"
ACTIVATING = layout.ACTIVATING
ACTIVE = layout.ACTIVE
FENCE_BLOCKED = "FENCE_BLOCKED"
STATES = (STANDBY, SUSPECT, ACTIVATING, ACTIVE, FENCE_BLOCKED)

CHECK_WITNESS = "check_witness"
FENCE = "fence"
ACTIVATE = "activate"

# now: wall clock; heartbeat_age: seconds since the last valid heartbeat (or since the agent started,
# whichever is later); threshold: miss_threshold * interval_seconds; retry_seconds: how long a failed
# fence/witness/activation result stands before it is tried again.
# watch_seconds: how often an ACTIVE standby asks the witness (the continuous watch).
# probe_seconds: the edge detector's probe interval (a fresh verdict is at most 3 of them old; a refused
# suspicion is looked at again this much later). fence_running: an SSH fence is under way (background).
Observation = collections.namedtuple(
    "Observation", "now heartbeat_age threshold retry_seconds watch_seconds probe_seconds fence_running",
    defaults=(None, None, False))
LEASE_MARGIN = 0.25  # seconds added to a granted lease before it counts as expired here (clock rates)

# state: next state; reason: why (logged, shown on /status); actions: I/O for the agent to perform;
# alerts: (kind, message) pairs; updates: persisted keys to set.
Decision = collections.namedtuple("Decision", "state reason actions alerts updates")


def default_state():
    """The state file's content when it does not exist yet."""
    return {"state": STANDBY, "epoch": 1, "since": 0.0, "reason": "initial state", "last_heartbeat": None,
            "last_sequence": 0, "last_control_sequence": 0, "activation": {}, "witness": None,
            "fence": None, "manual_request": None, "last_manual": None, "recheck_after": 0.0,
            "last_refusal": None}


def _decision(state, reason, actions=(), alerts=(), **updates):
    return Decision(state, reason, tuple(actions), tuple(alerts), updates)


def _fresh(result, after):
    """``result`` when it was taken at or after ``after``, else None."""
    if isinstance(result, dict) and result.get("at") is not None and result["at"] >= after:
        return result
    return None


def edge_says_down(data, now):
    """The edge detector's verdict when it says "down", is fresh (at most 3 probe intervals old) and has held for
    the primary's grace (``window + L``: k x P plus the lease length the primary last asked for), else None.
    "Down": the public endpoint failed and the API listed no connector of the primary on k consecutive probes
    (wirebot.standby.edgewatch). The grace is what a connector on a lossy path gets to notice its lost link and
    register again (its keepalive times out first; it says "ready" until then); a connector cut from the edge
    never comes back in it. Not yet the suspicion (``edge_down`` also wants no beat showing the primary
    alive)."""
    edge = data.get("edge") or {}
    interval = edge.get("interval")
    if not edge.get("down") or not interval or edge.get("at") is None or edge["at"] < now - 3 * interval:
        return None
    grace = (edge.get("window") or 0) + float((data.get("lease") or {}).get("seconds") or 0)
    since = edge.get("down_since")
    if since is None or now - since < grace:
        return None
    return edge


def grant_lease(data, body, now):
    """Record and answer a heartbeat's lease request (called under the state lock, with the heartbeat).

    Granted only while this standby watches (STANDBY, SUSPECT, FENCE_BLOCKED: a heartbeat takes the
    last two back to STANDBY before any activation), no operator activation is pending, and the
    primary's epoch is not older than ours. Because the grant and the move to ACTIVATING happen under
    the same lock, no lease is granted once an activation has been decided. While the standby suspects
    the primary (SUSPECT, FENCE_BLOCKED), only a beat whose connector is ready at the edge (``serving:
    true``) gets a grant: a primary cut from the edge (false), or whose units our SSH fence is stopping
    (null), lets its lease run out, which proves the fence even when SSH cannot or is slow. (In STANDBY it is
    granted: a connector that lost its lease, or a recovery starting it, needs it to reach the edge.)

    Once the edge detector's fresh verdict has said "down" for the primary's grace (``edge_says_down``: no
    connector of the primary at the edge and the public endpoint failing, k probes in a row, for k x P + L
    more), a beat saying its connector is ready or not ready (true, false) gets no grant in any state: the
    primary's own view lags the edge's (its connector notices a cut late), so its lease runs out at most
    k x P + 2 L after the edge's verdict, whatever the primary believes. The grants come
    back with the first beat after the edge shows the primary again - unless the standby has decided to
    activate meanwhile (then never). A beat saying null (connector stopped: a recovery starting it, the
    lease keeper's restart after a long lapse) keeps its grant in STANDBY. The record
    {"granted_at", "seconds", "enforced"} lets ``lease_expired`` prove the primary stopped serving."""
    lease = body.get("lease") if isinstance(body.get("lease"), dict) else {}
    seconds = lease.get("seconds")
    if (data["state"] not in (STANDBY, SUSPECT, FENCE_BLOCKED) or data.get("manual_request")
            or body.get("epoch", 0) < data["epoch"] or not isinstance(seconds, (int, float))
            or isinstance(seconds, bool) or seconds <= 0):
        return False
    if data["state"] in (SUSPECT, FENCE_BLOCKED) and body.get("serving") is not True:
        return False
    if body.get("serving") is not None and edge_says_down(data, now):
        return False
    data["lease"] = {"granted_at": now, "seconds": float(seconds), "enforced": lease.get("enforced") is True}
    return True


def note_serving(data, body, now):
    """Record when the primary last looked alive: a heartbeat whose ``serving`` is not False (its connector
    is ready at the edge, or not meant to run: stopped, fenced). A primary that heartbeats while its
    running connector cannot reach the edge (cut from the edge only) is not alive for detection; nor is one
    whose beats say its connector is ready while the edge detector's fresh verdict has said, for the grace of
    k x P + L, that the edge has had no connector of it and no answer on k probes in a row
    (``edge_says_down``): its connector has not noticed the cut yet (cloudflared has its own timeouts), and
    the edge is what routes the users."""
    serving = body.get("serving")
    if serving is False or (serving is True and edge_says_down(data, now)):
        return
    data["last_serving_at"] = now


def alive_at(p):
    """When the primary last looked alive (``note_serving``), falling back to the last heartbeat."""
    received = (p.get("last_heartbeat") or {}).get("received_at") or 0
    return p.get("last_serving_at") or received


def edge_down(p, o):
    """The edge detector's verdict when it says "down", is fresh (at most 3 probe intervals old), and no beat
    has shown the primary alive (``note_serving``) for its window (failures x probe interval): a primary whose
    beats say its connector is ready, or not meant to run (stopped, or being started by a recovery), is not
    suspected from the edge."""
    edge = p.get("edge") or {}
    if not edge.get("down") or not o.probe_seconds or edge.get("at") is None:
        return None
    if edge["at"] < o.now - 3 * o.probe_seconds:
        return None
    # heartbeat_age: since the last beat showing the primary alive, or since this agent started
    return edge if o.heartbeat_age >= (edge.get("window") or 0) else None


def lease_expired(p, now):
    """(expired, reason): has the last lease this standby granted run out, enforced by the primary's
    kernel? Unknown (never granted, or the primary does not enforce it) is not expired."""
    lease = p.get("lease") or {}
    if not lease.get("enforced"):
        return False, "no kernel-enforced lease known from the primary"
    ends = lease["granted_at"] + lease["seconds"] + LEASE_MARGIN
    if now < ends:
        return False, f"the primary's lease runs {ends - now:.1f}s more"
    return True, f"the primary's kernel-enforced lease ran out {now - ends:.1f}s ago"


def fence_satisfied(witness_result, fence_result, lease=(False, "no lease known")):
    """(ok, reason): is the primary known to have stopped serving? Its lease ran out (its own kernel
    drops its serving traffic and it cannot be renewed any more), or the fence command over SSH
    confirmed its units loaded, stopped and masked. A connector the witness cannot see is absent, not
    fenced: the witness alone never satisfies the fence."""
    expired, lease_why = lease
    ssh_ok = bool(fence_result and fence_result.get("ok"))
    if ssh_ok:
        return True, "fence command over SSH confirmed the primary's units stopped and masked"
    if expired:
        return True, lease_why
    ssh_text = (fence_result or {}).get("error") or "not attempted"
    problems = ((fence_result or {}).get("reply") or {}).get("problems")
    if problems:
        ssh_text += " (" + "; ".join(problems)[:300] + ")"
    api = (witness_result or {}).get("api") or {}
    if not api.get("configured"):
        api_text = "API check not configured"
    elif not api.get("ok"):
        api_text = "API check failed ({})".format(api.get("error"))
    elif api.get("other_origins"):
        api_text = "API shows connections from {}".format(", ".join(api.get("other_origins") or []))
    else:
        api_text = "API shows no connection from another origin, but absent is not fenced"
    return False, f"cannot fence the primary: {lease_why}; {api_text}; SSH fence failed ({ssh_text})"


def _refusal(witness_result):
    """(kind, reason) when the witness says the primary is alive, else None."""
    if witness_result.get("primary_serving"):
        status = witness_result["public"].get("status")
        return "primary-serving", f"the public endpoint is served (HTTP {status}) while our connector is down"
    if witness_result.get("other_connector"):
        return "connector-attached", "the primary's connector is attached ({})".format(
            ", ".join(witness_result["api"].get("other_origins") or []))
    return None


def _manual(p, o):
    request = p["manual_request"]
    label = "operator activation ({})".format(request.get("reason") or "no reason given")
    if request.get("force"):
        return _decision(ACTIVATING, "forced " + label + ": fence skipped", [ACTIVATE],
                         manual_request=None, last_manual=dict(request, outcome="activating"))
    w = _fresh(p.get("witness"), request["requested_at"])
    if w is None:
        return _decision(p["state"], label + ": checking the witness for the fence", [CHECK_WITNESS])
    f = _fresh(p.get("fence"), request["requested_at"])
    if f is None:
        return _decision(p["state"], label + ": fencing the primary over SSH", () if o.fence_running else [FENCE])
    ok, why = fence_satisfied(w, f, lease_expired(p, o.now))
    if ok:
        return _decision(ACTIVATING, label + ": " + why, [ACTIVATE], manual_request=None,
                         last_manual=dict(request, outcome="activating"))
    return _decision(FENCE_BLOCKED, label + " refused: " + why, alerts=[("fence-blocked", why)],
                     manual_request=None, last_manual=dict(request, outcome="fence-blocked"))


def activation_pending(state) -> bool:
    """ACTIVE is recorded before the tunnel and the ready step: steps on record without ``completed_at`` mean
    the activation is still finishing (or to be resumed). ``state``: the state file's data or /status."""
    activation = state.get("activation") or {}
    return bool(activation.get("steps")) and not activation.get("completed_at")


def _active(p, o):
    decision = _watch(p, o)
    activation = p.get("activation") or {}
    if activation_pending(p):  # the tunnel or readiness left
        last = activation.get("last_attempt_at")
        if not (activation.get("error") and last is not None and o.now - last < o.retry_seconds):
            return decision._replace(actions=decision.actions + (ACTIVATE,))
    return decision


def _watch(p, o):
    """The continuous watch of an ACTIVE standby."""
    w = _fresh(p.get("witness"), o.now - (o.watch_seconds or o.threshold))
    if w is None:
        return _decision(ACTIVE, p["reason"], [CHECK_WITNESS])
    if not w.get("other_connector"):
        return _decision(ACTIVE, p["reason"], last_refusal=None) if p.get("last_refusal") else \
            _decision(ACTIVE, p["reason"])
    why = "another origin's connector is attached while we are ACTIVE ({})".format(
        ", ".join(w["api"].get("other_origins") or []))
    alerts = [] if p.get("last_refusal") == "split-brain" else [("split-brain", why)]
    if _fresh(p.get("fence"), w["at"]) is None:
        return _decision(ACTIVE, p["reason"], [FENCE], alerts, last_refusal="split-brain")
    return _decision(ACTIVE, p["reason"], (), alerts, last_refusal="split-brain")


def decide(p, o):
    """The next Decision for persisted state ``p`` and Observation ``o``. Pure: no I/O, no clock."""
    state = p["state"]
    if state == ACTIVE:
        return _active(p, o)
    if state == ACTIVATING:
        activation = p.get("activation") or {}
        last = activation.get("last_attempt_at")
        if activation.get("error") and last is not None and o.now - last < o.retry_seconds:
            return _decision(ACTIVATING, p["reason"])
        return _decision(ACTIVATING, p["reason"], [ACTIVATE])
    if p.get("manual_request"):
        return _manual(p, o)
    heartbeat = p.get("last_heartbeat") or {}
    if state == STANDBY:
        if p.get("last_refusal") and alive_at(p) > p["since"]:
            return _decision(STANDBY, "heartbeats resumed after a refused activation", last_refusal=None)
        # recheck_after: a refusal's short wait (one probe interval) holds both detectors; the grace after a
        # deactivation (a threshold, until heartbeats resume) holds only the heartbeat one: the edge detector
        # already waits for k x P without a beat showing the primary alive
        waiting = o.now < (p.get("recheck_after") or 0)
        if o.heartbeat_age > o.threshold and not waiting:
            received = heartbeat.get("received_at")
            if received is not None and o.now - received <= o.threshold:  # beats arrive, none shows it serving
                return _decision(SUSPECT, f"no heartbeat showing the primary serving for {o.heartbeat_age:.0f}s "
                                 f"(threshold {o.threshold:.0f}s; its beats say its connector cannot reach the "
                                 "edge): asking the witness", [CHECK_WITNESS])
            return _decision(SUSPECT, f"no valid heartbeat for {o.heartbeat_age:.0f}s "
                             f"(threshold {o.threshold:.0f}s): asking the witness", [CHECK_WITNESS])
        edge = edge_down(p, o)
        if edge and not (waiting and p.get("last_refusal")):
            return _decision(SUSPECT, f"the edge lost the primary ({edge['summary']}): asking the witness",
                             [CHECK_WITNESS])
        return _decision(STANDBY, p["reason"])
    # SUSPECT or FENCE_BLOCKED
    fenced = _fresh(p.get("fence"), p["since"])
    if fenced and fenced.get("ok"):  # we stopped the primary ourselves: we serve, whatever it says next
        return _decision(ACTIVATING, "primary not serving; fence command over SSH confirmed its units "
                         "stopped and masked", [ACTIVATE], last_refusal=None)
    if alive_at(p) > p["since"] and o.fence_running:  # never back to STANDBY with a fence under way
        # our SSH fence makes the primary's beats say "not meant to serve" (null) while it stops its units
        # (the gateway: 10 s and more); its lease, not granted while we suspect, is the faster proof
        lease = lease_expired(p, o.now)
        w = _fresh(p.get("witness"), p["since"] if state == SUSPECT else o.now - o.retry_seconds)
        if lease[0] and w is not None and not _refusal(w):
            return _decision(ACTIVATING, "primary down ({}); {} (the SSH fence still stopping its units)".format(
                w.get("summary"), lease[1]), [ACTIVATE], last_refusal=None)
        return _decision(state, "the primary looks alive again; waiting for the SSH fence under way")
    if alive_at(p) > p["since"]:
        return _decision(STANDBY, "valid heartbeat received (sequence {}) while {}".format(
            heartbeat.get("sequence"), state), last_refusal=None)
    fresh_after = p["since"] if state == SUSPECT else o.now - o.retry_seconds
    w = _fresh(p.get("witness"), fresh_after)
    if w is None:
        return _decision(state, p["reason"], [CHECK_WITNESS])
    refusal = _refusal(w)
    lease = lease_expired(p, o.now)
    if refusal:
        kind, why = refusal
        # Looked at again one probe interval later, never a threshold later: a connector still listed after
        # a crash is one the edge has not expired yet.
        wait = o.probe_seconds or o.watch_seconds or o.threshold
        alerts = [] if p.get("last_refusal") == kind else [("activation-refused", "not activating: " + why)]
        return _decision(STANDBY, f"not activating: {why}; watching, re-check in {wait:.0f}s",
                         (), alerts, recheck_after=o.now + wait, last_refusal=kind)
    f = _fresh(p.get("fence"), fresh_after)
    if lease[0] and not (f and f.get("ok")):  # fenced by its own kernel: no need to wait for SSH
        return _decision(ACTIVATING, "primary down ({}); {}".format(w.get("summary"), lease[1]), [ACTIVATE],
                         last_refusal=None)
    if f is None and o.fence_running:
        return _decision(state, "witness clear ({}): fencing the primary over SSH; {}".format(
            w.get("summary"), lease[1]))
    if f is None:
        reason = p["reason"] if state == FENCE_BLOCKED else "witness clear ({}): fencing the primary".format(
            w.get("summary"))
        return _decision(state, reason, [FENCE])
    ok, why = fence_satisfied(w, f, lease)
    if ok:
        return _decision(ACTIVATING, "primary down ({}); {}".format(w.get("summary"), why), [ACTIVATE],
                         last_refusal=None)
    if state == FENCE_BLOCKED:
        return _decision(FENCE_BLOCKED, why)
    return _decision(FENCE_BLOCKED, why, (), [("fence-blocked", "automatic activation blocked: " + why)])

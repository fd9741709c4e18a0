"""HTTP endpoints of the standby agent (see wirebot.common.httpapi for the server, wirebot.common.channel for the two
listeners: the peer listener, mutual TLS from the primary only, serves ``peer_routes``; the local
control socket serves ``local_routes``, the only place control requests are accepted).

* ``POST /heartbeat`` (peer listener only) - signed with the heartbeat key for "heartbeat primary ->
  standby, POST /heartbeat"; only from heartbeat.allowed_sources (else 403). Refusals: 401
  (missing/malformed/bad-signature/stale), 409 (replayed: sequence not above the last accepted,
  persisted as ``last_sequence``), 400 (body not {node, sent_at, sequence, epoch, ...} or its sequence
  differs from the signed header). Accepted: 200 {"ok", "state", "epoch", "lease"}; the body is kept as
  ``last_heartbeat`` (plus received_at, source); a lease beat (``"kind": "lease"``, wirebot.primary.heartbeat)
  updates it without dropping the last full heartbeat's status. While STANDBY/SUSPECT/FENCE_BLOCKED a higher
  heartbeat epoch is adopted as ours.
* ``POST /activate`` {"force": bool, "reason": str} (local socket only) - signed with this host's
  control key for "control operator -> standby, POST /activate"; 202 {"accepted", "id", "state"}: the
  tick loop fences (unless force) and activates; ``last_manual`` on /status says what became of request
  ``id``. 200 when already ACTIVE.
* ``POST /deactivate`` {"epoch": N} (local socket only) - signed like /activate, for its own path;
  from ACTIVE, ACTIVATING (a stuck activation needs a way out), FENCE_BLOCKED or SUSPECT: stops the
  tunnel and the services (reverse order), state STANDBY at epoch N.
  N must be >= our epoch (equal is accepted so a retried recovery is idempotent; lower ->
  409). Already STANDBY at epoch N -> 200 unchanged; other STANDBY -> 409.
* ``GET /status`` (with ``connections``: each listener's refused and open connections), ``GET /health``,
  ``GET /metrics`` (both listeners; the peer listener admits the primary
  only, so nobody else reads them).
Control POSTs use their own key and their own sequence (``last_control_sequence``), so they never collide with
heartbeats.
"""

import uuid

from wirebot.common import channel, layout, metrics, signing
from wirebot.common.httpapi import HttpError
from wirebot.common.log import log
from wirebot.standby import activation, machine
from wirebot.standby import activation_steps as steps

_HEARTBEAT_FIELDS = {"node": str, "sent_at": (int, float), "sequence": int, "epoch": int}
_SIGNATURE_STATUS = {"replayed": 409}


def _reject(agent, reason, status, message, client):
    agent.rejected[reason] = agent.rejected.get(reason, 0) + 1
    log("standby", "heartbeat-rejected", level="warning", reason=reason, client=client, detail=message)
    raise HttpError(status, f"{reason}: {message}")


def _verify(agent, verifier, request, sequence_key):
    """Check the signature with ``verifier``; persist the sequence. Call with the store lock held."""
    try:
        sequence = verifier.verify(request.method, request.path, request.headers, request.body,
                                   now=agent.clock())
    except signing.SignatureError as exc:
        return None, exc
    agent.store.data[sequence_key] = sequence
    return sequence, None


def heartbeat(agent, request):
    client = request.client
    if client not in agent.settings["allowed_sources"]:
        _reject(agent, "source", 403, f"{client} is not in heartbeat.allowed_sources", client)
    with agent.store.lock:
        sequence, error = _verify(agent, agent.heartbeat_verifier, request, "last_sequence")
        if error is not None:
            _reject(agent, error.reason, _SIGNATURE_STATUS.get(error.reason, 401), str(error), client)
        agent.store.save()
        try:
            body = request.json()
        except HttpError:
            _reject(agent, "malformed-body", 400, "body is not a JSON object", client)
        for name, kind in _HEARTBEAT_FIELDS.items():
            if not isinstance(body.get(name), kind) or isinstance(body.get(name), bool):
                _reject(agent, "malformed-body", 400, f"field {name} missing or of the wrong type", client)
        if body["sequence"] != sequence:
            _reject(agent, "malformed-body", 400, "body sequence differs from the signed sequence", client)
        data = agent.store.data
        if body.get("kind") == "lease":  # a lease beat: the last full heartbeat's status stays
            data["last_heartbeat"] = dict(data.get("last_heartbeat") or {}, **body, received_at=agent.clock(),
                                          source=client)
        else:
            data["last_heartbeat"] = dict(body, received_at=agent.clock(), source=client)
        state = data["state"]
        watching = state in (machine.STANDBY, machine.SUSPECT, machine.FENCE_BLOCKED)
        if watching and body["epoch"] > data["epoch"]:
            log("standby", "epoch-adopted", previous=data["epoch"], epoch=body["epoch"])
            data["epoch"] = body["epoch"]
        machine.note_serving(data, body, data["last_heartbeat"]["received_at"])
        granted = machine.grant_lease(data, body, agent.clock())  # under the store lock: see standby_machine
        alert = layout.serving(state) and not data.get("primary_alive_alerted")
        if alert:
            data["primary_alive_alerted"] = True
        agent.store.save()
        epoch = data["epoch"]
    agent.accepted += 1
    if alert:
        agent.alerter.send("primary-alive", f"heartbeat from {body['node']} (epoch {body['epoch']}) while "
                           f"this standby is {state} at epoch {epoch}: the primary should be fenced; "
                           "recover it with tasks/recovery.py", state=state)
    return 200, {"ok": True, "state": state, "epoch": epoch, "lease": {"granted": granted}}


def _control(agent, request):
    with agent.store.lock:
        _, error = _verify(agent, agent.control_verifier, request, "last_control_sequence")
        if error is not None:
            log("standby", "control-rejected", level="warning", reason=error.reason, client=request.client,
                path=request.path)
            raise HttpError(_SIGNATURE_STATUS.get(error.reason, 401), f"{error.reason}: {error}")
        agent.store.save()
    return request.json()


def activate(agent, request):
    body = _control(agent, request)
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise HttpError(400, "force must be true or false")
    reason = str(body.get("reason") or "")[:200]
    with agent.store.lock:
        data = agent.store.data
        if data["state"] == machine.ACTIVE and machine.activation_pending(data):
            return 202, {"accepted": True, "id": None, "state": data["state"], "epoch": data["epoch"],
                         "message": "ACTIVE, the tunnel or the services' readiness still finishing"}
        if data["state"] == machine.ACTIVE:
            return 200, {"accepted": False, "state": data["state"], "epoch": data["epoch"],
                         "message": "already ACTIVE"}
        if data["state"] == machine.ACTIVATING:
            return 202, {"accepted": True, "id": None, "state": data["state"],
                         "message": "activation already in progress"}
        request_id = uuid.uuid4().hex
        data["manual_request"] = {"id": request_id, "force": force, "reason": reason,
                                  "requested_at": agent.clock(), "client": request.client}
        agent.store.save()
        state = data["state"]
    log("standby", "activation-requested", id=request_id, force=force, reason=reason, client=request.client)
    agent.wake.set()
    return 202, {"accepted": True, "id": request_id, "state": state}


def deactivate(agent, request):
    body = _control(agent, request)
    epoch = body.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
        raise HttpError(400, "epoch must be a positive integer")
    agent.deactivation_requested.set()  # a running activation's readiness wait gives the lock back now
    try:
        return _deactivate(agent, epoch)
    finally:
        agent.deactivation_requested.clear()


def _deactivate(agent, epoch):
    with agent.activation_lock:
        with agent.store.lock:
            state, current = agent.store.data["state"], agent.store.data["epoch"]
        if state == machine.STANDBY:
            if epoch == current:
                return 200, {"state": state, "epoch": current, "changed": False}
            raise HttpError(409, f"already STANDBY at epoch {current}")
        if epoch < current:
            raise HttpError(409, f"epoch {epoch} is lower than our epoch {current}")
        try:
            activation.deactivate(agent.settings, agent.store, epoch, clock=agent.clock)
        except steps.StepError as exc:
            log("standby", "deactivate-failed", level="error", error=str(exc))
            raise HttpError(502, f"deactivation failed, state unchanged: {exc}") from None
        with agent.store.lock:
            agent.store.data["primary_alive_alerted"] = False
            agent.store.save()
    log("standby", "state-change", previous=state, state=machine.STANDBY, epoch=epoch,
        reason=f"deactivated by operator; primary holds epoch {epoch}")
    return 200, {"state": machine.STANDBY, "epoch": epoch, "changed": True}


def status(agent, request):
    snap = agent.store.snapshot()
    now = agent.clock()
    heartbeat_at = (snap.get("last_heartbeat") or {}).get("received_at")
    age = agent.heartbeat_age(now)
    return 200, {
        "node": agent.settings["node_name"], "state": snap["state"], "epoch": snap["epoch"],
        "since": snap["since"], "seconds_in_state": round(now - snap["since"], 3), "reason": snap["reason"],
        "last_heartbeat": snap.get("last_heartbeat"),
        "last_heartbeat_age_seconds": round(now - heartbeat_at, 3) if heartbeat_at else None,
        "misses": int(age // agent.settings["interval_seconds"]),
        "miss_threshold": agent.settings["miss_threshold"], "recheck_after": snap.get("recheck_after"),
        "witness": snap.get("witness"), "fence": snap.get("fence"), "activation": snap.get("activation"),
        "edge": snap.get("edge"), "lease": snap.get("lease"),
        "manual_request": snap.get("manual_request"), "last_manual": snap.get("last_manual"),
        "heartbeats": {"accepted": agent.accepted, "rejected": dict(agent.rejected)},
        "connections": channel.stats(agent.servers),
    }


METRICS_HELP = {
    "epoch": "the epoch the standby holds",
    "seconds_since_heartbeat": "seconds since the last accepted heartbeat from the primary",
    "heartbeats_accepted_total": "heartbeats accepted from the primary",
    "state": "1 for the standby agent's current state (STANDBY, SUSPECT, ACTIVATING, ACTIVE, ...), else 0",
    "heartbeats_rejected_total": "heartbeats refused, by reason",
    "activation_step_seconds": "seconds the step of the last activation took",
}


def metrics_text(agent, request):
    snap = agent.store.snapshot()
    heartbeat_at = (snap.get("last_heartbeat") or {}).get("received_at")
    steps_seconds = [({"step": name}, rec.get("seconds"))
                     for name, rec in sorted(((snap.get("activation") or {}).get("steps") or {}).items())]
    return 200, metrics.render("wirebot_standby", {
        "epoch": snap["epoch"],
        "seconds_since_heartbeat": (agent.clock() - heartbeat_at) if heartbeat_at else None,
        "heartbeats_accepted_total": agent.accepted,
    }, {
        "state": [({"state": s}, 1 if snap["state"] == s else 0) for s in machine.STATES],
        "heartbeats_rejected_total": [({"reason": r}, n) for r, n in sorted(agent.rejected.items())],
        "activation_step_seconds": steps_seconds,
    }, METRICS_HELP)


def peer_routes(agent):
    """What the primary may ask over mutual TLS: heartbeats and reads, never a control request."""
    return {
        ("POST", "/heartbeat"): lambda r: heartbeat(agent, r),
        ("GET", "/status"): lambda r: status(agent, r),
        ("GET", "/health"): lambda r: (200, {"ok": True}),
        ("GET", "/metrics"): lambda r: metrics_text(agent, r),
    }


def local_routes(agent):
    """The local control socket: control requests and reads (no heartbeats: they come from the primary)."""
    return {
        ("POST", "/activate"): lambda r: activate(agent, r),
        ("POST", "/deactivate"): lambda r: deactivate(agent, r),
        ("GET", "/status"): lambda r: status(agent, r),
        ("GET", "/health"): lambda r: (200, {"ok": True}),
        ("GET", "/metrics"): lambda r: metrics_text(agent, r),
    }

"""The one activation code path: restore -> files -> services -> epoch (ACTIVE) -> tunnel -> ready.

What ACTIVE means: the fence holds (the state machine entered ACTIVATING only then), the replicated data is
restored, every service has been started and the ones needed before the tunnel (``ready_before_tunnel``,
the scoreboard) answer their health URL, and the new epoch is recorded. ACTIVE is on record (and so
answered to the primary's next beat) BEFORE the tunnel starts: the standby's connector can serve nothing
before it. The tunnel step then starts the connector and waits for its /ready; the ready step waits for the
remaining services (the real gateway's /readyz: 10-30 s on a loaded host). ``completed_at`` is set when
both are done; until then the agent resumes the activation (state ACTIVE, steps left).

Used by the standby agent (state ACTIVATING), by ``python3 -m wirebot.standby.activation --config
/etc/wirebot/standby.yml [--force] [--reason R] [--wait S]`` and so by tasks/failover.py. When the
agent is running (it holds ``<state_file>.lock``) the CLI hands the request to it (signed POST
/activate, exactly like ``wirebot.hosttools.ctl activate``) instead of racing it.

Progress lives in the state file under ``activation``: ``steps.<name>`` = {status: running|done|failed,
started_at, seconds, detail|error}. Steps marked done are skipped, so a killed activation resumes.
``services_begun`` is persisted *before* the first service starts; from then on the restore and
file steps never run again for this activation, so a resume never restores over data written
after activation. Each step failure leaves the state ACTIVATING with ``activation.error`` set; the
agent retries after ``activation.retry_seconds``.

Missing replicas: a DB without a replica in the highest epoch dir is logged and skipped, never an
error (also events.db): availability of the AI comes first, surfaces keep their events locally and
the recovery merge brings standby rows back; the "activated" alert lists the skipped DBs.
"""

import argparse
import fcntl
import json
import os
import sys
import time

from wirebot.common import config, layout, statefile
from wirebot.common.alerts import Alerter
from wirebot.common.log import log
from wirebot.standby import activation_steps as steps
from wirebot.standby import agent_config as standby_config
from wirebot.standby import fencing, witness
from wirebot.standby import machine as standby_machine

STEPS = ("restore", "files", "services", "epoch", "tunnel", "ready")


def enter_activating(data, reason, now, forced=False):
    """Move state ``data`` into ACTIVATING with a fresh activation record (call with the store lock)."""
    data.update(state=standby_machine.ACTIVATING, since=now, reason=reason)
    data["activation"] = {"started_at": now, "reason": reason, "forced": bool(forced), "steps": {},
                          "attempts": 0, "services_begun": False, "error": None}


def _restore(settings):
    act = dict(settings["activation"], replica_root=settings["replica_root"], data_root=settings["data_root"])
    steps.check_replica(settings["replica_root"], act["file_sync_paths"])  # before anything is stopped
    for svc in reversed(act["services"]):  # nothing may hold a DB open while it is replaced
        steps.systemctl(act["systemctl"], "stop", svc["unit"], act["timeout_seconds"])
    epoch, plan, skipped = steps.plan_restores(act)
    for path in skipped:
        log("activation", "restore-skipped", level="warning", db=path, reason="no replica in the highest "
            "epoch dir", epoch_dir=epoch)
    restored = [steps.restore_db(act["litestream_binary"], replica, live) for replica, live in plan]
    return {"epoch_dir": epoch, "restored": restored, "skipped": skipped}


def _files(settings):
    act = settings["activation"]
    steps.check_replica(settings["replica_root"], act["file_sync_paths"])
    return steps.copy_files(settings["replica_root"], act["file_sync_paths"])


def _services(settings):
    """Start every service (in order, without waiting between them), then wait for the health of the
    ones needed before the tunnel."""
    act = settings["activation"]
    for svc in act["services"]:  # the ones awaited after the tunnel are not waited for here at all
        verb = "start" if svc.get("ready_before_tunnel", True) else "--no-block start"
        steps.systemctl(act["systemctl"], verb, svc["unit"], act["timeout_seconds"])
    waited = {svc["unit"]: steps.wait_http(svc["health_url"], act["timeout_seconds"])
              for svc in act["services"] if svc.get("ready_before_tunnel", True)}
    return {"healthy_after_seconds": waited}


def _ready(settings, cancelled=lambda: None):
    """Wait for the services not needed before the tunnel (the gateway's /readyz); stop waiting once
    ``cancelled()`` gives a reason (the standby was deactivated meanwhile)."""
    act = settings["activation"]
    waited = {svc["unit"]: steps.wait_http(svc["health_url"], act["timeout_seconds"], cancelled=cancelled)
              for svc in act["services"] if not svc.get("ready_before_tunnel", True)}
    return {"healthy_after_seconds": waited}


def _tunnel(settings):
    tunnel = settings["activation"]["tunnel"]
    act = settings["activation"]
    steps.systemctl(act["systemctl"], "start", tunnel["unit"], act["timeout_seconds"])
    return {"ready_after_seconds": steps.wait_http(tunnel["ready_url"], act["timeout_seconds"],
                                                   steps.tunnel_ready)}


def _cancelled(store, act, stop):
    """Why the ready step stops waiting, or None: a deactivation is pending, or this activation is over."""
    if stop is not None and stop.is_set():
        return "deactivation requested"
    if store.data.get("activation") is not act or store.data.get("state") != standby_machine.ACTIVE:
        return "deactivated"
    return None


RUNNERS = {"restore": _restore, "files": _files, "services": _services, "tunnel": _tunnel, "ready": _ready}


def _finish(store, alerter, now):
    with store.lock:
        data = store.data
        act = data["activation"]
        heartbeat_epoch = int((data.get("last_heartbeat") or {}).get("epoch") or 0)
        new_epoch = max(int(data.get("epoch") or 1), heartbeat_epoch) + 1
        timings = {name: act["steps"].get(name, {}).get("seconds") for name in STEPS[:STEPS.index("epoch")]}
        skipped = ((act["steps"].get("restore") or {}).get("detail") or {}).get("skipped") or []
        act["steps"]["epoch"] = {"status": "done", "started_at": now, "seconds": 0.0,
                                 "detail": {"epoch": new_epoch}}
        act.update(active_at=now, epoch=new_epoch, error=None,
                   total_seconds=round(now - act.get("started_at", now), 3))
        reason = f"activated at epoch {new_epoch} ({act.get('reason')})"
        data.update(state=standby_machine.ACTIVE, epoch=new_epoch, since=now, reason=reason)
        store.save()
    log("activation", "activated", epoch=new_epoch, step_seconds=timings, skipped_dbs=skipped)
    text = ", ".join(f"{k} {v:.1f}s" for k, v in timings.items() if v is not None)
    alerter.send("activated", f"standby is ACTIVE at epoch {new_epoch} ({text}); starting the tunnel",
                 epoch=new_epoch, skipped_dbs=len(skipped))


def run(settings, store, alerter, clock=time.time, stop=None):
    """Run (or resume) the activation recorded in ``store``; True when the state is ACTIVE. ``stop`` (a
    threading.Event) set by a pending deactivation ends the ready step's wait at once: the deactivation
    waits for this run to return, so it cannot change the state the wait watches first."""
    with store.lock:
        state = store.data.get("state")
        act = store.data.get("activation") or {}
        if state == standby_machine.ACTIVE and not standby_machine.activation_pending(store.data):
            return True
        if not layout.serving(state):
            log("activation", "not-activating", level="warning", state=state,
                reason="state is no longer ACTIVATING (deactivated?): nothing to do")
            return False
        act = store.data.setdefault("activation", {})
        act.setdefault("steps", {})
        act.setdefault("started_at", clock())
        act["attempts"] = int(act.get("attempts") or 0) + 1
        act["last_attempt_at"] = clock()
        store.save()
    for name in STEPS:
        record = act["steps"].get(name) or {}
        if record.get("status") == "done":
            continue
        if name == "epoch":
            _finish(store, alerter, clock())
            continue
        if name in ("restore", "files") and act.get("services_begun"):
            log("activation", "step-not-repeated", level="warning", step=name,
                reason="services already started for this activation: never restore over their writes")
            continue
        started = time.monotonic()
        with store.lock:
            act["steps"][name] = {"status": "running", "started_at": clock()}
            if name == "services":
                act["services_begun"] = True
            store.save()
        log("activation", "step-start", step=name, attempt=act["attempts"])
        try:
            if name == "ready":
                detail = RUNNERS[name](settings, cancelled=lambda: _cancelled(store, act, stop))
            else:
                detail = RUNNERS[name](settings)
        except (steps.StepError, OSError) as exc:
            error = f"{name}: {exc}"
            with store.lock:
                act["steps"][name].update(status="failed", error=str(exc),
                                          seconds=round(time.monotonic() - started, 3))
                act["error"] = error
                first = act.get("alerted_error") != error
                act["alerted_error"] = error
                store.save()
            log("activation", "step-failed", level="error", step=name, error=str(exc))
            if first and isinstance(exc, steps.ReplicaRefused):
                alerter.send("replica-refused", f"activation step {error}; remove what it names from the "
                             "replica tree (the activation retries)", step=name)
            elif first:
                alerter.send("activation-failed", f"activation step {error}; retrying", step=name)
            return False
        with store.lock:
            act["steps"][name].update(status="done", seconds=round(time.monotonic() - started, 3),
                                      detail=detail)
            act["error"] = None
            store.save()
        log("activation", "step-done", step=name, seconds=act["steps"][name]["seconds"])
    with store.lock:
        act["completed_at"] = clock()
        store.save()
    log("activation", "completed", seconds=round(act["completed_at"] - act.get("started_at", act["completed_at"]), 3))
    return store.data.get("state") == standby_machine.ACTIVE


def deactivate(settings, store, epoch, clock=time.time):
    """Stop the tunnel, then the services in reverse; state STANDBY at ``epoch``. StepError on failure."""
    act = settings["activation"]
    steps.systemctl(act["systemctl"], "stop", act["tunnel"]["unit"], act["timeout_seconds"])
    for svc in reversed(act["services"]):
        steps.systemctl(act["systemctl"], "stop", svc["unit"], act["timeout_seconds"])
    with store.lock:
        previous = store.data.get("state")
        store.data.update(state=standby_machine.STANDBY, epoch=int(epoch), since=clock(),
                          reason=f"deactivated (was {previous}); primary holds epoch {epoch}",
                          activation={}, manual_request=None, last_refusal=None,
                          recheck_after=clock() + settings["interval_seconds"] * settings["miss_threshold"])
        store.save()


def try_lock(state_file):
    """Hold ``<state_file>.lock`` exclusively (the running agent does); an fd, or None if held."""
    os.makedirs(os.path.dirname(os.path.abspath(state_file)), exist_ok=True)
    fd = os.open(layout.lock_file(state_file), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def standalone(settings, store, alerter, force, reason, wait):
    """Activate without a running agent (fence first unless ``force``); returns an exit code."""
    state = store.data.get("state")
    if state == standby_machine.ACTIVE:
        return 0
    if state != standby_machine.ACTIVATING:
        why = "fence skipped (--force)"
        if not force:
            token = config.read_secret(settings["cloudflare_api_token_file"])
            w = witness.check(settings["witness"], token)
            f = fencing.fence(settings["primary"])
            ok, why = standby_machine.fence_satisfied(
                w, f, standby_machine.lease_expired(store.data, time.time()))
            with store.lock:
                store.data.update(witness=w, fence=f)
                if not ok:
                    store.data.update(state=standby_machine.FENCE_BLOCKED, since=time.time(), reason=why)
                store.save()
            if not ok:
                alerter.send("fence-blocked", "operator activation refused: " + why)
                return 1
        with store.lock:
            enter_activating(store.data, f"operator activation ({reason or 'no reason given'}): {why}",
                             time.time(), force)
            store.save()
    deadline = time.monotonic() + wait
    while not run(settings, store, alerter):
        if time.monotonic() >= deadline:
            return 1
        time.sleep(min(settings["activation"]["retry_seconds"], max(0.1, deadline - time.monotonic())))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m wirebot.standby.activation",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="/etc/wirebot/standby.yml")
    parser.add_argument("--force", action="store_true", help="skip the fence (the operator's decision)")
    parser.add_argument("--reason", default="", help="why (logged, alerted)")
    parser.add_argument("--wait", type=float, default=300.0, help="seconds to wait for ACTIVE")
    args = parser.parse_args(argv)
    try:
        settings = standby_config.load(args.config)
    except config.ConfigError as exc:
        print(f"wirebot.standby.activation: {exc}", file=sys.stderr)
        return 2
    lock = try_lock(settings["state_file"])
    if lock is None:  # the agent runs: let it do the work
        from wirebot.hosttools import ctl

        return ctl.activate(settings, args.force, args.reason, args.wait)
    try:
        store = statefile.Store(settings["state_file"], standby_machine.default_state())
        alerter = Alerter("activation", config.read_secret(settings["discord_webhook_file"]))
        code = standalone(settings, store, alerter, args.force, args.reason, args.wait)
        snap = store.snapshot()
        print(json.dumps({"ok": code == 0, "state": snap["state"], "epoch": snap["epoch"],
                          "reason": snap["reason"], "activation": snap.get("activation")}, indent=2))
        return code
    finally:
        os.close(lock)


if __name__ == "__main__":
    sys.exit(main())

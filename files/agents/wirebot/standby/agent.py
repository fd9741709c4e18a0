"""The standby agent: ``python3 -m wirebot.standby.agent --config /etc/wirebot/standby.yml``.

Every tick (at most 0.5 s) it observes (heartbeat age, the edge detector's verdict, persisted state),
decides with the pure wirebot.standby.machine, and acts (witness check, SSH fence, activation). The edge
detector (wirebot.standby.edgewatch) probes in its own thread; the SSH fence runs in its own thread too, so a host
that never answers SSH does not hold the tick while the primary's lease runs out. Decisions
are logged as one JSON line each time the state or its reason changes, and shown on GET /status.
HTTP endpoints are in wirebot.standby.api. The process holds ``<state_file>.lock`` for its lifetime so
``python3 -m wirebot.standby.activation`` knows to hand requests to it.
"""

import argparse
import os
import signal
import sys
import threading
import time

from wirebot.common import channel, config, signing, statefile
from wirebot.common.alerts import Alerter
from wirebot.common.log import log
from wirebot.standby import activation, edgewatch, fencing, machine, witness
from wirebot.standby import agent_config as standby_config
from wirebot.standby import api as standby_api

COMPONENT = "standby"
JOIN_SECONDS = 0.2  # how long a tick waits for the SSH fence's (or activation's) thread before going on


class StandbyAgent:
    """State, verifiers, counters and the observe/decide/act tick. I/O functions are injectable."""

    def __init__(self, settings, clock=time.time, witness_fn=None, fence_fn=None, activation_fn=None):
        self.settings = settings
        self.clock = clock
        self.witness_fn = witness_fn or (lambda s, token, now: witness.check(s, token, now=now))
        self.fence_fn = fence_fn or (lambda s, now: fencing.fence(s, now=now))
        self.activation_fn = activation_fn or activation.run
        self.store = statefile.Store(settings["state_file"], machine.default_state())
        if self.store.data.get("state") not in machine.STATES:
            raise config.ConfigError("{}: unknown state {!r}".format(settings["state_file"],
                                                                      self.store.data.get("state")))
        window = settings["clock_window_seconds"]
        data = self.store.data
        self.heartbeat_verifier = signing.Verifier(
            signing.load_key(settings["hmac_key_file"]), window,
            channel.heartbeat_binding(settings["heartbeat_sender"], settings["node_name"]),
            data.get("last_sequence") or 0)
        self.control_verifier = signing.Verifier(
            signing.load_key(settings["channel"]["control_key_file"]), window,
            channel.control_binding(settings["node_name"]), data.get("last_control_sequence") or 0)
        self.alerter = Alerter(COMPONENT, config.read_secret(settings["discord_webhook_file"]))
        self.started_at = clock()
        self.accepted = 0
        self.rejected = {}
        self.activation_lock = threading.Lock()
        # set by POST /deactivate while it waits for activation_lock: the activation's ready step (it holds the
        # lock while awaiting the gateway, up to minutes) stops waiting and returns the lock at once
        self.deactivation_requested = threading.Event()
        self.wake = threading.Event()
        self.servers = []  # the two listeners (wirebot.common.channel), once serving
        self.threshold = settings["interval_seconds"] * settings["miss_threshold"]
        data = self.store.data
        if not data.get("since"):
            data["since"] = self.started_at
        data["edge"] = None  # a verdict from before a restart is no evidence
        self.fence_thread = None
        self.activation_thread = None
        self.join_seconds = JOIN_SECONDS
        self.store.save()  # the deploy and the gate read state/epoch from it: make sure it exists
        log(COMPONENT, "started", state=data["state"], epoch=data["epoch"], reason=data.get("reason"),
            last_sequence=self.heartbeat_verifier.last_sequence)

    # observe -------------------------------------------------------------------------------------
    def heartbeat_age(self, now=None):
        """Seconds since the last valid heartbeat that showed the primary alive (standby_machine.alive_at),
        or since this agent started if later."""
        now = self.clock() if now is None else now
        return now - max(machine.alive_at(self.store.data), self.started_at)

    def observe(self):
        now = self.clock()
        return machine.Observation(now=now, heartbeat_age=self.heartbeat_age(now), threshold=self.threshold,
                                   retry_seconds=self.settings["activation"]["retry_seconds"],
                                   watch_seconds=self.settings["watch_seconds"],
                                   probe_seconds=self.settings["edge"]["probe_interval_seconds"],
                                   fence_running=self.fence_running())

    def fence_running(self):
        return self.fence_thread is not None and self.fence_thread.is_alive()

    # the edge detector -----------------------------------------------------------------------------
    def watching(self):
        return self.store.data.get("state") in (machine.STANDBY, machine.SUSPECT, machine.FENCE_BLOCKED)

    def record_edge(self, verdict):
        """The edge detector's verdict, kept in memory with the state (saved with its next change); a
        "down" wakes the tick at once."""
        with self.store.lock:
            self.store.data["edge"] = verdict
        if verdict["down"]:
            self.wake.set()

    def edge_watch(self):
        return edgewatch.Watch(self.settings, lambda: config.read_secret(self.settings["cloudflare_api_token_file"]),
                               self.watching, self.record_edge, clock=self.clock)

    # decide + apply ------------------------------------------------------------------------------
    def _apply(self, decision, now):
        data = self.store.data
        previous, old_reason = data["state"], data.get("reason")
        changed = decision.state != previous
        data.update(decision.updates)
        if changed and decision.state == machine.ACTIVATING:
            forced = bool((decision.updates.get("last_manual") or {}).get("force"))
            activation.enter_activating(data, decision.reason, now, forced)
        elif changed:
            data.update(state=decision.state, since=now, reason=decision.reason)
        else:
            data["reason"] = decision.reason
        if changed:
            log(COMPONENT, "state-change", level="warning" if decision.state != machine.STANDBY else "info",
                previous=previous, state=decision.state, reason=decision.reason, epoch=data["epoch"])
        elif decision.reason != old_reason:
            log(COMPONENT, "decision", state=decision.state, reason=decision.reason)
        if changed or decision.updates or decision.reason != old_reason:
            self.store.save()

    def tick(self):
        """One observe -> decide -> act round (repeated while actions produce new facts)."""
        for _ in range(6):
            with self.store.lock:
                obs = self.observe()
                decision = machine.decide(self.store.data, obs)
                self._apply(decision, obs.now)
                epoch = self.store.data["epoch"]
            for kind, message in decision.alerts:
                self.alerter.send(kind, message, state=decision.state, epoch=epoch)
            if not decision.actions:
                return decision
            for action in decision.actions:
                self._act(action)
            if machine.ACTIVATE in decision.actions:
                return decision
        return decision

    # act -------------------------------------------------------------------------------------------
    def _act(self, action):
        if action == machine.CHECK_WITNESS:
            token = config.read_secret(self.settings["cloudflare_api_token_file"])
            settings = self.settings["witness"]
            with self.store.lock:
                expired = machine.lease_expired(self.store.data, self.clock())[0]
            if expired and self.store.data["state"] != machine.ACTIVE:
                # the primary's kernel drops its serving traffic: a public probe could only wait on a stale
                # connector at the edge; the API alone says whether the edge still lists it
                settings = dict(settings, public_url=None)
            result = self.witness_fn(settings, token, self.clock())
            with self.store.lock:
                previous = self.store.data.get("witness") or {}
                routine = self.store.data["state"] == machine.ACTIVE and previous.get("summary") == result["summary"]
                self.store.data["witness"] = result
                self.store.save()
            if not routine:  # an ACTIVE standby's periodic watch logs only what changed
                log(COMPONENT, "witness-checked", summary=result.get("summary"),
                    primary_serving=result.get("primary_serving"), other_connector=result.get("other_connector"),
                    api_clear=result.get("api_clear"))
        elif action == machine.FENCE:
            if not self.fence_running():
                self.fence_thread = threading.Thread(target=self._fence, name="fence", daemon=True)
                self.fence_thread.start()
            self.fence_thread.join(self.join_seconds)  # a quick answer is used in this tick
        elif action == machine.ACTIVATE:
            # the activation (its last step waits for the gateway's readiness: up to minutes) runs beside the
            # tick, which keeps watching the witness once ACTIVE; a quick one is seen in this tick
            if self.activation_thread is None or not self.activation_thread.is_alive():
                self.activation_thread = threading.Thread(target=self._activate, name="activation", daemon=True)
                self.activation_thread.start()
            self.activation_thread.join(self.join_seconds)

    def _activate(self):
        with self.activation_lock:
            self.activation_fn(self.settings, self.store, self.alerter, clock=self.clock,
                               stop=self.deactivation_requested)

    def _fence(self):
        """The SSH fence (its own thread); its result is recorded and wakes the tick."""
        try:
            result = self.fence_fn(self.settings["primary"], self.clock())
        except Exception as exc:  # noqa: BLE001 - a failed fence is a result, not a crash
            result = {"at": self.clock(), "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        log(COMPONENT, "fence-attempted", ok=result.get("ok"), error=result.get("error"),
            target=result.get("target"), seconds=result.get("seconds"))
        with self.store.lock:
            self.store.data["fence"] = result
            self.store.save()
        self.wake.set()

    def tick_seconds(self):
        return min(0.5, self.settings["interval_seconds"] / 4.0, self.settings["watch_seconds"],
                   self.settings["edge"]["probe_interval_seconds"])

    def next_wait(self):
        """Seconds until the next tick: ``tick_seconds``, or less when the missed-heartbeat threshold runs
        out sooner, so that detector fires on time rather than up to a tick late (part of the RTO)."""
        wait = self.tick_seconds()
        with self.store.lock:
            due = self.threshold - self.heartbeat_age()
        if 0 <= due < wait:
            wait = due + 0.005  # just past it: the machine needs an age above the threshold
        return wait

    def run(self, stop):
        """Tick until ``stop`` (an Event) is set; a failing tick is logged and the loop goes on. The edge
        detector's thread runs beside it."""
        self.edge_watch().start(stop)
        while not stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - the agent must keep watching
                log(COMPONENT, "tick-error", level="error", error=f"{type(exc).__name__}: {exc}")
            self.wake.wait(self.next_wait())
            self.wake.clear()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m wirebot.standby.agent", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="/etc/wirebot/standby.yml")
    args = parser.parse_args(argv)
    stop = threading.Event()
    holder = {}

    def _stop(signum, _frame):
        log(COMPONENT, "stopping", signal=signum)
        stop.set()
        if "agent" in holder:
            holder["agent"].wake.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        settings = standby_config.load(args.config)
        lock = activation.try_lock(settings["state_file"])
        if lock is None:
            raise config.ConfigError("{}.lock is held: another standby agent or activation is running".format(
                settings["state_file"]))
        agent = holder["agent"] = StandbyAgent(settings)
        servers = agent.servers = channel.serve(
            settings["channel"], settings["listen_address"], settings["listen_port"], standby_api.peer_routes(agent),
            standby_api.local_routes(agent), settings["allowed_sources"], COMPONENT, settings["max_body_bytes"])
    except config.ConfigError as exc:
        log(COMPONENT, "config-error", level="error", error=str(exc))
        print(f"wirebot.standby.agent: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        log(COMPONENT, "listen-failed", level="error", error=str(exc),
            reason="cannot bind the API address or the control socket; systemd will retry")
        print(f"wirebot.standby.agent: {exc}", file=sys.stderr)
        return 1
    try:
        agent.run(stop)
    finally:
        channel.stop(servers)
        os.close(lock)
    return 0


if __name__ == "__main__":
    sys.exit(main())

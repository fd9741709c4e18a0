"""The drill of one pyinfra run: its prepare-time checks, its operations' bodies, and its report.

tasks/drill.py registers each step as a python.call on both hosts; `Drill.op` runs the body once, on
the primary while pyinfra still counts it as active, else on the standby (a failed recovery fails the
primary's host, a failed failover the standby's: the remaining steps, the log and the alert still run).
The seed's steps 3 (failover) and 7-8 (recovery) are the incident playbooks' own operations
(tasks/playbooks); the drill marks when they start and end and reads their timeline.
"""

import atexit
import json
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from pyinfra.facts.files import File
from wirebot.common import layout

from tasks.core import pairs, paths
from tasks.core.ops import WirebotState
from tasks.drills import drill_settings, drill_steps, public, report

REFUSE_STATES = layout.SERVING_STATES
_RUNS = {}  # id(pyinfra state) -> Drill


class Refused(Exception):
    """The drill will not start; the message says why, and what to do."""


def iso(ts) -> str:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Drill:
    """One drill: settings, the two hosts, the surface, timestamps ("marks") and the report."""

    def __init__(self, state, primary, standby, data):
        self.state, self.primary, self.standby, self.data = state, primary, standby, data
        self.settings = drill_settings.load(data)
        self.base = drill_settings.public_base(data, self.settings)
        self.origin_header = data.get("edge_origin_header") or ""  # "" on Cloudflare: no origin in answers
        self.id = str(uuid.uuid4())
        self.local_dir = Path(self.settings["drill_local_dir"])
        self.run_dir = self.local_dir / "drills" / self.id
        self.steps = {s["n"]: s for s in report.new_steps()}
        self.marks = {}
        self.surface = None
        self.events = {}
        self.epoch = {"before": None, "after": None}
        self.calls = {}
        self.finished = False
        self.report = None
        self.pair = None  # the pair's name (tasks/core/pairs.py), set by for_run

    # --- prepare time ---
    @classmethod
    def for_run(cls, state, inventory, host):
        """The drill of this pyinfra run, checked once (Refused: nothing was changed)."""
        drill = _RUNS.get(id(state))
        if drill is None:
            chosen = pairs.selected(state, inventory, "the fire drill")  # one pair: `--limit NAME`
            drill = cls(state, chosen.primary, chosen.standby, chosen.primary.data)
            drill.pair = chosen.name
            _RUNS[id(state)] = drill
            drill.refuse_unless_ready()
            atexit.register(drill.at_exit)
        return drill

    def refuse_unless_ready(self) -> None:
        """Refused unless both hosts answer, the standby is not serving, the primary is not fenced and
        the public endpoint answers: a drill starts from the normal state only."""
        for role, h in (("primary", self.primary), ("standby", self.standby)):
            if h is None or h not in self.state.active_hosts:
                raise Refused(f"the {role} host is not reachable: a drill needs both hosts")
        path = paths.state_file(self.data)
        standby_state = self.standby.get_fact(WirebotState, path=path) or {}
        if standby_state.get("state") in REFUSE_STATES:
            raise Refused(f"the standby is {standby_state['state']} at epoch {standby_state.get('epoch')} "
                          f"({standby_state.get('reason', 'no reason recorded')}): an incident is on, or a "
                          "failover was not recovered. Nothing was changed. When the primary is back, run "
                          "`pyinfra inventory.py tasks/recovery.py`, then the drill")
        if self.primary.get_fact(File, path=paths.fenced_file(self.data)):
            raise Refused("the primary is fenced (fenced.json present): a failover was not recovered. Nothing "
                          "was changed; run `pyinfra inventory.py tasks/recovery.py` first")
        prefix, header = drill_settings.public_url(self.base, self.settings["drill_api_hostname"])
        ok, detail = public.health(prefix, header, timeout=self.settings["drill_surface_timeout_seconds"],
                                   origin_header=self.origin_header)
        if not ok:
            raise Refused(f"the public endpoint {self.settings['drill_api_hostname']} does not answer /health "
                          f"({detail}): nothing to drill against. Nothing was changed")
        self.epoch["before"] = {"primary": (self.primary.get_fact(WirebotState, path=path) or {}).get("epoch", 1),
                                "standby": standby_state.get("epoch", 1)}

    # --- execution time ---
    def executor(self):
        active = self.state.active_hosts
        return self.primary if self.primary in active else self.standby

    def op(self, key, body, abort_on_failure=False):
        """A python.call function: `body()` runs once per run (see module doc); with abort_on_failure, a
        False result fails every host, so pyinfra runs nothing after it (the incident steps included)."""

        def call(state, host):
            entry = self.calls.setdefault(key, {"done": threading.Event(), "host": self.executor(),
                                                "result": None})
            if host is entry["host"]:
                try:
                    entry["result"] = body()
                finally:
                    entry["done"].set()
            else:
                entry["done"].wait()
            return entry["result"] is not False or not abort_on_failure

        call.__name__ = f"drill_{key}"
        return call

    def mark(self, name):
        """A python.call function recording when the run reached this point (e.g. before a playbook)."""
        return self.op(name, lambda: self.marks.__setitem__(name, time.time()))

    def recovery_done(self, deactivation, reconnection) -> None:
        """After the recovery playbook's operations: seed steps 7 and 8 from its timeline."""
        self.marks["recovery_end"] = time.time()
        self.run_step(7, deactivation)
        self.run_step(8, reconnection)

    def run_step(self, n, body, skip_if=()):
        """Run step `n`'s body (returns (ok, detail) or (ok, detail, seconds) when the work happened
        elsewhere, e.g. in a playbook); record status, seconds and detail; never raises."""
        step = self.steps[n]
        blocked = [m for m in skip_if if self.steps[m]["status"] != report.OK]
        if blocked:
            step.update(status=report.SKIPPED, detail=f"step {blocked[0]} did not succeed")
            return False
        started = time.monotonic()
        self.marks[f"step{n}_start"] = time.time()
        seconds = None
        try:
            ok, detail, *elsewhere = body(self)
            seconds = elsewhere[0] if elsewhere else None
        except Exception as error:  # a drill step reports its failure and the drill goes on
            ok, detail = False, f"{type(error).__name__}: {error}"
        self.marks[f"step{n}_end"] = time.time()
        seconds = round(time.monotonic() - started if seconds is None else seconds, 3)
        step.update(status=report.OK if ok else report.FAILED, seconds=seconds, detail=str(detail)[:1000])
        print(f"fire drill step {n} ({step['name']}): {step['status']} in {seconds:.1f}s: {detail}", flush=True)
        return ok

    # --- the report ---
    def build_report(self) -> dict:
        marks, transitions = self.marks, (self.surface.transitions() if self.surface else [])
        outage_start = marks.get("step1_start")
        offline_at = next((t["at"] for t in transitions if outage_start and t["at"] >= outage_start
                           and t["state"] == "offline"), None)
        back_at = next((t["at"] for t in transitions if offline_at and t["at"] > offline_at
                        and t["state"] in ("syncing", "online")), None)

        def span(a, b):
            return None if a is None or b is None else round(b - a, 3)

        r = {"drill": "fire-drill", "drill_id": self.id, "started_at": iso(marks.get("started")),
             "finished_at": iso(time.time()),
             "hosts": {"primary": getattr(self.primary, "name", None), "standby": getattr(self.standby, "name", None),
                       "pair": self.pair},
             "seconds": {"detection": span(outage_start, offline_at),
                         "activation": self.steps[3]["seconds"],
                         "outage": span(offline_at, back_at),
                         "end_to_end": span(outage_start, marks.get("step9_end"))},
             "events": self.events, "epoch": self.epoch,
             "surface": {**(self.surface.stats() if self.surface else {}), "transitions": [
                 {"at": iso(t["at"]), "state": t["state"], "detail": t["detail"][:160]} for t in transitions]},
             "steps": [dict(self.steps[n]) for n in sorted(self.steps)]}
        return report.settle(r)

    def write_local(self, line: str) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "report.json").write_text(json.dumps(json.loads(line), indent=2, sort_keys=True) + "\n")
        with open(self.local_dir / "fire-drill.log", "a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    def finish(self) -> bool:
        """The last operation: the final report (local copy), True when the drill passed."""
        self.finished = True
        self.report = self.build_report()
        self.write_local(report.json_line(self.report))
        return self.report["result"] == "passed"

    def at_exit(self) -> None:
        """Print the summary last; when the run stopped early, still report what is known."""
        if not self.marks.get("started"):
            return
        if not self.finished:
            if self.surface:
                self.surface.stop()
            note = "the drill stopped early"
            if self.marks.get("step1_start") and not self.marks.get("recovery_end"):
                note += ("; the primary's connector may still be stopped and the standby active: run "
                         "`pyinfra inventory.py tasks/recovery.py` to hand traffic back")
            for step in self.steps.values():
                if step["status"] == report.SKIPPED and not step["detail"]:
                    step["detail"] = note
            if self.steps[10]["status"] == report.SKIPPED:
                self.run_step(10, self._log_after_disconnect)
            if self.steps[11]["status"] in (report.SKIPPED, report.PENDING):
                self.run_step(11, drill_steps.alert)
            self.report = report.settle(self.build_report(), "failed")
            self.report["note"] = note
            self.write_local(report.json_line(self.report))
        print("\n" + report.human_summary(self.report))
        print(f"JSON line: {self.local_dir / 'fire-drill.log'} (control machine)"
              + (f", {self.log_path()} on {self.primary.name}" if self.steps[10]["status"] == report.OK else ""))
        print(report.json_line(self.report), flush=True)

    def _log_after_disconnect(self, _drill):
        """Step 10 when pyinfra stopped early: reconnect to the primary and append the line there."""
        if not self.primary.connected:
            self.primary.connect(reason="to log the stopped fire drill", show_errors=False)
        return drill_steps.log(self)

    def log_path(self) -> str:
        return f"{self.data.wirebot_log_dir}/fire-drill.log"

"""Pure decisions of the incident playbooks: what the facts say is left to do, and what to refuse.

Nothing here does I/O, so every rule is unit-tested (tests/unit/tasks/playbooks/test_model.py). A "todo" is a
short text saying what a step still has to do, or None when its state already holds.
"""

import json
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set

from wirebot.common import layout
from wirebot.standby import machine

SERVING = ("active", "activating", "reloading")
STARTED, STOPPED, VERIFIED, DONE = "started.json", "1-stopped.json", "3-verified.json", "7-done.json"


class Refusal(Exception):
    """The playbook will not act: the message says why and what it would need."""


def parse_snapshot(lines: List[str]) -> dict:
    """The HostSnapshot fact's output as plain data."""
    view = {"state": {}, "units": {}, "fenced": False, "markers": {}, "helper": False, "litestream_sha": None}
    for line in lines:
        word, _, rest = line.strip().partition(" ")
        if word == "STATE":
            try:
                state = json.loads(rest or "{}")
            except ValueError:
                state = {}
            view["state"] = state if isinstance(state, dict) else {}
        elif word == "UNIT":
            parts = rest.split()
            if parts:
                view["units"][parts[0]] = {"active": parts[1] if len(parts) > 1 else "unknown",
                                           "enabled": parts[2] if len(parts) > 2 else ""}
        elif word == "FENCED":
            view["fenced"] = True
        elif word == "MARKERS":
            parts = rest.split()
            if parts and parts[0].startswith("epoch-") and parts[0][6:].isdigit():
                view["markers"][int(parts[0][6:])] = sorted(parts[1:])
        elif word == "HELPER":
            view["helper"] = True
        elif word == "LITESTREAM":
            view["litestream_sha"] = rest.strip() or None
    return view


@dataclass
class HostView:
    """One host as the playbooks see it; reachable False means no facts could be read."""

    name: str
    reachable: bool = True
    state: dict = field(default_factory=dict)
    units: Dict[str, dict] = field(default_factory=dict)
    fenced: bool = False
    markers: Dict[int, List[str]] = field(default_factory=dict)
    helper: bool = True
    litestream_sha: Optional[str] = None

    @classmethod
    def from_snapshot(cls, name: str, snapshot: Optional[dict]) -> "HostView":
        if snapshot is None:
            return cls(name, reachable=False)
        return cls(name, True, snapshot.get("state") or {}, snapshot.get("units") or {},
                   bool(snapshot.get("fenced")), {int(k): list(v) for k, v in (snapshot.get("markers") or {}).items()},
                   bool(snapshot.get("helper")), snapshot.get("litestream_sha"))

    @property
    def epoch(self) -> int:
        return int(self.state.get("epoch") or 1)

    @property
    def agent_state(self) -> str:
        return str(self.state.get("state") or "STANDBY")

    @property
    def activation_pending(self) -> bool:
        """ACTIVE is on record before the tunnel and the ready step: steps without ``completed_at`` mean
        the agent is still finishing this activation (not a recovery stopped half-way)."""
        return machine.activation_pending(self.state)

    def active(self, unit: str) -> bool:
        return (self.units.get(unit) or {}).get("active") in SERVING

    def masked(self, unit: str) -> bool:
        return (self.units.get(unit) or {}).get("enabled", "").startswith("masked")

    def marks(self, epoch: int) -> Set[str]:
        return set(self.markers.get(epoch, []))


def _running(view: HostView, units) -> List[str]:
    return [unit for unit in units if view.active(unit)]


# --- failover ---------------------------------------------------------------------------------------
def fence_todo(primary: HostView, connector: str, services) -> Optional[str]:
    """What fencing the (reachable) primary still needs: connector first, then the services."""
    if not primary.reachable:
        return None
    todo = []
    if not primary.fenced or primary.active(connector):
        todo.append(f"fence {connector}" + (" (running)" if primary.active(connector) else ""))
    todo += [f"stop {unit}" for unit in _running(primary, services)]
    return ", ".join(todo) or None


@dataclass
class Activation:
    """What the activation step will do: todo None = the standby already serves."""

    todo: Optional[str]
    force: bool = False
    note: str = ""


def refusal_text(primary_name: str, witness: Optional[dict], token_file: str) -> str:
    summary = (witness or {}).get("summary") or (witness or {}).get("error") or "witness not reachable"
    alive = ""
    if (witness or {}).get("primary_serving") or (witness or {}).get("other_connector"):
        alive = " The witness shows the primary's side still serving: this looks like a link fault."
    return (
        f"Refusing to fail over: the primary ({primary_name}) cannot be reached over SSH, so it cannot be "
        f"fenced, and the witness cannot confirm its connector is gone ({summary}).{alive}\n"
        "Any one of these lets the failover proceed:\n"
        "  - SSH access to the primary: the playbook then fences it (stops its connector, gateway and "
        "scoreboard);\n"
        f"  - a Cloudflare API token on the standby ({token_file}, from the secrets file "
        "cloudflare-api-token) whose tunnel-connections list shows no connector from the primary;\n"
        "  - your decision that the primary is down: run again with --data failover_force=true (if it is "
        "in fact serving, two connectors split the traffic until it is fenced).")


def activation(primary: HostView, standby: HostView, witness: Optional[dict], force: bool,
               standby_units, connector: str, token_file: str, fence_first: bool = False) -> Activation:
    """Decide the activation step. Raises Refusal when it must not run. `fence_first`: the fence step
    runs before (prepare time), so a reachable primary that is not fenced yet is not a reason to refuse."""
    state = standby.agent_state
    if state == layout.ACTIVE:
        stopped = [unit for unit in standby_units if not standby.active(unit)]
        if stopped and standby.activation_pending:
            return Activation(f"let the standby finish its activation (ACTIVE at epoch {standby.epoch}; "
                              f"{', '.join(stopped)} starting)", False,
                              "the standby's own activation is past the fence and finishing")
        if stopped:
            raise Refusal(f"the standby is ACTIVE at epoch {standby.epoch} but {', '.join(stopped)} "
                          "not running: a recovery is in progress or stopped half-way; finish it with "
                          "tasks/recovery.py")
        return Activation(None, note=f"standby ACTIVE at epoch {standby.epoch}")
    if primary.reachable:
        if not primary.fenced and not force and not fence_first:
            raise Refusal(f"the primary is reachable but not fenced ({connector} not stopped by the "
                          "fence step): refusing to start a second connector")
        return Activation(f"activate (standby {state} at epoch {standby.epoch})", False, "primary fenced over SSH")
    if witness and witness.get("api_clear"):
        return Activation(f"activate (standby {state})", False,
                          f"primary unreachable; witness confirms its connector is gone ({witness.get('summary')})")
    if force:
        seen = (witness or {}).get("summary") or (witness or {}).get("error") or "no witness answer"
        return Activation(f"activate with --force (standby {state})", True,
                          f"FORCED by the operator: primary unreachable and not confirmed gone ({seen})")
    raise Refusal(refusal_text(primary.name, witness, token_file))


# --- recovery ---------------------------------------------------------------------------------------
@dataclass
class Target:
    """The recovery in question: it hands epoch `epoch` to the primary."""

    epoch: int
    reason: str


def recovery_target(primary: HostView, standby: HostView) -> Optional[Target]:
    """The recovery to run or resume, or None when there is nothing to recover."""
    state = standby.agent_state
    if state == layout.ACTIVATING:
        raise Refusal("the standby is ACTIVATING (an activation is running): wait until it is ACTIVE, "
                      "then run the recovery")
    if state == layout.ACTIVE:
        return Target(standby.epoch + 1, f"standby ACTIVE at epoch {standby.epoch}")
    open_epochs = [epoch for epoch, names in primary.markers.items()
                   if STARTED in names and DONE not in names and epoch >= standby.epoch]
    if open_epochs:
        epoch = max(open_epochs)
        return Target(epoch, f"recovery to epoch {epoch} in progress (markers: "
                             f"{', '.join(sorted(primary.marks(epoch)))})")
    if primary.fenced:
        epoch = max(primary.epoch, standby.epoch) + 1
        return Target(epoch, f"primary fenced while the standby is {state}")
    return None


def nothing_to_recover(primary: HostView, standby: HostView) -> str:
    return (f"Nothing to recover: the standby is {standby.agent_state} at epoch {standby.epoch}, the primary "
            f"holds epoch {primary.epoch} and no recovery is in progress.")


def primary_todo(primary: HostView, connector: str, services) -> Optional[str]:
    """What the primary still needs to serve again (recovery step 6)."""
    todo = [f"start {unit}" for unit in services if not primary.active(unit)]
    if primary.fenced:
        todo.append("remove the fence record")
    if primary.masked(connector):
        todo.append(f"unmask {connector}")
    if not primary.active(connector):
        todo.append(f"start {connector}")
    return ", ".join(todo) or None


def replication_todo(primary: HostView, epoch: int, wanted_sha: Optional[str], units) -> Optional[str]:
    """What replication still needs at `epoch` (recovery step 4)."""
    todo = []
    if primary.epoch < epoch:
        todo.append(f"primary epoch {primary.epoch} -> {epoch}")
    if wanted_sha and primary.litestream_sha != wanted_sha:
        todo.append(f"litestream.yml for epoch {epoch}")
    todo += [f"start {unit}" for unit in units if not primary.active(unit)]
    return ", ".join(todo) or None


def db_key(relative: str) -> str:
    """Marker-safe name of a database (path relative to the data root)."""
    return relative.strip("/").replace("/", "__")


def merge_marker(relative: str) -> str:
    return f"2-merged-{db_key(relative)}.json"


# --- reports ----------------------------------------------------------------------------------------
def merge_counts(report: Optional[dict]) -> List[dict]:
    """Per database of a `wirebot.hosttools.merge --json` report: path, action, source rows, rows (to be) inserted."""
    rows = []
    for database in (report or {}).get("databases") or []:
        tables = database.get("tables") or []
        rows.append({"path": database.get("path"), "action": database.get("action"),
                     "source_rows": sum(int(t.get("source_rows") or 0) for t in tables),
                     "inserted": int(database.get("inserted") or sum(int(t.get("inserted") or 0) for t in tables)),
                     "missing_after": database.get("missing_after")})
    return rows


def keys_counts(report: Optional[dict]) -> List[dict]:
    """Per database of a `wirebot.hosttools.incident keys` report: standby keys, primary keys, missing."""
    rows = []
    for path, tables in sorted(((report or {}).get("databases") or {}).items()):
        rows.append({"path": path,
                     "source_keys": sum(int(t.get("source_keys") or 0) for t in tables.values()),
                     "target_keys": sum(int(t.get("target_keys") or 0) for t in tables.values()),
                     "missing": sum(int(t.get("missing") or 0) for t in tables.values())})
    return rows


def served_by(probes: List[dict], expected: str, api: Optional[dict], origin_header: str = "") -> tuple:
    """(ok, text): did every probe get a 2xx from the `expected` origin (as the edge's `origin_header`
    names it, when the edge has one), and does the API agree?"""
    if not probes:
        return False, "no request made"
    bad = [p for p in probes if not (p.get("status") and 200 <= p["status"] < 300)]
    if bad:
        last = bad[-1]
        return False, f"public answered {last.get('status') or last.get('error')}"
    origins = sorted({p["origin"] for p in probes if p.get("origin")})
    if origins and origins != [expected]:
        return False, f"served by {', '.join(origins)}, expected {expected}"
    text = f"{len(probes)} public requests answered 2xx"
    text += f" by {expected} ({origin_header or 'origin header'})" if origins else " (origin not visible)"
    if api and api.get("configured"):
        if not api.get("ok"):
            return False, text + f"; Cloudflare API failed ({api.get('error')})"
        if sorted(api.get("origins") or []) != [expected]:
            return False, text + f"; API shows connectors from {', '.join(api.get('origins') or []) or 'nobody'}"
        text += f"; API shows only {expected}'s connector"
    else:
        text += "; no API token: connector list not checked"
    return True, text

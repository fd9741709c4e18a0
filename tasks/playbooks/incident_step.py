"""One playbook step as one pyinfra operation that decides at execution time.

The operation body reads live facts through `step.check()` each time pyinfra evaluates it (prepare
time for `--dry` and change detection, execution time for the real run): None means the step's state
holds (no command, no change); otherwise it yields one FunctionCommand that runs `step.run(todo)`,
times it and records the outcome in the timeline. Errors become a failed operation with the reason
logged on the host, never a traceback.
"""

import time
from dataclasses import dataclass
from typing import Callable, Optional

from pyinfra import host as current_host
from pyinfra import logger
from pyinfra.api import FunctionCommand, operation
from pyinfra.context import state as context_state

from tasks.playbooks import timeline
from tasks.playbooks.model import Refusal
from tasks.playbooks.remote import StepFailed


@dataclass
class Step:
    """A step of a playbook. check() -> todo text or None (may raise Refusal); run(todo) -> detail."""

    playbook: str
    number: int
    key: str
    title: str
    check: Callable[[], Optional[str]]
    run: Callable[[str], str]
    skip: Optional[Callable[[], Optional[str]]] = None  # a reason not to run at all (e.g. stop_after)
    explain: Optional[Callable[[], str]] = None  # what holds, when check() found nothing to do

    def holds(self) -> str:
        return (self.explain() if self.explain else "") or "state holds"

    def record(self, host_name: str, status: str, seconds: float, detail: str) -> timeline.Record:
        return timeline.add(timeline.Record(self.playbook, self.number, self.key, self.title, host_name,
                                            status, round(seconds, 3), detail))


def _fail(host, step: Step, status: str, seconds: float, message: str) -> bool:
    step.record(host.name, status, seconds, message)
    host.log(f"{step.playbook} step {step.number} ({step.key}) {status}: {message}", logger.error)
    return False


def _execute(state, host, step: Step, todo: str) -> bool:
    """The FunctionCommand: do the step's work; True on success (pyinfra fails the op on False)."""
    started = time.monotonic()
    host.log(f"{step.playbook} step {step.number} ({step.key}): {todo}")
    try:
        detail = step.run(todo)
    except Refusal as exc:
        return _fail(host, step, "refused", time.monotonic() - started, str(exc))
    except StepFailed as exc:
        return _fail(host, step, "failed", time.monotonic() - started, str(exc))
    except Exception as exc:  # noqa: BLE001 - report any surprise as this step's failure
        return _fail(host, step, "failed", time.monotonic() - started, f"{type(exc).__name__}: {exc}")
    seconds = time.monotonic() - started
    step.record(host.name, "done", seconds, detail)
    host.log(f"{step.playbook} step {step.number} ({step.key}) done in {seconds:.2f} s: {detail}")
    return True


def _refuse(state, host, step: Step, status: str, message: str) -> bool:
    return _fail(host, step, status, 0.0, message)


@operation()
def incident_step(step: Step):
    """
    Bring one incident step's state about: nothing when its facts say it holds, else one timed
    FunctionCommand running the step.

    + step: the Step (tasks.playbooks.incident_step.Step)
    """
    executing = context_state.is_executing
    name = current_host.name
    started = time.monotonic()
    skip = step.skip() if step.skip else None
    if skip:
        if executing:
            step.record(name, "skipped", 0.0, skip)
        else:
            timeline.plan(step.playbook, step.number, step.key, step.title, name, skip, status="skipped")
        return
    try:
        todo = step.check()
    except Refusal as exc:
        if not executing:
            timeline.plan(step.playbook, step.number, step.key, step.title, name, f"refused: {exc}")
        yield FunctionCommand(_refuse, (step, "refused", str(exc)), {})
        return
    except StepFailed as exc:
        yield FunctionCommand(_refuse, (step, "failed", f"reading the facts failed: {exc}"), {})
        return
    except Exception as exc:  # noqa: BLE001 - at execution a surprise fails this step, not the run
        if not executing:
            raise
        yield FunctionCommand(_refuse, (step, "failed", f"checking failed: {type(exc).__name__}: {exc}"), {})
        return
    if not executing:
        timeline.plan(step.playbook, step.number, step.key, step.title, name, todo or step.holds(),
                      status=None if todo else "already")
    if todo is None:
        if executing:
            step.record(name, "already", time.monotonic() - started, step.holds())
        return
    yield FunctionCommand(_execute, (step, todo), {})

"""What the incident steps did in this pyinfra run, with their durations (read by summaries and the drill)."""

import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

STATUSES = ("done", "already", "failed", "refused", "skipped", "planned")


@dataclass
class Record:
    """One step's outcome. seconds: wall time of the work (of the check, when there was nothing to do)."""

    playbook: str
    number: int
    key: str
    title: str
    host: str
    status: str
    seconds: float
    detail: str = ""
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        return asdict(self)


TIMELINE: List[Record] = []  # what ran (execution time)
PLAN: Dict[tuple, Record] = {}  # (playbook, key) -> what a step would do, seen at prepare time (dry runs)
NOTES: List[tuple] = []  # (playbook, text): facts worth a line in the summary (e.g. "primary unreachable")


def add(record: Record) -> Record:
    TIMELINE.append(record)
    return record


def plan(playbook: str, number: int, key: str, title: str, host: str, todo: Optional[str],
         status: Optional[str] = None) -> None:
    """At prepare time: what a step would do ("planned") or that its state holds ("already")."""
    status = status or ("planned" if todo else "already")
    PLAN[(playbook, key)] = Record(playbook, number, key, title, host, status, 0.0, todo or "nothing to do")


def note(playbook: str, text: str) -> None:
    if (playbook, text) not in NOTES:
        NOTES.append((playbook, text))


def notes(playbook: str) -> List[str]:
    return [text for book, text in NOTES if book == playbook]


def records(playbook: Optional[str] = None) -> List[Record]:
    """Records of `playbook` (all when None), in step order then time."""
    chosen = [r for r in TIMELINE if playbook is None or r.playbook == playbook]
    return sorted(chosen, key=lambda r: (r.playbook, r.number, r.at))


def planned(playbook: str) -> List[Record]:
    """The prepare-time view of `playbook`'s steps, in step order."""
    return sorted((r for (book, _), r in PLAN.items() if book == playbook), key=lambda r: (r.number, r.at))


def clear() -> None:
    TIMELINE.clear()
    PLAN.clear()
    NOTES.clear()

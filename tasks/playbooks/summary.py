"""The paste-able summary a playbook prints at the end of its run: steps, durations, result."""

import atexit
import sys
import time
from typing import Iterable, List, Optional

from tasks.playbooks import timeline
from tasks.playbooks.timeline import Record

TITLES = {"failover": "Wirebot failover", "recovery": "Wirebot recovery (failback)"}
_REGISTERED = set()


def verdict(records: List[Record], dry: bool = False) -> str:
    """One word or phrase for the whole run."""
    if dry:
        todo = [r for r in records if r.status == "planned"]
        return f"DRY RUN: {len(todo)} step(s) to do" if todo else "DRY RUN: nothing to do"
    failed = [r for r in records if r.status in ("failed", "refused")]
    if failed:
        first = failed[0]
        return f"{first.status.upper()} at step {first.number} ({first.key})"
    if not records:
        return "NOT RUN"
    skipped = [r for r in records if r.status == "skipped"]
    if skipped:
        done = [r.number for r in records if r.status in ("done", "already")]
        return f"STOPPED after step {max(done) if done else 0} (as asked)"
    if all(r.status == "already" for r in records):
        return "OK, NOTHING TO DO"
    return "OK"


def _lines(detail: str, width: int) -> List[str]:
    parts = (detail or "").splitlines() or [""]
    return [parts[0]] + [" " * width + line for line in parts[1:]]


def format_summary(playbook: str, records: Iterable[Record], notes: Iterable[str] = (), dry: bool = False,
                   now: Optional[float] = None) -> str:
    """The summary text: a header with the verdict, one line per step (seconds), notes, the total."""
    records = list(records)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now if now is not None else time.time()))
    out = [f"=== {TITLES.get(playbook, playbook)}: {verdict(records, dry)} ({stamp}) ==="]
    key_width = max([len(r.key) for r in records] + [4])
    host_width = max([len(r.host) for r in records] + [4])
    head = f"{'#':>2}  {'step':<{key_width}}  {'host':<{host_width}}  {'status':<8}  {'seconds':>8}  detail"
    out.append(head)
    indent = len(head) - len("detail")
    total = sum(r.seconds for r in records)
    if len(records) > 1 and len({r.detail for r in records}) == 1 and all(r.status == "already" for r in records):
        out.append(f"{'*':>2}  {'all':<{key_width}}  {records[0].host:<{host_width}}  {'already':<8}  "
                   f"{total:8.2f}  {len(records)} steps: {records[0].detail}")
        records = []
    for r in records:
        seconds = f"{r.seconds:8.2f}" if r.status not in ("planned", "skipped") else f"{'-':>8}"
        first, *rest = _lines(r.detail, indent)
        out.append(f"{r.number:>2}  {r.key:<{key_width}}  {r.host:<{host_width}}  {r.status:<8}  {seconds}  {first}")
        out.extend(rest)
    out.append(f"{'':>2}  {'total':<{key_width}}  {'':<{host_width}}  {'':<8}  {total:8.2f}")
    for text in notes:
        out.append(f"note: {text}")
    return "\n".join(out)


def print_summary(playbook: str) -> None:
    """Print `playbook`'s summary (stderr when pyinfra prints JSON on stdout)."""
    records = timeline.records(playbook)
    dry = not records
    text = format_summary(playbook, records or timeline.planned(playbook), timeline.notes(playbook), dry=dry)
    stream = sys.stderr if "--json" in sys.argv else sys.stdout
    print("\n" + text, file=stream, flush=True)


def at_exit(playbook: str) -> None:
    """Print `playbook`'s summary when the pyinfra run ends (once per playbook and process)."""
    if playbook not in _REGISTERED:
        _REGISTERED.add(playbook)
        atexit.register(print_summary, playbook)

"""The drill's result: the verdict (a set comparison), one JSON line, a human summary, a Discord message.

A report is a plain dict (so the JSON line is the report)::

    {"drill": "fire-drill", "drill_id": UUID, "started_at": ISO, "finished_at": ISO,
     "result": "passed" | "failed", "ok": bool, "lost": n, "doubled": n (the last three repeat the
     verdict at the top level), "failed_steps": [n, ...], "hosts": {"primary", "standby", "pair"},
     "seconds": {"detection", "activation", "outage", "end_to_end"},
     "events": {"created", "before", "during", "after", "waited", "found", "lost", "doubled",
                "unexpected", "lost_ids" (first 20), "drained"},
     "surface": {"state", "created", "synced", "queued", "retried", "waited", "posts",
                 "max_backoff_seconds", "transitions": [{"at", "state", "detail"}]},
     "epoch": {"before": {"primary", "standby"}, "after": {"primary", "standby"}},
     "steps": [{"n", "name", "status": "ok" | "failed" | "skipped" | "pending", "seconds", "detail"}]}
     (+ "note" when the run stopped early)

Seconds: detection = step 1 begins (the primary's connector is stopped) -> the surface shows offline;
activation = the failover playbook (fence, activation, verification through the public endpoint);
outage = the surface's offline -> its first acknowledgement again; end_to_end = step 1 begins -> the
surface has drained to the primary (step 9). Events before / during / after: created before step 1,
until the recovery playbook finished, after it; waited: created while offline or retried at least once.
The line appended on the primary (step 10) carries step 11 as "pending"; the control machine's copy,
written last, has every step's final status.
"""

import collections
import json
import urllib.error
import urllib.request
import uuid

OK, FAILED, SKIPPED, PENDING = "ok", "failed", "skipped", "pending"  # pending: step 11 in the logged line
STEPS = (
    (1, "Stop the primary's connector"),
    (2, "The surface shows offline (not error)"),
    (3, "Activate the standby (gateway, scoreboard, tunnel)"),
    (4, "Every public endpoint answers"),
    (5, "A chat message gets an AI answer (the standby's gateway)"),
    (6, "A test event is in the standby's scoreboard"),
    (7, "Deactivate the standby (recovery)"),
    (8, "Reconnect the primary (recovery, merge included; the primary's gateway answers)"),
    (9, "The surface reconnects and drains its queue"),
    (10, "Log the result"),
    (11, "Alert the operator"),
)
DISCORD_LIMIT = 2000  # characters in a Discord message's content


def canonical(event_id: str) -> str:
    """An event id in canonical lowercase UUID form (ids that are not UUIDs: lowercased)."""
    try:
        return str(uuid.UUID(str(event_id)))
    except ValueError:
        return str(event_id).lower()


def verdict(created, found) -> dict:
    """Compare the ids the surface created with the ids found in the primary's events table.

    `found` may repeat ids (or carry them in another textual form). lost: created, not found; doubled:
    extra copies of created ids; unexpected: found ids carrying the drill's tag that it never created
    (a retry that minted a new id would show up here). Exactly once: all three are zero."""
    wanted = {canonical(i) for i in created}
    counts = collections.Counter(canonical(i) for i in found)
    lost = sorted(wanted - counts.keys())
    doubled = sum(n - 1 for i, n in counts.items() if i in wanted and n > 1)
    unexpected = sum(n for i, n in counts.items() if i not in wanted)
    return {"created": len(wanted), "found": sum(n for i, n in counts.items() if i in wanted) - doubled,
            "lost": len(lost), "doubled": doubled, "unexpected": unexpected, "lost_ids": lost[:20],
            "exactly_once": not lost and not doubled and not unexpected}


def new_steps() -> list:
    return [{"n": n, "name": name, "status": SKIPPED, "seconds": None, "detail": ""} for n, name in STEPS]


def result(report: dict) -> str:
    """passed when every step is ok (or pending) and every event is on the primary exactly once."""
    events = report.get("events") or {}
    clean = all(events.get(k) == 0 for k in ("lost", "doubled", "unexpected"))
    failed = [s["n"] for s in report["steps"] if s["status"] not in (OK, PENDING)]
    report["failed_steps"] = failed
    return "passed" if not failed and clean and events.get("created") else "failed"


def settle(report: dict, verdict_: str = None) -> dict:
    """Set the top-level verdict fields: result (computed unless given), ok, lost, doubled (the last three
    repeat the verdict for readers of the log such as tasks/status.py and jq one-liners)."""
    report["result"] = verdict_ or result(report)
    events = report.get("events") or {}
    report.update(ok=report["result"] == "passed", lost=events.get("lost"), doubled=events.get("doubled"))
    return report


def json_line(report: dict) -> str:
    """The report as one line of JSON (keys sorted), for /var/log/wirebot/fire-drill.log."""
    return json.dumps(report, sort_keys=True, separators=(",", ":"), default=str)


def _secs(value) -> str:
    return "-" if value is None else f"{value:.1f}s"


def headline(report: dict) -> str:
    s, e = report.get("seconds") or {}, report.get("events") or {}
    return (f"Fire drill {report.get('result', '?').upper()} ({report.get('started_at', '?')}): "
            f"detection {_secs(s.get('detection'))}, activation {_secs(s.get('activation'))}, "
            f"end-to-end {_secs(s.get('end_to_end'))}; events created {e.get('created', '-')}, "
            f"lost {e.get('lost', '-')}, doubled {e.get('doubled', '-')}")


def _epochs(epoch: dict) -> str:
    before, after = epoch.get("before") or {}, epoch.get("after") or {}
    return "epochs " + ", ".join(f"{role} {before.get(role, '?')} -> {after.get(role, '?')}"
                                 for role in ("primary", "standby"))


def human_summary(report: dict) -> str:
    """A short table an operator can paste into an incident channel."""
    e, s = report.get("events") or {}, report.get("seconds") or {}
    lines = [headline(report), f"drill {report.get('drill_id')}: primary {report['hosts'].get('primary')}, "
             f"standby {report['hosts'].get('standby')}; {_epochs(report.get('epoch') or {})}",
             f"events: {e.get('created', '-')} created ({e.get('before', '-')} before, {e.get('during', '-')} "
             f"during, {e.get('after', '-')} after the outage; {e.get('waited', '-')} waited in the queue), "
             f"{e.get('found', '-')} on the primary, lost {e.get('lost', '-')}, doubled {e.get('doubled', '-')}, "
             f"unexpected {e.get('unexpected', '-')}; surface offline for {_secs(s.get('outage'))}",
             f"{'step':<4} {'':<52} {'status':<8} {'time':>7}"]
    for step in report["steps"]:
        lines.append(f"{step['n']:<4} {step['name']:<52} {step['status']:<8} {_secs(step['seconds']):>7}")
        if step["status"] != OK and step.get("detail"):
            lines.append(f"     {step['detail'][:300]}")
    return "\n".join(lines)


def discord_message(report: dict) -> dict:
    """Discord's webhook JSON: {"content": headline + the step table}, within Discord's 2000 characters,
    mentioning nobody (allowed_mentions parse nothing)."""
    text = human_summary(report)
    body = f"**{headline(report)}**\n```\n{text.split(chr(10), 1)[1]}\n```"
    if len(body) > DISCORD_LIMIT:
        body = body[:DISCORD_LIMIT - 5] + "\n```"
    return {"content": body, "allowed_mentions": {"parse": []}}  # no @everyone/@here/<@id> pings


def send_webhook(url: str, message: dict, timeout: float = 10.0) -> tuple:
    """POST `message` to a Discord webhook URL; (ok, detail). Discord answers 204 (or 200 with ?wait)."""
    request = urllib.request.Request(url, data=json.dumps(message).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "User-Agent": "wirebot-fire-drill"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return 200 <= response.status < 300, f"HTTP {response.status}"
    except urllib.error.HTTPError as error:
        return False, f"HTTP {error.code}: {error.read()[:200].decode(errors='replace')}"
    except (OSError, ValueError) as error:
        return False, f"no answer: {error}"

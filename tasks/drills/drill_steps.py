"""The bodies of the drill's steps (seed section 14). Each takes the Drill and returns (ok, detail).

Steps 3, 7 and 8 are done by the incident playbooks' operations (tasks/playbooks failover and recovery),
which run between the drill's marks; here they are only read back from the incident timeline.
"""

import shlex
import time
from pathlib import Path

from tasks.core import paths
from tasks.core.ops import WirebotState
from tasks.core.wait import WaitTimeout, wait_for
from tasks.drills import drill_settings, host_commands, public, report
from tasks.drills.surface import ERROR, OFFLINE, ONLINE, Backoff, Hub, Surface

DONE = ("done", "already")
DEACTIVATE_KEYS = ("stop", "standby")  # recovery steps that make seed step 7; the others make step 8


def _timeout(drill) -> float:
    return drill.settings["drill_step_timeout_seconds"]


def warmup(drill) -> bool:
    """Start the surface; True once it has synced for drill_warmup_seconds (the 'before' events)."""
    s = drill.settings
    drill.marks["started"] = time.time()
    drill.run_dir.mkdir(parents=True, exist_ok=True)
    prefix, header = drill_settings.public_url(drill.base, s["drill_api_hostname"])
    hub = Hub(prefix, header, s["drill_surface_timeout_seconds"])
    backoff = Backoff(s["drill_surface_backoff_base_seconds"], s["drill_surface_backoff_cap_seconds"],
                      s["drill_surface_backoff_jitter"])
    drill.surface = Surface(str(drill.run_dir / "surface.db"), hub, tag=drill.id, rate=s["drill_surface_rate"],
                            backoff=backoff, event_type=s["drill_event_type"]).start()
    print(f"fire drill {drill.id}: surface writing {s['drill_surface_rate']:g} events/s to "
          f"{prefix} (Host: {header or s['drill_api_hostname']}); store {drill.run_dir / 'surface.db'}", flush=True)
    ok = drill.surface.wait_for(lambda x: x.state == ONLINE and x.stats()["synced"] > 0, _timeout(drill))
    time.sleep(s["drill_warmup_seconds"])
    stats = drill.surface.stats()
    if not ok or stats["state"] != ONLINE:
        last = drill.surface.transitions()[-1]["detail"]
        detail = (f"the surface could not sync before the outage ({stats['state']}, {stats['synced']} synced; "
                  f"{last[:200]}): nothing was changed")
        for step in drill.steps.values():
            step["detail"] = detail if step["n"] <= 9 else step["detail"]
        print(f"fire drill: {detail}", flush=True)
        return False
    print(f"fire drill: surface online, {stats['synced']} events synced before the outage", flush=True)
    return True


def stop_connector(drill):
    """Step 1: stop the primary's connector (the outage; the failover's fence then masks it)."""
    unit = shlex.quote(drill.data.cloudflared_unit)
    host_commands.run(drill.primary, f"systemctl stop {unit}", timeout=int(_timeout(drill)))
    state = host_commands.run(drill.primary, f"systemctl is-active {unit} || true").strip() or "unknown"
    return state in ("inactive", "failed", "unknown"), f"{drill.data.cloudflared_unit} on the primary: {state}"


def shows_offline(drill):
    """Step 2: the surface shows offline (not error) and keeps writing locally."""
    since = drill.marks["step1_start"]
    surface = drill.surface

    def offline(x):
        return any(t["at"] >= since and t["state"] == OFFLINE for t in x.transitions())

    if not surface.wait_for(offline, _timeout(drill)):
        return False, f"the surface did not show offline within {_timeout(drill):.0f}s (state {surface.state})"
    at = next(t for t in surface.transitions() if t["at"] >= since and t["state"] == OFFLINE)
    queued = surface.queued()
    surface.wait_for(lambda x: x.queued() > queued, _timeout(drill))
    errors = [t for t in surface.transitions() if t["at"] >= since and t["state"] == ERROR]
    if errors:
        return False, f"the surface showed an error, not offline: {errors[0]['detail']}"
    return surface.queued() > queued, (f"offline {at['at'] - since:.2f}s after the connector stop "
                                       f"({at['detail'][:120]}); writes continue locally, {surface.queued()} queued")


def incident_records(playbook, keys=None) -> list:
    from tasks.playbooks import timeline

    return [r for r in timeline.records(playbook) if keys is None or r.key in keys]


def _summarise(records, what) -> tuple:
    """(ok, detail, seconds) of a playbook's timeline records: ok when each is done or already held."""
    if not records:
        return False, f"{what}: no step ran (see the playbook's messages above)", 0.0
    bad = [r for r in records if r.status not in DONE]
    text = "; ".join(f"{r.key} {r.status} {r.seconds:.1f}s" + (f" ({r.detail[:150]})" if r.status not in DONE
                                                               else "") for r in records)
    return not bad, f"{what}: {text}", sum(r.seconds for r in records)


def activation(drill):
    """Step 3, after the failover playbook's operations: its timeline, and the standby still active.
    Seconds: from the drill's mark before the playbook to now (its operations and pyinfra's overhead)."""
    ok, detail, _ = _summarise(incident_records("failover"), "failover")
    if drill.standby not in drill.state.active_hosts:
        ok, detail = False, detail + "; the failover failed on the standby"
    return ok, detail, time.time() - drill.marks["activation_start"]


def endpoints(drill):
    """Step 4: every public hostname answers /health (bounded retries)."""
    names = sorted(drill.data.public_hostnames)
    answers = {}

    def all_healthy():
        for name in names:
            if not answers.get(name, (False,))[0]:
                prefix, header = drill_settings.public_url(drill.base, name)
                answers[name] = public.health(prefix, header, origin_header=drill.origin_header)
        return all(a[0] for a in answers.values())

    try:
        wait_for(all_healthy, _timeout(drill), 0.5, "every public hostname's /health")
    except WaitTimeout:
        pass  # the answers say which hostname failed
    return all(a[0] for a in answers.values()), "; ".join(f"{n} {answers[n][1]}" for n in names)


def chat_token(drill) -> str:
    """The gateway's bearer token from drill_chat_token_secret: a bare token or OPENCLAW_GATEWAY_TOKEN=..."""
    name = drill.settings["drill_chat_token_secret"]
    if not name:
        return ""
    text = (Path(drill.data.secrets_dir) / name).read_text().strip()
    key, sep, value = text.partition("=")
    return value.strip() if sep and key.strip() == "OPENCLAW_GATEWAY_TOKEN" else text


def _gateways(drill) -> dict:
    """{"primary"|"standby": host} for each host whose gateway unit is active."""
    serving = {}
    for role, target in (("primary", drill.primary), ("standby", drill.standby)):
        if host_commands.run(target, "systemctl is-active openclaw-gateway || true").strip() == "active":
            serving[role] = target
    return serving


def ask_gateway(drill, expected: str) -> tuple:
    """One chat message through the public chat hostname; ok when it gets an AI answer from the gateway of
    `expected` (primary or standby): the only gateway running, and the origin that served it where the
    edge names one (the lab's edge does; its model server also names the gateway that asked)."""
    s = drill.settings
    prefix, header = drill_settings.public_url(drill.base, s["drill_chat_hostname"])
    seen = {}
    ok, answer = public.chat(prefix, header, s["drill_chat_model"],
                             f"Fire drill {drill.id}: please answer with one short sentence.", chat_token(drill),
                             timeout=_timeout(drill), seen=seen, origin_header=drill.origin_header)
    serving = _gateways(drill)
    names = {drill.primary.name: "primary", drill.standby.name: "standby"}
    origin = names.get(seen.get("origin"), seen.get("origin"))
    who = origin or "+".join(sorted(serving)) or "no gateway running"
    if not ok:
        return False, f"{s['drill_chat_hostname']}: {answer} (gateways running: {who})"
    if sorted(serving) != [expected] or (origin and origin != expected):
        return False, (f"{s['drill_chat_hostname']} answered, but from the {who} gateway, not only the {expected}'s "
                       f"(running: {', '.join(sorted(serving)) or 'none'}): {answer[:120]!r}")
    return True, f"{s['drill_chat_hostname']} answered by the {expected}'s gateway: {answer[:160]!r}"


def chat(drill):
    """Step 5: during the outage a chat message through the public chat hostname gets an AI answer from the
    standby's gateway."""
    return ask_gateway(drill, "standby")


def probe(drill):
    """Step 6: a test event written by the surface is acknowledged and found in the standby's events.db."""
    surface = drill.surface
    eid = surface.create_event(f"{drill.settings['drill_event_type']}-probe", {"probe": True})
    started = time.monotonic()
    if not surface.wait_for(lambda x: x.event(eid).get("synced_at"), _timeout(drill)):
        return False, f"probe {eid} was not acknowledged within {_timeout(drill):.0f}s"
    acked = time.monotonic() - started
    tagged = host_commands.rows_tagged(drill.standby, drill.data.scoreboard_events_db, drill.id, eid)
    rows = [r for r in tagged if r[0] == eid]
    if not rows:
        return False, f"probe {eid} was acknowledged but is not in the standby's {drill.data.scoreboard_events_db}"
    return True, f"probe {eid} acknowledged in {acked:.2f}s, in the standby's events.db (received_by {rows[0][1]})"


def deactivation(drill):
    """Step 7: the recovery's stop + standby-back-to-STANDBY records."""
    return _summarise(incident_records("recovery", DEACTIVATE_KEYS), "recovery")


def reconnection(drill):
    """Step 8: the recovery's other records (merge, verify, replication, primary, confirm), then a chat
    message answered by the primary's gateway again."""
    records = [r for r in incident_records("recovery") if r.key not in DEACTIVATE_KEYS]
    ok, detail, seconds = _summarise(records, "recovery")
    if drill.primary not in drill.state.active_hosts:
        return False, detail + "; the recovery failed on the primary", seconds
    if ok:
        chatted, said = ask_gateway(drill, "primary")
        ok, detail = chatted, f"{detail}; chat: {said}"
    return ok, detail, seconds


def drained(drill):
    """Step 9: the surface is online again and its queue is empty."""
    since = drill.marks["recovery_start"]
    surface = drill.surface
    ok = surface.wait_for(lambda x: x.state == ONLINE and x.queued() == 0, _timeout(drill))
    back = [t for t in surface.transitions() if t["at"] >= since]
    states = " -> ".join(t["state"] for t in back) or "no change"
    return ok, f"{'online, queue drained' if ok else f'not drained ({surface.state}, {surface.queued()} queued)'}" \
               f" (since the recovery began: {states})"


def verdict(drill) -> None:
    """After step 9: keep writing for drill_cooldown_seconds, drain, then compare with the primary."""
    s, surface, marks = drill.settings, drill.surface, drill.marks
    time.sleep(s["drill_cooldown_seconds"])
    drained_ok = surface.finish(s["drill_drain_timeout_seconds"])
    created = surface.event_ids()
    found = [r[0] for r in host_commands.rows_tagged(drill.primary, drill.data.scoreboard_events_db, drill.id)]
    v = report.verdict(created, found)
    outage_start = marks.get("step1_start") or float("inf")
    outage_end = marks.get("recovery_end") or float("inf")
    v.update(before=len(surface.event_ids(created_before=outage_start)),
             during=len(surface.event_ids(outage_start, outage_end)),
             after=len(surface.event_ids(created_after=outage_end)),
             waited=surface.stats()["waited"], drained=drained_ok)
    v.pop("exactly_once")
    drill.events = v
    state_path = paths.state_file(drill.data)
    drill.epoch["after"] = {role: (target.get_fact(WirebotState, path=state_path) or {}).get("epoch")
                            for role, target in (("primary", drill.primary), ("standby", drill.standby))}
    print(f"fire drill verdict: {v['created']} created, {v['found']} on the primary, lost {v['lost']}, "
          f"doubled {v['doubled']}, unexpected {v['unexpected']}", flush=True)


def log(drill):
    """Step 10: append the JSON line to the primary's fire-drill.log (steps 10-11 marked pending in it)."""
    drill.steps[10].update(status=report.OK, seconds=0.0, detail=f"{drill.log_path()} on the primary")
    drill.steps[11].update(status="pending", detail="sent after the line is written")
    line = report.json_line(drill.build_report())
    host_commands.append_line(drill.primary, drill.log_path(), line)
    return True, f"appended {len(line)} bytes to {drill.log_path()} on {drill.primary.name}"


def alert(drill):
    """Step 11: the summary to the Discord webhook (drill_discord_webhook_url, else the secrets file)."""
    url = drill.settings["drill_discord_webhook_url"]
    if not url:
        path = Path(drill.data.secrets_dir) / "discord-webhook.url"
        if not path.exists():
            return False, f"no webhook: {path} does not exist (and drill_discord_webhook_url is empty)"
        url = path.read_text().strip()
    summary = drill.report or drill.build_report()
    ok, detail = report.send_webhook(url, report.discord_message(summary))
    return ok, f"Discord webhook: {detail}"


"""The status table: who serves, epochs, agents' states, replication lag per DB and path, heartbeat,
last drill. Read-only: facts on both hosts (the agents' /status through curl on the host itself, over
their local control socket) and one public request from the control machine."""

import atexit
import sys
import time
from typing import Optional

from wirebot.common import layout

from tasks.playbooks import remote
from tasks.playbooks.facts import HttpJson, LastJsonLine, view

_AT_EXIT = {}  # pair name -> table, printed together at the end of the run


def print_at_exit(name: str, table: str) -> None:
    """Print `table` when the run ends, with every other pair's (by name); to stderr with --json."""
    if not _AT_EXIT:
        atexit.register(lambda: print("\n" + "\n\n".join(_AT_EXIT[key] for key in sorted(_AT_EXIT)),
                                      file=sys.stderr if "--json" in sys.argv else sys.stdout))
    _AT_EXIT[name] = table


def _fact(target, fact, **kwargs):
    if not target.connected:
        return None
    try:
        return target.get_fact(fact, **kwargs)
    except Exception:  # noqa: BLE001 - a status table shows what it can
        return None


def collect(primary, standby) -> dict:
    """Everything the table shows, as plain data (see format_table)."""
    pdata, sdata = primary.data, standby.data
    replicator = _fact(primary, HttpJson, url="http://agent/status", socket=pdata.agent_control_socket)
    agent = _fact(standby, HttpJson, url="http://agent/status", socket=sdata.agent_control_socket)
    drill = _fact(primary, LastJsonLine, path=f"{pdata.wirebot_log_dir}/fire-drill.log")
    answer = remote.probe(sdata.witness_public_url, sdata.witness_public_host_header or None,
                          sdata.edge_origin_header or "")
    pv, sv = view(primary), view(standby)
    return {
        "at": time.time(),
        "public": answer,
        "hosts": {
            "primary": {"name": primary.name, "reachable": pv.reachable, "epoch": pv.state.get("epoch"),
                        "fenced": pv.fenced, "units": pv.units, "markers": pv.markers},
            "standby": {"name": standby.name, "reachable": sv.reachable, "epoch": sv.state.get("epoch"),
                        "state": sv.state.get("state"), "units": sv.units},
        },
        "replicator": replicator,
        "standby_agent": agent,
        "drill": drill,
        "connector": pdata.cloudflared_unit,
    }


def active_side(view_: dict) -> str:
    """Which side serves, from the units, the standby's state and the public answer."""
    hosts, connector = view_["hosts"], view_["connector"]
    serving = [role for role in ("primary", "standby")
               if (hosts[role]["units"].get(connector) or {}).get("active") == "active"]
    origin = (view_.get("public") or {}).get("origin")
    names = {hosts[role]["name"]: role for role in hosts}
    if len(serving) > 1:
        text = "BOTH connectors running (split brain!)"
    elif serving:
        text = serving[0]
    else:
        text = "nobody (no connector running)"
    public = view_.get("public") or {}
    answer = public.get("status") or public.get("error")
    text += f"; public answered {answer}"
    if origin:
        text += f" from {names.get(origin, origin)} ({origin})"
    return text


def _age(seconds: Optional[float]) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s ago"


def _unit(host: dict, unit: str) -> str:
    if not host["reachable"]:
        return "unreachable"
    record = host["units"].get(unit) or {}
    state = record.get("active", "?")
    return state + (" (masked)" if str(record.get("enabled", "")).startswith("masked") else "")


def _agent_state(agent: dict, host: dict) -> str:
    if agent.get("state"):
        since = agent.get("seconds_in_state")
        return agent["state"] + (f" for {since:.0f} s" if isinstance(since, (int, float)) else "")
    return f"{host.get('state') or '?'} (agent: {agent.get('error') or 'no answer'})"


def format_table(view_: dict, pair: str = None) -> str:
    """The status as text: a two-column host table, then lag per DB and per path, heartbeat, drill;
    `pair`: the pair's name in the heading (inventories with several pairs)."""
    hosts, connector = view_["hosts"], view_["connector"]
    p, s = hosts["primary"], hosts["standby"]
    agent = view_.get("standby_agent") or {}
    replicator = view_.get("replicator") or {}
    rows = [
        ("", f"primary {p['name']}", f"standby {s['name']}"),
        ("epoch", str(p["epoch"] or "-") if p["reachable"] else "unreachable",
         str(s["epoch"] or "-") if s["reachable"] else "unreachable"),
        ("agent state", "replicator " + ("/".join(f"{k} {v}" for k, v in (replicator.get("components") or {}).items())
                                         or replicator.get("error", "?")),
         _agent_state(agent, s)),
        ("fenced", "yes" if p["fenced"] else "no", "-"),
    ] + [(unit, _unit(p, unit), _unit(s, unit)) for unit in layout.serving_units(connector)]
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(view_.get("at") or time.time()))
    title = f"Wirebot status of pair {pair}" if pair else "Wirebot status"
    out = [f"=== {title} ({stamp}) ===", f"active side: {active_side(view_)}"]
    out += ["  ".join(cell.ljust(width[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    heartbeat = (agent.get("last_heartbeat") or {})
    out.append(f"last heartbeat: {_age(agent.get('last_heartbeat_age_seconds'))}"
               + (f" (sequence {heartbeat.get('sequence')}, epoch {heartbeat.get('epoch')})" if heartbeat else ""))
    dbs = replicator.get("litestream") or heartbeat.get("litestream") or {}
    source = "replicator" if replicator.get("litestream") else "standby's last heartbeat"
    out.append(f"lag per DB ({source}):" if dbs else "lag per DB: unknown (replicator unreachable)")
    for db, record in sorted(dbs.items()):
        lag = record.get("lag_seconds")
        out.append(f"  {db}: {'-' if lag is None else f'{lag:.1f} s'}, {record.get('lag_txids', '-')} txids behind"
                   + (" STALLED" if record.get("stalled") else "")
                   + (f" ({record['error']})" if record.get("error") else ""))
    paths = replicator.get("file_sync") or heartbeat.get("file_sync") or {}
    out.append("lag per path:" if paths else "lag per path: unknown")
    for path, record in sorted(paths.items()):
        lag = record.get("lag_seconds")
        out.append(f"  {path}: {'-' if lag is None else f'{lag:.1f} s'}"
                   + (f", {record['consecutive_failures']} failures" if record.get("consecutive_failures") else "")
                   + (f" ({record['last_error']})" if record.get("last_error") else ""))
    drill = view_.get("drill")
    if drill:
        verdict = "ok" if drill.get("ok") else "FAILED"
        when = drill.get("finished_at")
        if isinstance(when, (int, float)):
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when)) + \
                f" ({((view_.get('at') or time.time()) - drill['finished_at']) / 3600:.1f} h ago)"
        out.append(f"last drill: {verdict} at {when} (lost {drill.get('lost')}, doubled {drill.get('doubled')})")
    else:
        out.append("last drill: none recorded")
    markers = p.get("markers") or {}
    if markers:
        epoch = max(markers)
        done = "7-done.json" in markers[epoch]
        out.append(f"last recovery: epoch {epoch}, " + ("done" if done else "IN PROGRESS (run tasks/recovery.py)"))
    return "\n".join(out)

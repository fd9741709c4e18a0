"""The start gates (ExecStartPre) of the serving units: never a second connector, gateway or scoreboard.

  python3 -m wirebot.hosttools.gate --config /etc/wirebot/replicator.yml      (primary; exit 0 = start, 1 = refuse)
  python3 -m wirebot.hosttools.gate --standby --config /etc/wirebot/standby.yml   (standby)

On the standby (``--standby``: cloudflared, the gateway and the scoreboard) the start is allowed only
while the standby agent's persisted state (``state_file`` of standby.yml) is ACTIVATING or ACTIVE: a
passive standby's units cannot be started by hand, by a reboot or by a deploy. A missing or unreadable
state file refuses.

On the primary (the connector's unit):

Refuses (exit 1, logged with the reason) when any of these holds:

1. the fence record exists (``gate.fenced_file``, default /var/lib/wirebot/fenced.json, written by
   wirebot.hosttools.fence_command when the standby fenced this primary; recovery removes it and unmasks the
   unit);
2. the standby's ``GET {standby.agent_url}/status`` (mutual TLS with the replicator's ``tls`` keys:
   this host's certificate, the standby's pinned one) reports state ACTIVE or ACTIVATING at an epoch
   >= this primary's epoch (``state_file``, default epoch 1);
3. the witness API (optional ``witness:`` section, same keys as standby.yml with ``self_origin_ip`` =
   this primary's origin IP; token in ``secrets.cloudflare_api_token_file``, default
   /run/wirebot/cloudflare-api-token) shows a tunnel connection from another origin.

Otherwise it allows the start and logs what it checked: an unreachable standby or a failing/absent
witness is not evidence of another connector (a primary must be able to boot alone). Other keys read:
``gate.timeout_seconds`` (default 5) per HTTP call.
"""

import argparse
import sys

from wirebot.common import config, httpapi, layout, statefile, tls
from wirebot.common.log import log
from wirebot.standby import witness

DEFAULT_TOKEN_FILE = "/run/wirebot/cloudflare-api-token"


def load_settings(path):
    cfg = config.load_yaml(path)
    get = config.get
    return {
        "state_file": get(cfg, "state_file", str, path, default=layout.state_file()),
        "agent_url": get(cfg, "standby.agent_url", str, path).rstrip("/"),
        "tls": tls.load_settings(cfg, path),
        "witness": witness.load_settings(cfg, path, required=False, require_public=False),
        "token_file": get(cfg, "secrets.cloudflare_api_token_file", str, path, default=DEFAULT_TOKEN_FILE),
        "timeout_seconds": get(cfg, "gate.timeout_seconds", float, path, default=5.0),
        "fenced_file": get(cfg, "gate.fenced_file", str, path, default=layout.fenced_file()),
    }


def evaluate(settings):
    """(allow: bool, reason: str, checks: dict). Reads files and does HTTP; no side effects."""
    checks = {}
    fenced = statefile.load(settings["fenced_file"], {}) if config.exists(settings["fenced_file"]) else None
    checks["fenced"] = fenced
    if fenced is not None:
        return False, (f"this primary was fenced ({settings['fenced_file']}: {fenced}); run the recovery "
                       "(it unmasks the unit and removes the fence record)"), checks
    own_epoch = int(statefile.load(settings["state_file"], {"epoch": 1}).get("epoch") or 1)
    checks["own_epoch"] = own_epoch
    try:
        target = httpapi.Target.peer(settings["agent_url"], tls.client_context(settings["tls"]))
        code, status = httpapi.get_json(target, "/status", settings["timeout_seconds"])
    except config.ConfigError as exc:  # our TLS files are unreadable: we cannot ask, as if unreachable
        code, status = 0, {"error": str(exc)}
    standby = {"http_status": code, "state": status.get("state"), "epoch": status.get("epoch"),
               "error": status.get("error") if code != 200 else None}
    checks["standby"] = standby
    if code == 200 and standby["state"] in layout.SERVING_STATES and isinstance(standby["epoch"], int) \
            and standby["epoch"] >= own_epoch:
        return False, (f"the standby is {standby['state']} at epoch {standby['epoch']} >= our epoch "
                       f"{own_epoch}"), checks
    if settings["witness"] is None:
        checks["witness"] = "not configured"
    else:
        api = witness.check_api(settings["witness"], config.read_secret(settings["token_file"]))
        checks["witness"] = api
        if api["ok"] and api["other_origins"]:
            others = ", ".join(api["other_origins"])
            return False, f"the tunnel has connections from another origin: {others}", checks
    standby_text = (f"standby {standby['state']} at epoch {standby['epoch']}" if code == 200
                    else f"standby unreachable ({standby['error'] or code})")
    witness_check = checks["witness"]
    if witness_check == "not configured":
        witness_text = "no witness configured"
    elif not witness_check["configured"]:
        witness_text = "witness API not configured (no token/account/tunnel)"
    elif not witness_check["ok"]:
        witness_text = f"witness API failed ({witness_check['error']})"
    else:
        witness_text = "witness API shows no other origin"
    return True, f"no other connector known: {standby_text}; {witness_text}", checks


def evaluate_standby(state_file):
    """(allow, reason, checks) for a unit on the standby: only while it activates or serves."""
    if not config.exists(state_file):
        return False, f"no standby state at {state_file}: the standby agent has not run", {"state": None}
    try:
        data = statefile.load(state_file, {})
    except (OSError, ValueError) as exc:
        return False, f"cannot read {state_file}: {exc}", {"state": None}
    state, epoch = data.get("state"), data.get("epoch")
    checks = {"state": state, "epoch": epoch}
    if state in layout.SERVING_STATES:
        return True, f"the standby is {state} at epoch {epoch}", checks
    return False, (f"the standby is {state} at epoch {epoch}: only an activation (ACTIVATING or ACTIVE) "
                   "starts the serving units here"), checks


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m wirebot.hosttools.gate", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="/etc/wirebot/replicator.yml")
    parser.add_argument("--standby", action="store_true", help="the standby's gate (config: standby.yml)")
    args = parser.parse_args(argv)
    try:
        if args.standby:
            cfg = config.load_yaml(args.config)
            state_file = config.get(cfg, "state_file", str, args.config, default=layout.state_file())
        else:
            settings = load_settings(args.config)
    except config.ConfigError as exc:
        log("gate", "config-error", level="error", error=str(exc))
        print(f"wirebot.hosttools.gate: {exc}", file=sys.stderr)
        return 2
    if args.standby:
        allow, reason, checks = evaluate_standby(state_file)
    else:
        allow, reason, checks = evaluate(settings)
    log("gate", "allow" if allow else "refuse", level="info" if allow else "error", reason=reason,
        checks=checks)
    if not allow:
        what = "this unit" if args.standby else "the connector"
        print(f"wirebot.hosttools.gate: refusing to start {what}: {reason}", file=sys.stderr)
    return 0 if allow else 1


if __name__ == "__main__":
    sys.exit(main())

"""Operator control of the host's local agent (signed POSTs over its control socket; prints JSON).

  python3 -m wirebot.hosttools.ctl --config /etc/wirebot/standby.yml status
  python3 -m wirebot.hosttools.ctl --config /etc/wirebot/standby.yml activate [--force] [--reason R] [--wait S]
  python3 -m wirebot.hosttools.ctl --config /etc/wirebot/standby.yml deactivate --epoch N
  python3 -m wirebot.hosttools.ctl --config /etc/wirebot/replicator.yml set-epoch --epoch N [--wait S]

``activate`` sends POST /activate {"force", "reason"}; with ``--wait S`` (default 300; 0 = do not
wait) it polls GET /status until the state is ACTIVE and the activation completed (tunnel and gateway
ready: exit 0), the request was refused for lack of a
fence (FENCE_BLOCKED, exit 1) or S seconds passed (exit 1, last status printed). ``deactivate`` sends
POST /deactivate {"epoch": N}. ``set-epoch`` (the primary; recovery's step 4) sends POST /epoch {"epoch": N}
to the replicator, the only writer of the primary's state file: it raises the epoch, answers changed false
when it already holds N and refuses (exit 1) a lower one; it waits up to ``--wait`` seconds (default 15) for
a replicator that is starting to answer, then fails naming the socket. Exit 0 on success, 1 on failure or
timeout, 2 on configuration errors.
It talks to the agent over its local control socket (``control.socket``, root only) and signs with this
host's control key (``secrets.control_key_file``, root only): control requests are accepted nowhere else.
"""

import argparse
import json
import sys
import time

from wirebot.common import channel, config, httpapi, layout
from wirebot.standby import machine


def _print(data):
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def load_settings(path):
    """What ctl needs of an agent's config (standby.yml or replicator.yml): its node name and channel."""
    cfg = config.load_yaml(path)
    return {"node_name": config.get(cfg, "node_name", str, path), "channel": channel.load_settings(cfg, path)}


def _post(settings, path, payload, timeout):
    return channel.post_control(settings["channel"], settings["node_name"], path, payload, timeout)


def _status(settings, timeout):
    return httpapi.get_json(channel.local_target(settings["channel"]), "/status", timeout)


def status(settings, timeout=10):
    code, data = _status(settings, timeout)
    _print(data)
    return 0 if code == 200 else 1


def activate(settings, force, reason, wait, timeout=30, poll=0.5):
    """POST /activate and (unless wait is 0) wait for ACTIVE; returns the exit code."""
    code, answer = _post(settings, "/activate", {"force": bool(force), "reason": reason or ""}, timeout)
    if code not in (200, 202):
        _print({"ok": False, "http_status": code, "answer": answer})
        return 1
    if code == 200 or not wait:
        _print({"ok": True, "answer": answer})
        return 0
    request_id = answer.get("id")
    deadline = time.monotonic() + wait
    last = answer
    while True:
        status_code, last = _status(settings, timeout)
        if status_code == 200:
            # ACTIVE comes before the tunnel and the gateway's readiness: wait for the whole activation
            if last.get("state") == layout.ACTIVE and not machine.activation_pending(last):
                _print({"ok": True, "state": "ACTIVE", "epoch": last.get("epoch"),
                        "reason": last.get("reason"), "activation": last.get("activation")})
                return 0
            manual = last.get("last_manual") or {}
            if request_id and manual.get("id") == request_id and manual.get("outcome") == "fence-blocked":
                _print({"ok": False, "state": last.get("state"), "reason": last.get("reason"),
                        "fence": last.get("fence"), "witness": last.get("witness")})
                return 1
        if time.monotonic() >= deadline:
            _print({"ok": False, "error": f"not ACTIVE after {wait:.0f}s", "status": last})
            return 1
        time.sleep(poll)


def deactivate(settings, epoch, timeout=300):
    code, answer = _post(settings, "/deactivate", {"epoch": int(epoch)}, timeout)
    _print({"ok": code == 200, "http_status": code, "answer": answer})
    return 0 if code == 200 else 1


def set_epoch(settings, epoch, wait=15.0, timeout=10, poll=0.5):
    """POST /epoch {"epoch": N} to the replicator; returns the exit code. Code 0 from httpapi is "no answer"
    (the socket is absent or refuses: the replicator is down or still starting): retried until ``wait``."""
    deadline = time.monotonic() + wait
    while True:
        code, answer = _post(settings, "/epoch", {"epoch": int(epoch)}, timeout)
        if code != 0 or time.monotonic() >= deadline:
            break
        time.sleep(poll)
    if code == 0:
        socket = settings["channel"]["control_socket"]
        _print({"ok": False, "error": f"the replicator does not answer on its control socket {socket} after "
                                      f"{wait:.0f}s ({answer.get('error')}): is it running? The epoch is "
                                      "unchanged (only the replicator writes it)"})
        return 1
    _print({"ok": code == 200, "http_status": code, "answer": answer})
    return 0 if code == 200 else 1


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m wirebot.hosttools.ctl", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="/etc/wirebot/standby.yml")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="print the agent's /status")
    act = sub.add_parser("activate", help="ask the standby agent to activate")
    act.add_argument("--force", action="store_true", help="skip the fence (operator's decision)")
    act.add_argument("--reason", default="", help="why (logged and alerted)")
    act.add_argument("--wait", type=float, default=300.0, help="seconds to wait for ACTIVE (0: don't)")
    deact = sub.add_parser("deactivate", help="return the standby agent to STANDBY at an epoch")
    deact.add_argument("--epoch", type=int, required=True, help="the epoch the primary now holds")
    epoch = sub.add_parser("set-epoch", help="ask the replicator to raise the primary's epoch (recovery)")
    epoch.add_argument("--epoch", type=int, required=True, help="the new epoch (never lower than the current)")
    epoch.add_argument("--wait", type=float, default=15.0, help="seconds to wait for the replicator to answer")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
        if args.command == "status":
            return status(settings)
        if args.command == "activate":
            return activate(settings, args.force, args.reason, args.wait)
        if args.command == "set-epoch":
            return set_epoch(settings, args.epoch, args.wait)
        return deactivate(settings, args.epoch)
    except config.ConfigError as exc:
        print(f"wirebot.hosttools.ctl: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

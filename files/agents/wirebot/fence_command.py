"""Primary side of the fence: the forced command of the standby's fence SSH key.

Install in the primary's /root/.ssh/authorized_keys (one line)::

  command="PYTHONPATH=/opt/wirebot/agents /usr/bin/python3 -m wirebot.fence_command",restrict \
      ssh-ed25519 AAAA... wirebot-fence

Whatever ``SSH_ORIGINAL_COMMAND`` says, this can only do one of two things:

* ``status`` (exactly): read-only; print {"fenced", "connector_active", "unit_active", "unit_enabled",
  "fenced_info"}.
* anything else (the standby sends ``fence``): write /var/lib/wirebot/fenced.json
  {"fenced_at", "by", "reason"} first (so the start gate refuses a restart even if what follows
  fails), ``systemctl stop`` the connector unit, ``systemctl mask`` it, and print
  {"fenced": true, "connector_active": false, ...}; exit 0 only when the unit is no longer active.

The unit must not live in /etc/systemd/system (``systemctl mask`` refuses to mask a unit whose file is
there); install it under /usr/lib/systemd/system (overrides as drop-ins). A failed mask is reported
("masked": false) but does not make the fence fail: the unit is stopped and the start gate refuses
while fenced.json exists. Recovery undoes the fence: ``systemctl unmask`` + remove fenced.json.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys

from . import statefile


def _systemctl(systemctl, *args):
    try:
        proc = subprocess.run([systemctl] + list(args), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, "", str(exc)
    return proc.returncode, proc.stdout.strip(), proc.stderr.strip()


def _unit_active(systemctl, unit):
    code, out, _ = _systemctl(systemctl, "is-active", unit)
    state = out.splitlines()[-1] if out else ("active" if code == 0 else "unknown")
    return state, state in ("active", "activating", "reloading", "deactivating")


def _read_fenced(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"unreadable": True}


def _clean(text, limit=200):
    return "".join(ch for ch in (text or "") if ch.isprintable())[:limit]


def status(args):
    """Read-only report of the connector unit and the fence record."""
    state, active = _unit_active(args.systemctl, args.unit)
    _, enabled, _ = _systemctl(args.systemctl, "is-enabled", args.unit)
    info = _read_fenced(args.fenced_file)
    return 0, {"fenced": info is not None, "connector_active": active, "unit_active": state,
               "unit_enabled": enabled.splitlines()[-1] if enabled else "unknown", "fenced_info": info}


def fence(args, original):
    """Record the fence, stop and mask the connector unit; report whether it is down."""
    client = os.environ.get("SSH_CLIENT", "").split(" ")[0]
    reason = "fence requested over SSH"
    if original and original != "fence":
        reason += f" (command {_clean(original, 80)!r} treated as fence)"
    record = {"fenced_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "by": client or "local", "reason": reason}
    errors = []
    try:
        statefile.save(args.fenced_file, record)
    except OSError as exc:
        errors.append(f"cannot write {args.fenced_file}: {exc.strerror or exc}")
    code, _, err = _systemctl(args.systemctl, "stop", args.unit)
    if code != 0:
        errors.append(f"stop exit {code}: {_clean(err)}")
    mask_code, _, mask_err = _systemctl(args.systemctl, "mask", args.unit)
    if mask_code != 0:
        errors.append(f"mask exit {mask_code}: {_clean(mask_err)}")
    state, active = _unit_active(args.systemctl, args.unit)
    reply = {"fenced": not active, "connector_active": active, "unit_active": state,
             "masked": mask_code == 0, "record": record}
    if errors:
        reply["errors"] = errors
    return (0 if not active else 1), reply


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m wirebot.fence_command",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--unit", default="cloudflared-wirebot", help="connector unit to stop and mask")
    parser.add_argument("--systemctl", default="/bin/systemctl", help="systemctl binary")
    parser.add_argument("--fenced-file", default="/var/lib/wirebot/fenced.json", help="fence record path")
    args = parser.parse_args(argv)
    original = (os.environ.get("SSH_ORIGINAL_COMMAND") or "").strip()
    if original == "status":
        code, reply = status(args)
    else:
        code, reply = fence(args, original)
    sys.stdout.write(json.dumps(reply, sort_keys=True) + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())

"""Primary side of the fence: the forced command of the standby's fence SSH key, and the primary's own
self-demotion (wirebot.primary.lease calls ``fence_units``).

The deploy installs it in the primary's /root/.ssh/authorized_keys with the configured units and fence
file on the command line (tasks/provision/trust), e.g.::

  command="PYTHONPATH=/opt/wirebot/agents /usr/bin/python3 -m wirebot.hosttools.fence_command
      --unit cloudflared-wirebot --unit openclaw-gateway --unit wirebot-scoreboard
      --fenced-file /var/lib/wirebot/fenced.json",restrict,from="STANDBY" ssh-ed25519 AAAA... wirebot-fence

Whatever ``SSH_ORIGINAL_COMMAND`` says, this can only do one of two things:

* ``status`` (exactly): read-only; print {"fenced", "connector_active", "units": {unit: {load, active}},
  "fenced_info"}.
* anything else (the standby sends ``fence``): write the fence record {"fenced_at", "by", "reason"}
  first (the start gate refuses a restart even if what follows fails), take the serving lease away
  (``nft flush set inet wirebot lease``: the kernel drops serving traffic at once), then stop every unit
  (a unit still stopping after 10 s - a connector draining towards an edge it cannot reach - is
  killed) and ``systemctl mask`` it; print {"fenced", "connector_active", "units", ...}.

"Fenced" means every named unit is loaded (or masked), inactive and masked. A unit that is not loaded
(not-found: a renamed or missing unit) is never reported fenced: the reply says which and why, exit 1,
and the standby's automatic activation stays blocked (FENCE_BLOCKED with this reason). The unit files
must not live in /etc/systemd/system (``systemctl mask`` refuses to mask a unit whose file is there);
they are installed under /usr/local/lib/systemd/system. Recovery undoes the fence: ``systemctl unmask``
+ remove the fence record.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

from wirebot.common import layout, statefile

DEFAULT_UNITS = (layout.CONNECTOR_UNIT,)
LEASE_SET = ("inet", "wirebot", "lease")
RUNNING = ("active", "activating", "reloading", "deactivating")


def _run(argv, timeout=60):
    try:
        proc = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, "", str(exc)
    return proc.returncode, proc.stdout.strip(), proc.stderr.strip()


def _systemctl(systemctl, *args):
    return _run([systemctl] + list(args))


def unit_view(systemctl, unit):
    """{"load": LoadState, "active": ActiveState} of ``unit`` ("unknown" when systemctl fails)."""
    _, out, _ = _systemctl(systemctl, "show", unit, "--property=LoadState,ActiveState")
    values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return {"load": values.get("LoadState") or "unknown", "active": values.get("ActiveState") or "unknown"}


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


def _summary(units, views, connector):
    """The reply's verdict: fenced only when every unit is loaded/masked, inactive and masked."""
    problems = []
    for unit in units:
        view = views[unit]
        if view["load"] not in ("loaded", "masked"):
            problems.append(f"{unit} is not loaded (LoadState {view['load']}): nothing known by that name "
                            "can be fenced; check the configured unit names")
        elif view["active"] in RUNNING or view["active"] == "unknown":
            problems.append(f"{unit} is still {view['active']}")
        elif view["load"] != "masked":
            problems.append(f"{unit} is stopped but not masked")
    active = any(views[u]["active"] in RUNNING for u in units if u == connector) if connector else False
    return not problems, active, problems


def status(args):
    """Read-only report of the units and the fence record."""
    views = {unit: unit_view(args.systemctl, unit) for unit in args.units}
    fenced_units, connector_active, problems = _summary(args.units, views, args.units[0])
    info = _read_fenced(args.fenced_file)
    return 0, {"fenced": info is not None and fenced_units, "connector_active": connector_active,
               "units": views, "problems": problems, "fenced_info": info}


def revoke_lease(nft="nft"):
    """Empty the primary's serving-lease set; (ok, error). A host without the table has no lease."""
    code, _, err = _run([nft, "flush", "set"] + list(LEASE_SET), timeout=10)
    if code == 0 or "No such file or directory" in err:
        return True, None
    return False, f"nft flush set exit {code}: {_clean(err)}"


def _wait_stopped(systemctl, units, seconds):
    """Poll until none of ``units`` runs or ``seconds`` pass; return those still running."""
    deadline = time.monotonic() + seconds
    while True:
        left = [unit for unit in units if unit_view(systemctl, unit)["active"] in RUNNING]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


def fence_units(units, fenced_file, systemctl="/bin/systemctl", nft="nft", by="local", reason="fence",
                stop_seconds=10.0):
    """Record the fence, take the lease away, stop and mask every unit; return (exit code, reply)."""
    units = list(units)
    record = {"fenced_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "by": by, "reason": reason}
    errors = []
    try:
        statefile.save(fenced_file, record)
    except OSError as exc:
        errors.append(f"cannot write {fenced_file}: {exc.strerror or exc}")
    ok, error = revoke_lease(nft)
    if not ok:
        errors.append(error)
    before = {unit: unit_view(systemctl, unit) for unit in units}
    known = [unit for unit in units if before[unit]["load"] != "not-found"]  # a name systemd does not know
    for unit in known:  # all stops at once; a unit still draining after stop_seconds is killed
        code, _, err = _systemctl(systemctl, "stop", unit, "--no-block")
        if code != 0:
            errors.append(f"stop {unit} exit {code}: {_clean(err)}")
    left = _wait_stopped(systemctl, known, stop_seconds)
    for unit in left:
        _systemctl(systemctl, "kill", unit, "--signal=SIGKILL")
        errors.append(f"{unit} did not stop within {stop_seconds:.0f}s: killed")
    _wait_stopped(systemctl, left, min(5.0, stop_seconds))
    for unit in known:
        code, _, err = _systemctl(systemctl, "mask", unit)
        if code != 0:
            errors.append(f"mask {unit} exit {code}: {_clean(err)}")
    views = {unit: unit_view(systemctl, unit) for unit in units}
    fenced, connector_active, problems = _summary(units, views, units[0] if units else None)
    reply = {"fenced": fenced, "connector_active": connector_active, "units": views,
             "masked": all(v["load"] == "masked" for v in views.values()), "record": record,
             "unit_active": views[units[0]]["active"] if units else None}
    if problems:
        reply["problems"] = problems
    if errors:
        reply["errors"] = errors
    return (0 if fenced else 1), reply


def fence(args, original):
    client = os.environ.get("SSH_CLIENT", "").split(" ")[0]
    reason = "fence requested over SSH"
    if original and original != "fence":
        reason += f" (command {_clean(original, 80)!r} treated as fence)"
    return fence_units(args.units, args.fenced_file, args.systemctl, args.nft, client or "local", reason,
                       args.stop_seconds)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m wirebot.hosttools.fence_command",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--unit", dest="units", action="append",
                        help="a unit to stop and mask (repeat; the first is the connector); default "
                             + ", ".join(DEFAULT_UNITS))
    parser.add_argument("--systemctl", default="/bin/systemctl", help="systemctl binary")
    parser.add_argument("--nft", default="nft", help="nft binary (the serving lease)")
    parser.add_argument("--fenced-file", default=layout.fenced_file(), help="fence record path")
    parser.add_argument("--stop-seconds", type=float, default=10.0, help="wait this long before killing a unit")
    args = parser.parse_args(argv)
    args.units = args.units or list(DEFAULT_UNITS)
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

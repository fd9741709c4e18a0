"""Standby side of the fence: stop the primary's connector through a forced-command SSH key.

Runs ``ssh -i KEY -o BatchMode=yes -o UserKnownHostsFile=KNOWN -o StrictHostKeyChecking=yes
-o ConnectTimeout=N USER@PRIMARY fence``. On the primary the key is bound (authorized_keys
``command=``) to ``python3 -m wirebot.hosttools.fence_command``, which can only stop and mask the cloudflared
unit, record /var/lib/wirebot/fenced.json and print ``{"fenced": true, "connector_active": false}``.

Config keys (section ``primary:`` of standby.yml):

* ``address`` (str, required) - the primary's address on the private link
* ``fence_user`` (str, default root) - the forced-command key's user
* ``fence_ssh_key`` (str, required) - private key path
* ``known_hosts`` (str, required) - pinned host key of the primary (StrictHostKeyChecking=yes)
* ``ssh_timeout_seconds`` (number, default 10) - ConnectTimeout; the whole call is bounded at 3x this
* ``ssh_binary`` (str, default ssh) - tests substitute a fake
"""

import json
import subprocess
import time

from wirebot.common import config


def load_settings(cfg, path):
    """Read the ``primary:`` section of standby.yml."""
    return {
        "address": config.get(cfg, "primary.address", str, path),
        "user": config.get(cfg, "primary.fence_user", str, path, default="root"),
        "key": config.get(cfg, "primary.fence_ssh_key", str, path),
        "known_hosts": config.get(cfg, "primary.known_hosts", str, path),
        "timeout_seconds": config.get(cfg, "primary.ssh_timeout_seconds", float, path, default=10.0),
        "ssh_binary": config.get(cfg, "primary.ssh_binary", str, path, default="ssh"),
    }


def ssh_argv(settings, command="fence"):
    """The exact ssh argv used for ``command`` ("fence" or "status")."""
    return [
        settings["ssh_binary"], "-i", settings["key"],
        "-o", "BatchMode=yes",
        "-o", "UserKnownHostsFile=" + settings["known_hosts"],
        "-o", "StrictHostKeyChecking=yes",
        "-o", "ConnectTimeout={}".format(int(max(1, round(settings["timeout_seconds"])))),
        "{}@{}".format(settings["user"], settings["address"]),
        command,
    ]


def parse_reply(stdout):
    """The last JSON object line of the forced command's stdout, or None."""
    for line in reversed((stdout or "").splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict):
                return data
    return None


def fence(settings, command="fence", now=None):
    """Run the fence over SSH. Returns a result dict (never raises):

    {"at", "ok", "fenced", "connector_active", "exit_code", "reply", "error", "seconds"}.
    ``ok`` is True only when ssh exited 0 and the reply says fenced true and connector_active false.
    """
    started = time.monotonic()
    result = {"at": time.time() if now is None else now, "ok": False, "fenced": False,
              "connector_active": None, "exit_code": None, "reply": None, "error": None,
              "target": "{}@{}".format(settings["user"], settings["address"])}
    try:
        proc = subprocess.run(ssh_argv(settings, command), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=max(5.0, settings["timeout_seconds"] * 3))
    except subprocess.TimeoutExpired:
        result["error"] = "ssh timed out"
    except OSError as exc:
        result["error"] = f"cannot run ssh: {exc.strerror or exc}"
    else:
        result["exit_code"] = proc.returncode
        reply = parse_reply(proc.stdout)
        result["reply"] = reply
        if reply is not None:
            result["fenced"] = reply.get("fenced") is True
            result["connector_active"] = reply.get("connector_active")
        if proc.returncode != 0 and not result["error"]:
            tail = (proc.stderr or "").strip().splitlines()[-1:] or [""]
            result["error"] = f"ssh exit {proc.returncode}: {tail[0][:300]}"
        elif reply is None:
            result["error"] = "no JSON reply from the fence command"
        result["ok"] = (proc.returncode == 0 and result["fenced"] and result["connector_active"] is False)
        if not result["ok"] and not result["error"]:
            result["error"] = f"fence command did not confirm: {json.dumps(reply)[:300]}"
    result["seconds"] = round(time.monotonic() - started, 3)
    return result

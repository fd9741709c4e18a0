"""The lab's baseline, "primary serving, standby watching, epoch 1", as lab tests and benches need it:
whether the lab is in it, a full reset to it, and the recovery playbook back to it."""

import time

from wirebot.common import layout

from lab import machines, settings
from lab.agents import standby_status
from lab.client import connector_origins, public
from lab.commands import lab_cli, pyinfra
from lab.shell import LabError
from tasks.core.wait import wait_for


def lab_is_clean(interval=1):
    """True when the lab is in its just-deployed state: the primary serves alone at epoch 1 with its
    connector up and not fenced, the standby watches at epoch 1 and gets heartbeats, fast timings."""
    status = standby_status()
    if not status or (status["state"], status["epoch"]) != ("STANDBY", 1):
        return False
    age = status.get("last_heartbeat_age_seconds")
    if age is None or age > 3 * interval or connector_origins() != {settings.address("primary")}:
        return False
    checks = (f"systemctl is-active -q {layout.CONNECTOR_UNIT} {layout.REPLICATOR_UNIT} {layout.LITESTREAM_UNIT} && "
              f"test ! -e {layout.fenced_file()} && "
              f"python3 -c 'import json; assert json.load(open(\"{layout.state_file()}\"))[\"epoch\"] == 1'")
    if machines.ssh("primary", checks, check=False, timeout=20).returncode != 0:
        return False
    timing = f"grep -q '^  interval_seconds: {interval}$' /etc/wirebot/standby.yml"
    return machines.ssh("standby", timing, check=False, timeout=20).returncode == 0


def primary_serves():
    """The standby watches and hears heartbeats, the primary's connector is the only one at the edge and
    the public hostname answers through it."""
    status = standby_status()
    return bool(status and status["state"] == "STANDBY" and status.get("last_heartbeat")
                and connector_origins() == {settings.address("primary")}
                and public("wins.wirebot.chat", "/health")[0] == 200)


def fresh_lab(*deploy_args):
    """Reset this lab to "primary serving, standby watching, epoch 1": `lab down`, `lab up` and a deploy
    (extra pyinfra arguments such as "--data", "fencing_watch_seconds=2" go to the deploy), then
    wait until heartbeats flow and the edge routes to the primary. Returns the seconds it took (~45)."""
    started = time.monotonic()
    lab_cli("down")
    lab_cli("up")
    result = pyinfra(*deploy_args, "lab/inventory.py", "deploy.py")
    if result.returncode != 0:
        raise LabError(f"deploy after the lab reset failed:\n{(result.stdout + result.stderr)[-3000:]}")
    wait_for(primary_serves, timeout=120, what="heartbeats and the primary's connector after the reset")
    seconds = time.monotonic() - started
    print(f"fresh lab in {seconds:.1f} s")
    return seconds


def ensure_clean_lab():
    """fresh_lab() unless lab_is_clean() already; returns True when it had to reset."""
    if lab_is_clean():
        return False
    fresh_lab()
    return True


def recover_primary():
    """Run the recovery playbook (the primary serves again, the standby watches) and wait until the standby
    hears fresh heartbeats and the primary's connector is the only one at the edge."""
    result = pyinfra("lab/inventory.py", "tasks/recovery.py")
    if result.returncode != 0:
        raise LabError(f"tasks/recovery.py failed:\n{(result.stdout + result.stderr)[-3000:]}")
    wait_for(lambda: (s := standby_status()) and s["state"] == "STANDBY" and s.get("last_heartbeat_age_seconds",
                                                                                    9) < 2,
             timeout=60, what="the standby watching again after the recovery")
    wait_for(lambda: connector_origins() == {settings.address("primary")}, timeout=30,
             what="the primary's connector back at the edge")

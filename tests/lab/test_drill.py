"""The fire drill on the lab (tasks/drill.py), destructive: a full drill end to end (the surface writes
through the edge before, during and after the outage; failover and recovery through their playbooks), a
dry run that changes nothing, and a drill refused while the standby is ACTIVE for real.

The module starts from a lab where the primary serves and the standby watches (reset when it is not);
the refusal test hands traffic back through the recovery playbook.
"""

import json
import time

import pytest

from lab import settings
from lab.agents import standby_status
from lab.baseline import fresh_lab
from lab.client import connector_origins, edge, public, webhooks
from lab.commands import pyinfra
from lab.machines import ssh
from tasks.core.wait import WaitTimeout, wait_for

PRIMARY = settings.address("primary")
LOG = "/var/log/wirebot/fire-drill.log"
CTL = "PYTHONPATH=/opt/wirebot/agents python3 -m wirebot.hosttools.ctl --config /etc/wirebot/standby.yml"


def drillable() -> bool:
    """The normal state a drill starts from: the standby STANDBY with heartbeats, only the primary's
    connector at the edge, the primary not fenced, the public endpoint answering."""
    status = standby_status()
    return bool(status and status["state"] == "STANDBY" and status.get("last_heartbeat")
                and connector_origins() == {PRIMARY} and public("api.wirebot.chat", "/health")[0] == 200
                and ssh("primary", "test ! -e /var/lib/wirebot/fenced.json", check=False).returncode == 0)


@pytest.fixture(scope="module", autouse=True)
def ready_lab():
    try:
        wait_for(drillable, timeout=20, what="a drillable lab")
    except WaitTimeout:
        fresh_lab()


def log_lines() -> list:
    result = ssh("primary", f"cat {LOG} 2>/dev/null || true")
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def run_drill(local_dir, *extra):
    started = time.time()
    result = pyinfra("--data", f"drill_local_dir={local_dir}", *extra, "lab/inventory.py", "tasks/drill.py",
                     timeout=1200)
    print(result.stdout[-7000:])
    print(result.stderr[-3000:])
    print(f"drill run: {time.time() - started:.1f} s, exit {result.returncode}")
    return result


def test_a_full_drill_loses_and_doubles_nothing(tmp_path):
    since = time.time()
    result = run_drill(tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Fire drill PASSED" in result.stdout
    lines = (tmp_path / "fire-drill.log").read_text().splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert (tmp_path / "drills" / report["drill_id"] / "surface.db").exists()
    assert report["result"] == "passed" and report["failed_steps"] == []
    assert [(s["n"], s["status"]) for s in report["steps"]] == [(n, "ok") for n in range(1, 12)]
    events = report["events"]
    assert events["created"] == events["found"] > 0
    assert (events["lost"], events["doubled"], events["unexpected"]) == (0, 0, 0)
    assert events["before"] > 0 and events["during"] > 0 and events["after"] > 0 and events["waited"] > 0
    states = [t["state"] for t in report["surface"]["transitions"]]
    assert "offline" in states[2:] and states[-1] == "online"
    assert all(report["seconds"][k] is not None for k in ("detection", "activation", "end_to_end", "outage"))
    print("seconds:", report["seconds"], "events:", {k: v for k, v in events.items() if k != "lost_ids"})
    # the real gateways answered: the standby's during the outage, the primary's after the recovery (the
    # lab's model server names the gateway that asked it)
    assert "answered by the standby's gateway: 'Wirebot lab model, via the standby gateway: " in report["steps"][4][
        "detail"]
    assert "answered by the primary's gateway: 'Wirebot lab model, via the primary gateway: " in report["steps"][7][
        "detail"]

    on_primary = [line for line in log_lines() if line["drill_id"] == report["drill_id"]]
    assert len(on_primary) == 1 and on_primary[0]["result"] == "passed"
    assert on_primary[0]["events"] == events and on_primary[0]["steps"][10]["status"] == "pending"

    mine = [h for h in webhooks(since) if report["drill_id"] in str((h.get("body") or {}).get("content"))]
    assert len(mine) == 1 and mine[0]["body"]["content"].startswith("**Fire drill PASSED")
    status, overlaps = edge(f"/lab/overlaps?since={since}")
    assert status == 200 and overlaps == [], overlaps
    assert drillable()  # the primary serves again, the standby watches


def test_a_dry_run_changes_nothing(tmp_path):
    before = (standby_status()["epoch"], len(log_lines()))
    result = pyinfra("--dry", "--data", f"drill_local_dir={tmp_path}", "lab/inventory.py", "tasks/drill.py",
                     confirm=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Fire drill step 1" in result.stdout + result.stderr
    assert (standby_status()["epoch"], len(log_lines())) == before
    assert not (tmp_path / "fire-drill.log").exists() and drillable()


def test_a_drill_refuses_while_the_standby_is_active(tmp_path):
    activated = ssh("standby", f"{CTL} activate --reason 'lab: a real incident' --wait 60", check=False, timeout=90)
    assert activated.returncode == 0, activated.stdout + activated.stderr
    active = standby_status()
    assert active["state"] == "ACTIVE"
    lines_before = len(log_lines())
    result = run_drill(tmp_path)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "fire drill refused: the standby is ACTIVE" in output and "tasks/recovery.py" in output
    assert "Starting operation" not in output  # refused at prepare time: not one operation ran
    after = standby_status()
    assert (after["state"], after["epoch"]) == ("ACTIVE", active["epoch"])
    assert len(log_lines()) == lines_before and not (tmp_path / "fire-drill.log").exists()

    recovered = pyinfra("lab/inventory.py", "tasks/recovery.py", timeout=900)
    print(recovered.stdout[-3000:])
    assert recovered.returncode == 0, recovered.stderr[-2000:]
    wait_for(drillable, timeout=60, what="the primary serving again after the recovery")


def test_a_failed_step_fails_the_drill_and_traffic_still_goes_back(tmp_path):
    """Chat to a hostname the edge does not route (Error 1016): step 5 fails, the exit status is non-zero,
    and the rest still runs: recovery, drain, verdict, log line and alert."""
    since = time.time()
    result = run_drill(tmp_path, "--data", "drill_chat_hostname=nowhere.wirebot.chat")
    assert result.returncode != 0
    assert "Fire drill FAILED" in result.stdout
    report = json.loads((tmp_path / "fire-drill.log").read_text().splitlines()[-1])
    assert report["result"] == "failed" and report["failed_steps"] == [5, 8]  # 8: its chat after the recovery
    assert "HTTP 530" in report["steps"][4]["detail"] and "HTTP 530" in report["steps"][7]["detail"]
    assert "recovery: " in report["steps"][7]["detail"]  # the recovery itself ran
    assert (report["events"]["lost"], report["events"]["doubled"]) == (0, 0)
    assert [line["result"] for line in log_lines() if line["drill_id"] == report["drill_id"]] == ["failed"]
    mine = [h for h in webhooks(since) if report["drill_id"] in str((h.get("body") or {}).get("content"))]
    assert len(mine) == 1 and mine[0]["body"]["content"].startswith("**Fire drill FAILED")
    assert drillable()

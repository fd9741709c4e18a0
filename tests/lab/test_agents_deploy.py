"""Runtime agents on the lab (issue: runtime agents): a deploy that brings new agent code restarts both
agents, so they never keep running the old code (a deploy without new code changes nothing: see
test_provision's second-deploy test).

Runs deploy.py from a copy of this checkout whose agent code carries one extra line, then from this
checkout again (which puts the code back). Starts from a clean lab (reset when it is not).
"""

import shutil
import subprocess
import uuid

from lab.agents import agent, standby_status
from lab.baseline import ensure_clean_lab
from lab.commands import PYINFRA, ROOT, pyinfra
from lab.machines import ssh
from tasks.core.wait import wait_for

AGENTS = {"primary": "wirebot-replicator", "standby": "wirebot-standby"}
CODE = "/opt/wirebot/agents/wirebot/common/log.py"


def main_pids() -> dict:
    return {name: ssh(name, f"systemctl show -p MainPID --value {unit}").stdout.strip()
            for name, unit in AGENTS.items()}


def agents_serve() -> bool:
    status = standby_status()
    return bool(status and status["state"] == "STANDBY" and status["last_heartbeat_age_seconds"] is not None
                and status["last_heartbeat_age_seconds"] < 3 and agent("primary", "/health")[0] == 200)


def test_new_agent_code_restarts_both_agents(tmp_path):
    ensure_clean_lab()
    marker = f"# lab test marker {uuid.uuid4().hex}"
    copy = tmp_path / "checkout"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info",
                                                              ".ruff_cache", ".pytest_cache", ".hypothesis"))
    code = copy / "files" / "agents" / "wirebot" / "common" / "log.py"
    code.write_text(code.read_text() + marker + "\n")
    before = main_pids()
    try:
        result = subprocess.run([PYINFRA, "-y", "lab/inventory.py", "deploy.py"], cwd=copy, capture_output=True,
                                text=True, timeout=600, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        after = main_pids()
        for name in AGENTS:
            assert ssh(name, f"tail -1 {CODE}").stdout.strip() == marker, name
            assert after[name] != before[name], f"{AGENTS[name]} kept running the old code"
        wait_for(agents_serve, timeout=30, what="both agents serving again with the new code")
    finally:
        restored = pyinfra("lab/inventory.py", "deploy.py")
    assert restored.returncode == 0, (restored.stdout + restored.stderr)[-3000:]
    for name in AGENTS:
        assert marker not in ssh(name, f"tail -1 {CODE}").stdout, name
    wait_for(agents_serve, timeout=30, what="both agents serving again with this checkout's code")

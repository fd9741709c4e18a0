"""wirebot.hosttools.fence_command (primary side, fake systemctl) and wirebot.standby.fencing (standby side,
fake ssh)."""

import json
import os
import stat
import subprocess
import sys

import pytest
from wirebot.hosttools import fence_command
from wirebot.standby import fencing

from .. import agenttest

UNIT = "cloudflared-wirebot"


def run_command(fake, tmp_path, original, env_extra=None):
    env = dict(os.environ, PYTHONPATH=agenttest.AGENTS, SSH_CLIENT="10.213.0.3 51234 22")
    env.pop("SSH_ORIGINAL_COMMAND", None)
    if original is not None:
        env["SSH_ORIGINAL_COMMAND"] = original
    env.update(env_extra or {})
    fenced = tmp_path / "lib" / "fenced.json"
    proc = subprocess.run([sys.executable, "-m", "wirebot.hosttools.fence_command", "--systemctl", fake.path,
                           "--fenced-file", str(fenced), "--stop-seconds", "0.3"], env=env, capture_output=True,
                          text=True, timeout=30)
    return proc, json.loads(proc.stdout.strip().splitlines()[-1]), fenced


def acts(fake):
    """The calls that change something (show is read-only)."""
    return [call for call in fake.calls() if call.split()[0] != "show"]


def test_fence_stops_masks_records_and_reports(fake_systemctl, tmp_path):
    fake_systemctl.set_state(UNIT, "active")
    proc, reply, fenced = run_command(fake_systemctl, tmp_path, "fence")
    assert proc.returncode == 0
    assert reply["fenced"] is True and reply["connector_active"] is False and reply["masked"] is True
    assert acts(fake_systemctl) == [f"stop {UNIT}", f"mask {UNIT}"]
    assert fake_systemctl.state(UNIT) == "inactive" and fake_systemctl.masked(UNIT)
    assert reply["units"] == {UNIT: {"load": "masked", "active": "inactive"}}
    record = json.loads(fenced.read_text())
    assert set(record) == {"fenced_at", "by", "reason"} and record["by"] == "10.213.0.3"
    assert stat.S_IMODE(os.stat(fenced).st_mode) == 0o600


def test_fence_names_every_configured_unit(fake_systemctl, tmp_path):
    units = ["cloudflared-x", "openclaw-gateway", "wirebot-scoreboard"]
    for unit in units:
        fake_systemctl.set_state(unit, "active")
    argv = [a for u in units for a in ("--unit", u)]
    code, reply = fence_command.fence_units(units, str(tmp_path / "f.json"), fake_systemctl.path,
                                            nft=str(tmp_path / "no-nft"))
    assert code == 0 and reply["fenced"] is True and argv
    for unit in units:
        assert fake_systemctl.state(unit) == "inactive" and fake_systemctl.masked(unit)


def test_a_unit_that_is_not_loaded_is_never_fenced(fake_systemctl, tmp_path):
    fake_systemctl.missing("cloudflared-renamed")
    fake_systemctl.set_state("openclaw-gateway", "active")
    code, reply = fence_command.fence_units(["cloudflared-renamed", "openclaw-gateway"],
                                            str(tmp_path / "f.json"), fake_systemctl.path,
                                            nft=str(tmp_path / "no-nft"))
    assert code == 1 and reply["fenced"] is False
    assert any("cloudflared-renamed is not loaded (LoadState not-found)" in p for p in reply["problems"])
    assert "stop cloudflared-renamed" not in fake_systemctl.calls()
    assert fake_systemctl.masked("openclaw-gateway")  # what can be fenced still is


@pytest.mark.parametrize("original", ["rm -rf /", "systemctl start cloudflared-wirebot", "", None])
def test_any_other_command_can_only_fence(fake_systemctl, tmp_path, original):
    fake_systemctl.set_state(UNIT, "active")
    proc, reply, fenced = run_command(fake_systemctl, tmp_path, original)
    assert reply["fenced"] is True and proc.returncode == 0
    verbs = {call.split()[0] for call in fake_systemctl.calls()}
    assert verbs <= {"stop", "mask", "show"}
    if original:
        assert "treated as fence" in json.loads(fenced.read_text())["reason"]


def test_status_is_read_only(fake_systemctl, tmp_path):
    fake_systemctl.set_state(UNIT, "active")
    proc, reply, fenced = run_command(fake_systemctl, tmp_path, "status")
    assert proc.returncode == 0
    assert reply["fenced"] is False and reply["connector_active"] is True and reply["fenced_info"] is None
    assert reply["units"] == {UNIT: {"load": "loaded", "active": "active"}}
    assert {c.split()[0] for c in fake_systemctl.calls()} == {"show"}
    assert not fenced.exists()
    run_command(fake_systemctl, tmp_path, "fence")
    _, reply, _ = run_command(fake_systemctl, tmp_path, "status")
    assert reply["fenced"] is True and reply["connector_active"] is False
    assert reply["units"][UNIT]["load"] == "masked"


def test_stopped_but_not_masked_is_not_fenced(fake_systemctl, tmp_path):
    fake_systemctl.set_state(UNIT, "active")
    fake_systemctl.fail("mask", UNIT, "Failed to mask unit: File /etc/systemd/system/x already exists.")
    proc, reply, fenced = run_command(fake_systemctl, tmp_path, "fence")
    assert proc.returncode == 1 and reply["fenced"] is False and reply["masked"] is False
    assert "mask cloudflared-wirebot exit 1" in reply["errors"][0] and fenced.exists()
    assert any("not masked" in p for p in reply["problems"])


def test_unit_that_will_not_stop_is_not_fenced(fake_systemctl, tmp_path):
    fake_systemctl.set_state(UNIT, "active")
    fake_systemctl.sticky(UNIT)
    proc, reply, _ = run_command(fake_systemctl, tmp_path, "fence")
    assert proc.returncode == 1 and reply["fenced"] is False and reply["connector_active"] is True
    assert f"kill {UNIT}" in fake_systemctl.calls() and "did not stop within" in reply["errors"][0]


def test_main_in_process(fake_systemctl, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SSH_ORIGINAL_COMMAND", "fence")
    code = fence_command.main(["--systemctl", fake_systemctl.path, "--fenced-file", str(tmp_path / "f.json")])
    assert code == 0 and json.loads(capsys.readouterr().out)["fenced"] is True


# standby side ---------------------------------------------------------------------------------------
def fake_ssh(tmp_path, script):
    path = tmp_path / "ssh"
    path.write_text("#!/bin/sh\necho \"$@\" > \"$(dirname \"$0\")/ssh-args\"\n" + script)
    path.chmod(0o755)
    return str(path)


def fence_settings(ssh):
    return {"address": "10.213.0.2", "user": "root", "key": "/k/fence", "known_hosts": "/k/known",
            "timeout_seconds": 3.0, "ssh_binary": ssh}


def test_ssh_argv_is_exact():
    argv = fencing.ssh_argv(fence_settings("ssh"))
    assert argv == ["ssh", "-i", "/k/fence", "-o", "BatchMode=yes", "-o", "UserKnownHostsFile=/k/known",
                    "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=3", "root@10.213.0.2", "fence"]


def test_fence_ok(tmp_path):
    ssh = fake_ssh(tmp_path, "echo banner\necho '{\"fenced\": true, \"connector_active\": false}'\n")
    result = fencing.fence(fence_settings(ssh), now=7.0)
    assert result["ok"] and result["fenced"] and result["connector_active"] is False and result["at"] == 7.0
    assert (tmp_path / "ssh-args").read_text().split()[-2:] == ["root@10.213.0.2", "fence"]


@pytest.mark.parametrize("script,needle", [
    ("echo 'ssh: connect to host 10.213.0.2 port 22: Connection refused' >&2; exit 255", "ssh exit 255"),
    ("echo '{\"fenced\": false, \"connector_active\": true}'; exit 1", "ssh exit 1"),
    ("echo '{\"fenced\": true, \"connector_active\": true}'", "did not confirm"),
    ("echo hello", "no JSON reply"),
])
def test_fence_failures(tmp_path, script, needle):
    result = fencing.fence(fence_settings(fake_ssh(tmp_path, script + "\n")))
    assert not result["ok"] and needle in result["error"]


def test_fence_missing_binary(tmp_path):
    result = fencing.fence(fence_settings(str(tmp_path / "nope")))
    assert not result["ok"] and "cannot run ssh" in result["error"]

"""The scheduled drill's units: rendered, installed under --root, idempotent, and a calendar that
`systemd-analyze calendar` says elapses on the first Sunday of the month at 03:00 in Los Angeles."""

import os
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tasks.drills import timer

ROOT = Path(__file__).resolve().parents[4]
LA = ZoneInfo("America/Los_Angeles")


def cli(*args, env=None):
    return subprocess.run([sys.executable, str(ROOT / "tasks" / "drill_timer.py"), *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def test_next_elapses_are_first_sundays_at_three_in_los_angeles():
    times = timer.next_elapses(iterations=14)  # more than a year: both DST and standard time
    assert len(times) == 14
    offsets = set()
    for t in times:
        local = t.astimezone(LA)
        print(t.isoformat(), "->", local.isoformat())
        assert local.weekday() == 6 and 1 <= local.day <= 7, local
        assert (local.hour, local.minute, local.second) == (3, 0, 0), local
        offsets.add(local.utcoffset())
    assert len(offsets) == 2  # PST and PDT: the zone is honoured, not a fixed UTC hour
    months = [(t.astimezone(LA).year, t.astimezone(LA).month) for t in times]
    assert len(set(months)) == len(months)  # once a month


def test_a_bad_calendar_is_refused():
    with pytest.raises(RuntimeError, match="calendar"):
        timer.next_elapses("Sunday-ish at three")


def test_units_render_the_drill_command_from_this_checkout():
    units = timer.render(user="operator", environment={"WIREBOT_SETTINGS": "/home/operator/w.yml"})
    service, timer_unit = units["wirebot-drill.service"], units["wirebot-drill.timer"]
    assert f"WorkingDirectory={ROOT}\n" in service
    assert f"ExecStart={ROOT}/.venv/bin/pyinfra -y inventory.py tasks/drill.py\n" in service
    assert "User=operator\n" in service and 'Environment="WIREBOT_SETTINGS=/home/operator/w.yml"\n' in service
    assert "Type=oneshot\n" in service
    assert f"OnCalendar={timer.ON_CALENDAR}\n" in timer_unit
    assert timer.ON_CALENDAR == "Sun *-*-01..07 03:00:00 America/Los_Angeles"
    assert "Unit=wirebot-drill.service\n" in timer_unit and "WantedBy=timers.target\n" in timer_unit
    assert units == timer.render(user="operator", environment={"WIREBOT_SETTINGS": "/home/operator/w.yml"})


def test_install_show_uninstall_under_a_root(tmp_path):
    first = cli("install", "--root", str(tmp_path), "--user", "root")
    assert first.returncode == 0, first.stderr
    folder = tmp_path / "etc" / "systemd" / "system"
    service, timer_file = folder / "wirebot-drill.service", folder / "wirebot-drill.timer"
    assert "wrote: " in first.stdout and service.exists() and timer_file.exists()
    assert oct(timer_file.stat().st_mode & 0o777) == "0o644"
    assert "systemctl enable --now wirebot-drill.timer" in first.stdout  # systemd is not PID 1 here
    assert "next drills: Sun " in first.stdout
    again = cli("install", "--root", str(tmp_path), "--user", "root")
    assert "wrote:" not in again.stdout and again.stdout.count("unchanged: ") == 2
    verify = subprocess.run(["systemd-analyze", "verify", str(timer_file), str(service)], capture_output=True,
                            text=True, timeout=60)
    assert verify.returncode == 0, verify.stderr
    assert "installed\n" in cli("show", "--root", str(tmp_path), "--user", "root").stdout
    timer_file.write_text(timer_file.read_text().replace("03:00:00", "04:00:00"))
    assert "DIFFERENT" in cli("show", "--root", str(tmp_path), "--user", "root").stdout
    gone = cli("uninstall", "--root", str(tmp_path))
    assert gone.returncode == 0 and not service.exists() and not timer_file.exists()
    assert "systemctl disable --now wirebot-drill.timer" in gone.stdout


def test_each_pair_gets_a_timer_of_its_own_limited_to_it():
    units = timer.render(user="operator", environment={}, pair="acme")
    service, timer_unit = units["wirebot-drill-acme.service"], units["wirebot-drill-acme.timer"]
    assert f"ExecStart={ROOT}/.venv/bin/pyinfra -y --limit acme inventory.py tasks/drill.py\n" in service
    assert "Unit=wirebot-drill-acme.service\n" in timer_unit and "of pair acme" in timer_unit
    assert timer.enable_commands("acme")[1] == ["systemctl", "enable", "--now", "wirebot-drill-acme.timer"]
    with pytest.raises(Exception, match="pair name"):
        timer.render(user="operator", environment={}, pair="../x")


def test_install_makes_one_timer_per_pair_of_the_settings_and_uninstall_one_pair(tmp_path):
    settings = tmp_path / "settings.yml"
    settings.write_text("pairs:\n  wirebot: {primary: {address: 203.0.113.10}, standby: {address: 203.0.113.20}}\n"
                        "  acme: {primary: {address: 198.51.100.10}, standby: {address: 198.51.100.20}}\n")
    env = {"WIREBOT_SETTINGS": str(settings)}
    assert cli("install", "--root", str(tmp_path), "--user", "root", env=env).returncode == 0
    folder = tmp_path / "etc" / "systemd" / "system"
    assert sorted(p.name for p in folder.iterdir()) == [
        "wirebot-drill-acme.service", "wirebot-drill-acme.timer",
        "wirebot-drill-wirebot.service", "wirebot-drill-wirebot.timer"]
    verify = subprocess.run(["systemd-analyze", "verify", *map(str, sorted(folder.iterdir()))],
                            capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stderr
    assert cli("uninstall", "--root", str(tmp_path), "--pair", "acme", env=env).returncode == 0
    assert sorted(p.name for p in folder.iterdir()) == ["wirebot-drill-wirebot.service", "wirebot-drill-wirebot.timer"]

"""The scheduled drill: wirebot-drill.service + wirebot-drill.timer on the control machine (one pair), or
wirebot-drill-NAME.service + .timer per pair NAME of an inventory with several pairs (its drill runs
`pyinfra -y --limit NAME ...`: the drill acts on that pair only, tasks/core/pairs.py).

The timer fires on the first Sunday of each month at 03:00 America/Los_Angeles (seed section 14); the
service runs `pyinfra -y inventory.py tasks/drill.py` from this checkout with its virtualenv, as the user
who installed it, keeping WIREBOT_SETTINGS / WIREBOT_SECRETS_DIR when they were set. Units are rendered
from templates/drill-timer.{service,timer}.j2 and written under ROOT/etc/systemd/system (ROOT is / on a
real control machine; tests pass a temporary directory). CLI: tasks/drill_timer.py.
"""

import getpass
import os
import re
import runpy
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import jinja2

from tasks.core.checkout import CHECKOUT, TEMPLATES

UNIT = "wirebot-drill"
ON_CALENDAR = runpy.run_path(str(CHECKOUT / "group_data" / "all.py"))["drill_schedule"]
DESCRIPTION = "first Sunday of the month, 03:00 America/Los_Angeles"
UNIT_DIR = "etc/systemd/system"
KEPT_ENVIRONMENT = ("WIREBOT_SETTINGS", "WIREBOT_SECRETS_DIR")
TIMEOUT_SECONDS = 2 * 3600  # a drill waits at most minutes per step; two hours is a stuck drill
ELAPSE = re.compile(r"(?:Next elapse|Iter\. #\d+): \w{3} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC$")


def default_user() -> str:
    """Who the drill runs as: the user behind sudo, else the current one (their settings, their keys)."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


def unit_name(pair: str = None) -> str:
    """The units' name: wirebot-drill, or wirebot-drill-NAME for pair NAME."""
    if pair is None:
        return UNIT
    from tasks.core.pairs import check_name

    return f"{UNIT}-{check_name(pair, 'the drill timer')}"


def render(checkout: Path = CHECKOUT, venv: Path = None, user: str = None, inventory: str = "inventory.py",
           environment: dict = None, pair: str = None) -> dict:
    """{file name: text} of the two units (of `pair`, when named); deterministic for the same arguments."""
    venv = Path(venv or checkout / ".venv")
    if environment is None:
        environment = {k: os.environ[k] for k in KEPT_ENVIRONMENT if os.environ.get(k)}
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    unit = unit_name(pair)
    values = {"unit": unit, "pair": pair, "user": user or default_user(), "checkout": str(checkout),
              "pyinfra": str(venv / "bin" / "pyinfra"), "inventory": inventory,
              "environment": sorted(environment.items()), "timeout_seconds": TIMEOUT_SECONDS,
              "on_calendar": ON_CALENDAR, "description": DESCRIPTION}
    return {f"{unit}.service": env.get_template("drill-timer.service.j2").render(values),
            f"{unit}.timer": env.get_template("drill-timer.timer.j2").render(values)}


def unit_dir(root: Path) -> Path:
    return Path(root) / UNIT_DIR


def systemd_running(root: Path) -> bool:
    """True when ROOT is this machine's / and systemd is its init (units can be enabled now)."""
    return Path(root).resolve() == Path("/") and Path("/run/systemd/system").is_dir()


def write_units(root: Path, units: dict) -> list:
    """Write each unit (0644) unless it already has that content; [(path, changed)]."""
    folder = unit_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in units.items():
        path = folder / name
        changed = not path.exists() or path.read_text() != text
        if changed:
            tmp = path.with_name(f".{name}.tmp")
            tmp.write_text(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        written.append((path, changed))
    return written


def remove_units(root: Path, pair: str = None) -> list:
    """Delete the two unit files (of `pair`); the paths that existed."""
    removed = []
    for name in (f"{unit_name(pair)}.service", f"{unit_name(pair)}.timer"):
        path = unit_dir(root) / name
        if path.exists():
            path.unlink()
            removed.append(path)
    return removed


def enable_commands(pair: str = None) -> list:
    return [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", f"{unit_name(pair)}.timer"]]


def disable_commands(pair: str = None) -> list:
    return [["systemctl", "disable", "--now", f"{unit_name(pair)}.timer"], ["systemctl", "daemon-reload"]]


def settings_pairs() -> list:
    """The pairs the operator's settings name (`pairs:` form), else [None]: the one pair's timer."""
    from tasks.core.operator_settings import load

    named = load().get("pairs")
    return sorted(named) if isinstance(named, dict) and named else [None]


def run(commands: list) -> None:
    for argv in commands:
        subprocess.run(argv, check=True)


def next_elapses(calendar: str = ON_CALENDAR, iterations: int = 3) -> list:
    """The next `iterations` times `calendar` elapses (aware UTC datetimes), from `systemd-analyze
    calendar`; RuntimeError when it is missing or rejects the expression."""
    tool = shutil.which("systemd-analyze")
    if not tool:
        raise RuntimeError("systemd-analyze is not installed (Debian: apt-get install systemd)")
    proc = subprocess.run([tool, "calendar", f"--iterations={iterations}", calendar], capture_output=True,
                          text=True, env={**os.environ, "TZ": "UTC"}, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"systemd-analyze calendar {calendar!r}: {proc.stderr.strip()}")
    times = [m.group(1) for m in (ELAPSE.search(line.strip()) for line in proc.stdout.splitlines()) if m]
    return [datetime.strptime(t, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc) for t in times]

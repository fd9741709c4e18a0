"""Install the monthly fire drill's systemd timer on this control machine.

  python tasks/drill_timer.py install   [--root DIR] [--user USER] [--venv DIR] [--inventory FILE] [--pair NAME]
  python tasks/drill_timer.py uninstall [--root DIR] [--pair NAME]
  python tasks/drill_timer.py show      [--root DIR] [--user USER] [--venv DIR] [--inventory FILE] [--pair NAME]

install writes /etc/systemd/system/wirebot-drill.service and wirebot-drill.timer (first Sunday of the
month, 03:00 America/Los_Angeles; the service runs `pyinfra -y inventory.py tasks/drill.py` from this
checkout with its .venv), then, when systemd runs this machine, `systemctl daemon-reload` and `enable
--now wirebot-drill.timer`; otherwise it prints those commands. Running it again changes nothing.
Several pairs: one wirebot-drill-NAME.service/.timer per pair (`--pair NAME`, repeatable; default: every
pair of the operator's `pairs:` settings), whose service runs `pyinfra -y --limit NAME ...`.
uninstall disables the timer and removes both files. show prints the units, whether the installed ones
match, and the next three drill times. --root DIR writes under DIR instead of / (tests, packaging).
"""

import argparse
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

from tasks.drills import timer

LA = ZoneInfo("America/Los_Angeles")


def _commands_text(commands) -> str:
    return "\n".join("  " + " ".join(argv) for argv in commands)


def _schedule() -> str:
    try:
        times = timer.next_elapses(iterations=3)
    except RuntimeError as error:
        return f"next drills: unknown ({error})"
    return "next drills: " + ", ".join(t.astimezone(LA).strftime("%a %Y-%m-%d %H:%M %Z") for t in times)


def _pairs(args) -> list:
    """The pairs named with --pair, else the operator settings' pairs (None: the one pair's timer)."""
    return args.pair or timer.settings_pairs()


def install(args) -> int:
    for pair in _pairs(args):
        units = timer.render(venv=args.venv, user=args.user, inventory=args.inventory, pair=pair)
        for path, changed in timer.write_units(args.root, units):
            print(f"{'wrote' if changed else 'unchanged'}: {path}")
        if timer.systemd_running(args.root):
            timer.run(timer.enable_commands(pair))
            print(f"enabled: {timer.unit_name(pair)}.timer ({timer.DESCRIPTION})")
        else:
            print(f"systemd is not running here (or --root is not /): to enable the timer, run\n"
                  f"{_commands_text(timer.enable_commands(pair))}")
    print(_schedule())
    return 0


def uninstall(args) -> int:
    running = timer.systemd_running(args.root)
    for pair in _pairs(args):
        if running and (timer.unit_dir(args.root) / f"{timer.unit_name(pair)}.timer").exists():
            timer.run(timer.disable_commands(pair)[:1])
        removed = timer.remove_units(args.root, pair)
        for path in removed:
            print(f"removed: {path}")
        if not removed:
            print(f"nothing of {timer.unit_name(pair)} to remove under {timer.unit_dir(args.root)}")
        if running:
            timer.run(timer.disable_commands(pair)[1:])
        elif removed:
            print(f"systemd is not running here (or --root is not /): when it is, run\n"
                  f"{_commands_text(timer.disable_commands(pair))}")
    return 0


def show(args) -> int:
    for pair in _pairs(args):
        for name, text in timer.render(venv=args.venv, user=args.user, inventory=args.inventory, pair=pair).items():
            path = timer.unit_dir(args.root) / name
            state = "not installed" if not path.exists() else (
                "installed" if path.read_text() == text else "installed, DIFFERENT (run install)")
            print(f"# {path}: {state}\n{text}")
    print(_schedule())
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python tasks/drill_timer.py", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("install", "uninstall", "show"))
    parser.add_argument("--root", type=Path, default=Path("/"), help="install under DIR (default: /)")
    parser.add_argument("--user", default=None, help="run the drill as USER (default: the sudo user or you)")
    parser.add_argument("--venv", type=Path, default=None, help="virtualenv with pyinfra (default: .venv here)")
    parser.add_argument("--inventory", default="inventory.py", help="inventory file (default: inventory.py)")
    parser.add_argument("--pair", action="append", default=None, metavar="NAME",
                        help="the pair whose drill timer this is (repeatable; default: every pair of the "
                             "operator's settings' `pairs:` form, else the one pair's wirebot-drill timer)")
    args = parser.parse_args(argv)
    return {"install": install, "uninstall": uninstall, "show": show}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())

"""python -m lab up | down | status | ssh HOST [CMD] | ssh-config | kill HOST | boot HOST |
shutdown HOST | cut A B | heal A B | drop SRC DST | undrop SRC DST | freeze HOST | thaw HOST |
loss SRC DST PERCENT | unloss SRC DST | delay SRC DST MS [--jitter MS] [--reply MS] | undelay SRC DST |
starve HOST SHARE [--hogs N] | unstarve HOST | faults | calm (lab/chaos.py: what stands in for netem)"""

import argparse
import json
import os
import sys

from lab import chaos, freezer, lab, machines, network, settings
from lab.shell import LabError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="build and boot the lab (idempotent; clears leftovers of an interrupted run)")
    sub.add_parser("down", help="remove everything the lab made (the rootfs cache stays)")
    sub.add_parser("status", help="print the lab's state as JSON")
    sub.add_parser("ssh-config", help="print an ssh_config for the lab hosts (for testinfra and people)")
    ssh = sub.add_parser("ssh", help="open a shell (or run CMD) on a lab host over SSH")
    ssh.add_argument("host", choices=settings.SYSTEMD_HOSTS)
    ssh.add_argument("cmd", nargs=argparse.REMAINDER)
    for name, text in (("kill", "crash a host (SIGKILL)"), ("boot", "boot a stopped host"),
                       ("shutdown", "shut a host down cleanly"),
                       ("freeze", "freeze all of a host's processes (cgroup freezer)"),
                       ("thaw", "let a frozen host run on")):
        one = sub.add_parser(name, help=text)
        one.add_argument("host", choices=settings.SYSTEMD_HOSTS)
    for name, text in (("cut", "drop all traffic between two hosts"), ("heal", "undo cut"),
                       ("drop", "one-way loss: drop the first host's packets to the second"),
                       ("undrop", "undo drop")):
        pair = sub.add_parser(name, help=text)
        pair.add_argument("a", choices=list(settings.HOSTS))
        pair.add_argument("b", choices=list(settings.HOSTS))
    hosts = list(settings.HOSTS)
    one = sub.add_parser("loss", help="random packet loss: drop PERCENT %% of SRC's packets to DST (nftables)")
    one.add_argument("a", choices=hosts)
    one.add_argument("b", choices=hosts)
    one.add_argument("percent", type=float)
    one = sub.add_parser("delay", help="latency/jitter on the TCP connections SRC opens to DST (delay proxy)")
    one.add_argument("a", choices=hosts)
    one.add_argument("b", choices=hosts)
    one.add_argument("ms", type=float, help="delay of what SRC sends")
    one.add_argument("--jitter", type=float, default=0.0, metavar="MS", help="+/- uniform, per chunk")
    one.add_argument("--reply", type=float, default=0.0, metavar="MS", help="delay of DST's answers")
    for name, text in (("unloss", "undo loss"), ("undelay", "undo delay")):
        pair = sub.add_parser(name, help=text)
        pair.add_argument("a", choices=hosts)
        pair.add_argument("b", choices=hosts)
    one = sub.add_parser("starve", help="CPU starvation: limit HOST to SHARE CPUs with busy loops in its group")
    one.add_argument("host", choices=settings.SYSTEMD_HOSTS)
    one.add_argument("share", type=float)
    one.add_argument("--hogs", type=int, default=2)
    one = sub.add_parser("unstarve", help="undo starve")
    one.add_argument("host", choices=settings.SYSTEMD_HOSTS)
    sub.add_parser("faults", help="print the injected faults in force as JSON")
    sub.add_parser("calm", help="remove every injected fault (loss, delay, starve)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0 and args.command != "ssh-config":
        print("the lab needs root (namespaces, systemd-nspawn)", file=sys.stderr)
        return 1
    try:
        if args.command == "up":
            seconds = lab.up()
            print(f"lab is up in {seconds:.1f} s: " + ", ".join(
                f"{name} {settings.address(name)}" for name in settings.HOSTS))
            print(f"ssh: ssh -F {settings.SSH_CONFIG} primary   deploy: pyinfra lab/inventory.py deploy.py")
        elif args.command == "down":
            lab.down()
            left = lab.leftovers()
            print("lab is down" if not left else "lab is down, but left: " + "; ".join(left))
            return 1 if left else 0
        elif args.command == "status":
            print(json.dumps(lab.status(), indent=2))
        elif args.command == "ssh-config":
            print(settings.SSH_CONFIG.read_text() if settings.SSH_CONFIG.exists() else "", end="")
        elif args.command == "ssh":
            argv = ["ssh", "-F", str(settings.SSH_CONFIG), args.host] + args.cmd
            os.execvp("ssh", argv)
        elif args.command == "kill":
            machines.kill(args.host)
        elif args.command == "boot":
            machines.boot(args.host)
        elif args.command == "shutdown":
            machines.shutdown(args.host)
        elif args.command == "cut":
            network.cut(args.a, args.b)
        elif args.command == "heal":
            network.heal(args.a, args.b)
        elif args.command == "drop":
            network.drop(args.a, args.b)
        elif args.command == "undrop":
            network.undrop(args.a, args.b)
        elif args.command == "loss":
            chaos.loss(args.a, args.b, args.percent)
        elif args.command == "unloss":
            chaos.unloss(args.a, args.b)
        elif args.command == "delay":
            chaos.delay(args.a, args.b, args.ms, args.jitter, args.reply)
        elif args.command == "undelay":
            chaos.undelay(args.a, args.b)
        elif args.command == "starve":
            chaos.starve(args.host, args.share, args.hogs)
        elif args.command == "unstarve":
            chaos.unstarve(args.host)
        elif args.command == "faults":
            print(json.dumps(chaos.active(), indent=2))
        elif args.command == "calm":
            chaos.heal_all()
        elif args.command == "freeze":
            freezer.freeze(args.host)
        elif args.command == "thaw":
            freezer.thaw(args.host)
    except LabError as error:
        print(f"lab: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

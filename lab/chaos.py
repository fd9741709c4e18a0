"""Fault injection on the lab (test equipment): packet loss, latency and jitter per direction between two
lab hosts, and CPU starvation of a lab host. Every fault is removable (``calm``/``heal_all``) and ``lab
down`` removes them all (lab.down calls heal_all first).

**No netem here.** This machine's kernel has no ``sch_netem`` (``tc qdisc add ... netem``: "Specified
qdisc kind is unknown", no modules to load; nor sfq/fq/fq_codel/prio; only htb and tbf, which shape a rate
but add no fixed delay without a full queue), so the faults are made from what the kernel has:

* **loss** SRC -> DST at P %: an nftables rule in SRC's network namespace, table ``inet wirebot_chaos``,
  chain ``loss`` (filter, output hook, priority -5): ``ip daddr DST numgen random mod 1000 < P*10 counter
  drop``. Real per-packet loss, any protocol, one direction (the packets SRC sends to DST), connections
  already open included. The table is separate from the hosts' own ``inet wirebot`` (never touched).
* **latency / jitter** SRC -> DST: a userspace TCP proxy (lab/delay_proxy.py) run in SRC's namespace, and
  an nftables ``redirect to :PORT`` (chain ``delay``, nat output hook) sending SRC's *new* TCP connections
  to DST (except SSH, port 22) to it; the proxy connects on with a socket mark the rule skips. It delays the
  bytes SRC sends by D ms and the answer by R ms (each +/- J ms, in order). This is not netem: it delays
  byte streams of TCP connections SRC opens, not packets (no effect on ICMP/UDP or on connections DST
  opens). Connections SRC already holds open to DST (the primary's kept-alive heartbeat connection) are
  reset when the fault starts (``ss -K``, as a path change would), so they reconnect through the proxy;
  when it ends the proxy stops and its connections reset the same way. The proxy's upstream traffic is root's:
  on the primary the lease gate's per-user rule (``meta skuid @lease_users``) no longer sees the
  gateway's own user for a proxied connection (the tunnel-port rule still applies).
* **CPU starvation** of HOST at SHARE CPUs: every process of HOST's PID namespace is moved into a
  cgroup-v1 cpu group ``/sys/fs/cgroup/cpu/wirebot-lab<id>-<host>-chaos`` with a CFS quota of SHARE x
  100 ms per 100 ms period, and N busy-loop hog processes (run on this machine, tracked by pid files) join
  it: the host's own processes then get about SHARE x (their runnable threads / (those + N)) of a CPU.
  Processes the host forks meanwhile inherit the group; ``unstarve`` moves every one of them back to the
  cpu group systemd-nspawn runs in, kills the hogs and removes the group.

Nothing of this is ever deployed: it runs on the control machine against lab namespaces only.
"""

import re
import shutil
import sys
from pathlib import Path

from lab import machines, network, processes, settings
from lab.shell import LabError, run
from tasks.core.wait import WaitTimeout, wait_for

TABLE = "inet wirebot_chaos"
MARK = 0x5742  # socket mark of the delay proxies' own connections (the redirect rule skips it)
CPU = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000
HOG = "while True: pass"
PROXY_BASE_PORT = 41000  # + 10 x index(SRC) + index(DST) in settings.HOSTS, on 127.0.0.1 in SRC's namespace


# --- pure command building (unit-tested) -------------------------------------------------------------

def setup_script() -> str:
    """nft: the chaos table and its two chains (idempotent: add never fails on an existing one)."""
    return (f"add table {TABLE}\n"
            f"add chain {TABLE} loss {{ type filter hook output priority -5; policy accept; }}\n"
            f"add chain {TABLE} delay {{ type nat hook output priority -100; policy accept; }}\n")


def remove_script() -> str:
    """nft: remove the chaos table with everything in it (idempotent: add first, then delete)."""
    return f"add table {TABLE}\ndelete table {TABLE}\n"


def comment(kind: str, dst: str) -> str:
    return f"chaos {kind} to {dst}"


def loss_rule(dst: str, percent: float) -> str:
    """nft: drop `percent` % of the packets to lab host `dst`, at random."""
    permille = round(percent * 10)
    return (f"add rule {TABLE} loss ip daddr {settings.address(dst)} numgen random mod 1000 < {permille} "
            f'counter drop comment "{comment("loss", dst)}"\n')


def delay_rule(dst: str, port: int) -> str:
    """nft: redirect new TCP connections to lab host `dst` (but SSH and the proxy's own) to :port."""
    return (f"add rule {TABLE} delay ip daddr {settings.address(dst)} tcp dport != 22 meta mark != {MARK:#x} "
            f'redirect to :{port} comment "{comment("delay", dst)}"\n')


def reset_argv(src: str, dst: str) -> list:
    """ss: reset (SOCK_DESTROY) every TCP connection `src` holds open to lab host `dst`, except SSH."""
    return ["ip", "netns", "exec", settings.netns(src), "ss", "-K", "-t", "dst", settings.address(dst),
            "dport", "!=", ":22"]


def delete_rules_script(listing: str, chain: str, wanted_comment: str) -> str:
    """nft: delete the rules of `chain` whose comment is `wanted_comment`, found in `nft -a list chain`."""
    out = ""
    for line in listing.splitlines():
        m = re.search(r'comment "([^"]*)" # handle (\d+)$', line.strip())
        if m and m.group(1) == wanted_comment:
            out += f"delete rule {TABLE} {chain} handle {m.group(2)}\n"
    return out


def proxy_port(src: str, dst: str) -> int:
    names = list(settings.HOSTS)
    return PROXY_BASE_PORT + 10 * names.index(src) + names.index(dst)


def proxy_name(src: str, dst: str) -> str:
    """The lab process name (pid file) of the delay proxy for SRC -> DST."""
    return f"chaos-delay-{src}-{dst}"


def proxy_argv(src: str, dst: str, delay_ms: float, reply_ms: float, jitter_ms: float) -> list:
    return ["ip", "netns", "exec", settings.netns(src), sys.executable, "-m", "lab.delay_proxy",
            "--port", str(proxy_port(src, dst)), "--mark", f"{MARK:#x}", "--delay-ms", f"{delay_ms:g}",
            "--reply-ms", f"{reply_ms:g}", "--jitter-ms", f"{jitter_ms:g}",
            "--name", f"wirebot-lab{settings.LAB_ID}-{src}-{dst}"]


def hog_name(host: str, index: int) -> str:
    return f"chaos-hog-{host}-{index}"


def hog_argv(host: str) -> list:
    return [sys.executable, "-c", HOG, f"wirebot-lab{settings.LAB_ID}-hog-{host}"]


def quota_us(share: float) -> int:
    """The CFS quota (per PERIOD_US) that lets a group use `share` CPUs."""
    return max(1000, round(share * PERIOD_US))


def cpu_group(host: str) -> Path:
    return CPU / f"wirebot-lab{settings.LAB_ID}-{host}-chaos"


def check_pair(src: str, dst: str) -> None:
    for name in (src, dst):
        if name not in settings.HOSTS:
            raise LabError(f"unknown lab host {name!r}: choose from {', '.join(settings.HOSTS)}")
    if src == dst:
        raise LabError(f"a fault between {src} and itself makes no sense: name two different hosts")


def check_range(what: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise LabError(f"{what} must be between {low:g} and {high:g}, not {value:g}")


# --- applying and removing ---------------------------------------------------------------------------

def _nft(name: str, script: str, check: bool = True):
    if shutil.which("nft") is None:
        raise LabError("'nft' is not installed on this machine: apt-get install -y nftables")
    return run(["ip", "netns", "exec", settings.netns(name), "nft", "-f", "-"], check=check, input=script)


def _listing(name: str, chain: str) -> str:
    return run(["ip", "netns", "exec", settings.netns(name), "nft", "-a", "list", "chain", *TABLE.split(), chain],
               check=False).stdout


def _remove_rule(src: str, chain: str, kind: str, dst: str) -> None:
    script = delete_rules_script(_listing(src, chain), chain, comment(kind, dst))
    if script:
        _nft(src, script)


def loss(src: str, dst: str, percent: float) -> None:
    """Drop `percent` % of the packets `src` sends to `dst` (replaces an earlier loss fault on that path)."""
    check_pair(src, dst)
    check_range("loss percent", percent, 0.1, 100)
    _nft(src, setup_script())
    _remove_rule(src, "loss", "loss", dst)
    _nft(src, loss_rule(dst, percent))


def unloss(src: str, dst: str) -> None:
    check_pair(src, dst)
    if network.namespace_exists(src):
        _remove_rule(src, "loss", "loss", dst)


def delay(src: str, dst: str, delay_ms: float, jitter_ms: float = 0.0, reply_ms: float = 0.0) -> None:
    """Delay what `src` sends on new TCP connections to `dst` by delay_ms (the answers by reply_ms), each
    +/- jitter_ms (replaces an earlier delay fault on that path)."""
    check_pair(src, dst)
    for what, value in (("delay ms", delay_ms), ("reply ms", reply_ms), ("jitter ms", jitter_ms)):
        check_range(what, value, 0, 60_000)
    undelay(src, dst)
    processes.start(proxy_name(src, dst), proxy_argv(src, dst, delay_ms, reply_ms, jitter_ms))
    port = proxy_port(src, dst)
    log = processes.log_file(proxy_name(src, dst))

    def listening():
        if processes.pid_of(proxy_name(src, dst)) is None:
            raise LabError(f"the delay proxy {src} -> {dst} exited; see {log}")
        return run(["ip", "netns", "exec", settings.netns(src), "ss", "-Hltn", f"sport = :{port}"],
                   check=False).stdout.strip()

    try:
        wait_for(listening, 10, 0.05, f"the delay proxy {src} -> {dst} listening on :{port}")
    except WaitTimeout as timed_out:
        raise LabError(f"{timed_out}; see {log}") from None
    _nft(src, setup_script())
    _nft(src, delay_rule(dst, port))
    run(reset_argv(src, dst))  # what was open before the fault goes through the proxy from now on


def undelay(src: str, dst: str) -> None:
    check_pair(src, dst)
    if network.namespace_exists(src):
        _remove_rule(src, "delay", "delay", dst)
    processes.stop(proxy_name(src, dst))


def _cpu_path_of(pid: int) -> str:
    """The cgroup-v1 cpu path of `pid` (e.g. "/" or "/system.slice/x.service")."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return path
    raise LabError(f"pid {pid} has no cgroup-v1 cpu controller")


def _move(pids, group: Path) -> None:
    for pid in pids:
        try:
            (group / "cgroup.procs").write_text(f"{pid}\n")
        except OSError:
            pass  # gone meanwhile


def starve(host: str, share: float, hogs: int = 2) -> None:
    """Limit host `host` (all its processes) to `share` CPUs and add `hogs` busy loops to its group."""
    if host not in settings.SYSTEMD_HOSTS:
        raise LabError(f"CPU starvation needs a booted lab host ({', '.join(settings.SYSTEMD_HOSTS)}), not {host!r}")
    check_range("CPU share", share, 0.01, 64)
    check_range("hogs", hogs, 0, 16)
    if not (CPU / "cpu.cfs_quota_us").exists():
        raise LabError(f"no cgroup-v1 cpu controller with CFS bandwidth at {CPU}")
    group = cpu_group(host)
    group.mkdir(exist_ok=True)
    (group / "cpu.cfs_period_us").write_text(f"{PERIOD_US}\n")
    (group / "cpu.cfs_quota_us").write_text(f"{quota_us(share)}\n")
    for _ in range(2):  # a second pass catches what forked during the first
        _move(machines.pids(host), group)
    for index in range(int(hogs)):
        name = hog_name(host, index)
        pid = processes.pid_of(name) or processes.start(name, hog_argv(host))
        _move([pid], group)


def unstarve(host: str) -> None:
    """Kill the hogs of `host`, give its processes back to nspawn's cpu group, remove ours."""
    for pidfile in settings.RUN_DIR.glob(f"{hog_name(host, '*')}.pid"):
        processes.stop(pidfile.stem)
    group = cpu_group(host)
    if not group.is_dir():
        return
    nspawn = processes.pid_of(host)
    home = CPU / _cpu_path_of(nspawn).lstrip("/") if nspawn else CPU
    (group / "cpu.cfs_quota_us").write_text("-1\n")
    for _ in range(3):
        _move((group / "cgroup.procs").read_text().split(), home)
    try:
        group.rmdir()
    except OSError as error:
        raise LabError(f"could not remove {group}: {error} (pids left: "
                       f"{(group / 'cgroup.procs').read_text().split()})") from None


def active() -> dict:
    """Every chaos fault in force right now, read from the system: {"nft": {ns: listing}, "processes":
    [names], "cpu": [groups]}."""
    found = {"nft": {}, "processes": [], "cpu": []}
    for name in settings.HOSTS:
        if shutil.which("nft") and network.namespace_exists(name):
            listing = run(["ip", "netns", "exec", settings.netns(name), "nft", "list", "table", *TABLE.split()],
                          check=False).stdout
            rules = [line.strip() for line in listing.splitlines() if "comment \"chaos" in line]
            if rules:
                found["nft"][name] = rules
    if settings.RUN_DIR.is_dir():
        found["processes"] = sorted(p.stem for p in settings.RUN_DIR.glob("chaos-*.pid")
                                    if processes.pid_of(p.stem) is not None)
    found["cpu"] = [str(cpu_group(h)) for h in settings.SYSTEMD_HOSTS if cpu_group(h).is_dir()]
    return found


def heal_all() -> None:
    """Remove every chaos fault of this lab: the nft tables, the proxies and hogs, the cpu groups."""
    for name in settings.HOSTS:
        if shutil.which("nft") and network.namespace_exists(name):  # without nft no chaos table was made
            _nft(name, remove_script(), check=False)
    if settings.RUN_DIR.is_dir():
        for pidfile in settings.RUN_DIR.glob("chaos-delay-*.pid"):
            processes.stop(pidfile.stem)
    for host in settings.SYSTEMD_HOSTS:
        unstarve(host)

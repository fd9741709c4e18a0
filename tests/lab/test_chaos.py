"""lab/chaos.py on the running lab: each fault kind applies and heals, and healing leaves nothing behind.

Loss and delay are tried between the edge and the monitor namespaces (a listener of the test's own in the
monitor's namespace), so no agent path is disturbed; CPU starvation briefly holds the standby to a tenth of a CPU.
"""

import subprocess
import sys
import time

import pytest

from lab import chaos, machines, network, settings

PORT = 47001
LISTENER = f"""
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("{settings.address('monitor')}", {PORT})); s.listen(64)
while True:
    c, _ = s.accept()
    try:
        data = c.recv(100)
        c.sendall(b"pong:" + data)
    except OSError:
        pass
    c.close()
"""
HOLD = f"""
import socket
c = socket.create_connection(("{settings.address('monitor')}", {PORT}), timeout=5)
print("open", flush=True)
c.settimeout(30)
try:
    print("closed" if c.recv(100) == b"" else "data", flush=True)
except OSError as exc:
    print("reset", type(exc).__name__, flush=True)
"""
PROBE = f"""
import socket, sys, time
ok, seconds = 0, []
for _ in range(int(sys.argv[1])):
    started = time.monotonic()
    try:
        c = socket.create_connection(("{settings.address('monitor')}", {PORT}), timeout=float(sys.argv[2]))
        c.sendall(b"ping"); c.settimeout(float(sys.argv[2]) + 5)
        ok += c.recv(100) == b"pong:ping"
        c.close()
    except OSError:
        pass
    seconds.append(time.monotonic() - started)
print(ok, min(seconds))
"""


@pytest.fixture
def listener():
    proc = subprocess.Popen(["ip", "netns", "exec", settings.netns("monitor"), sys.executable, "-c", LISTENER])
    time.sleep(0.5)
    yield
    proc.kill()
    proc.wait()
    chaos.heal_all()


def probe(attempts, timeout):
    """(answered connections, shortest round trip s) from the edge's namespace to the listener."""
    out = subprocess.run(["ip", "netns", "exec", settings.netns("edge"), sys.executable, "-c", PROBE,
                          str(attempts), str(timeout)], capture_output=True, text=True, timeout=120, check=True)
    answered, shortest = out.stdout.split()
    return int(answered), float(shortest)


def test_loss_drops_a_share_of_the_packets_one_way_and_heals(listener):
    assert probe(10, 0.25)[0] == 10
    chaos.loss("edge", "monitor", 50)
    assert list(chaos.active()["nft"]) == ["edge"]
    answered, _ = probe(20, 0.25)  # a lost SYN is retried after 1 s: that attempt fails
    assert 0 < answered < 20  # some, not all (each way with chance about 0.5 ** 20)
    chaos.unloss("edge", "monitor")
    assert probe(10, 0.25)[0] == 10
    chaos.heal_all()
    assert chaos.active() == {"nft": {}, "processes": [], "cpu": []}


def test_delay_holds_back_what_the_source_sends_and_heals(listener):
    held = subprocess.Popen(["ip", "netns", "exec", settings.netns("edge"), sys.executable, "-c", HOLD],
                            stdout=subprocess.PIPE, text=True)
    assert held.stdout.readline().strip() == "open"  # a connection open before the fault ...
    chaos.delay("edge", "monitor", 300, jitter_ms=0, reply_ms=200)
    assert held.communicate(timeout=10)[0].startswith("reset")  # ... is reset, to reconnect through the proxy
    answered, shortest = probe(3, 5)
    assert answered == 3 and shortest >= 0.5  # every exchange went through the proxy: 300 + 200 ms at least
    assert chaos.active()["processes"] == [chaos.proxy_name("edge", "monitor")]
    chaos.undelay("edge", "monitor")
    assert chaos.active()["processes"] == [] and "redirect" not in str(chaos.active()["nft"])
    assert probe(3, 5)[0] == 3
    chaos.heal_all()
    assert chaos.active() == {"nft": {}, "processes": [], "cpu": []}
    assert network.namespace_ready("edge")


def test_cpu_starvation_throttles_the_whole_host_and_gives_it_back():
    group = chaos.cpu_group("standby")
    try:
        chaos.starve("standby", 0.1, hogs=1)
        inside = set((group / "cgroup.procs").read_text().split())
        assert {str(pid) for pid in machines.pids("standby")} <= inside
        hog = chaos.processes.pid_of(chaos.hog_name("standby", 0))
        assert str(hog) in inside
        assert (group / "cpu.cfs_quota_us").read_text().strip() == "10000"
        time.sleep(1.0)
        throttled = dict(line.split() for line in (group / "cpu.stat").read_text().splitlines())
        assert int(throttled["nr_throttled"]) > 0  # a hog wanting a whole CPU is held to a tenth of one
    finally:
        chaos.unstarve("standby")
    assert not group.exists()
    assert chaos.processes.pid_of(chaos.hog_name("standby", 0)) is None
    home = chaos._cpu_path_of(chaos.processes.pid_of("standby"))
    assert {path_of(pid) for pid in machines.pids("standby")} <= {home, None}


def path_of(pid):
    try:
        return chaos._cpu_path_of(pid)
    except FileNotFoundError:
        return None  # exited meanwhile

"""The lab itself (issue: the lab and the foundation): two real systemd hosts, an edge that routes like
Cloudflare, and the split-brain signal that later work must prevent."""

import time

import pytest

from lab import settings
from lab.client import edge, public
from lab.machines import ssh
from tasks.core.wait import wait_for


@pytest.mark.parametrize("name", settings.SYSTEMD_HOSTS)
def test_host_is_a_running_systemd_host_reached_over_ssh(name, request):
    host = request.getfixturevalue(name)
    assert host.check_output("hostname") == name
    assert host.run("systemctl is-system-running").stdout.strip() in ("running", "degraded")
    assert host.service("ssh").is_running
    assert host.check_output("ip -o -4 addr show dev eth0").split()[3] == f"{settings.address(name)}/24"


def test_hosts_reach_each_other_but_nothing_off_the_lab(primary):
    assert primary.run(f"timeout 3 bash -c '</dev/tcp/{settings.address('standby')}/22'").rc == 0
    routes = primary.check_output("ip route")
    assert "default" not in routes  # nothing is routed off this machine


def _start_connector(name: str, unit: str) -> None:
    """A second, hand-started connector of the lab tunnel on `name` (test-only transient unit)."""
    ssh(name, f"systemd-run --unit {unit} --collect /usr/bin/cloudflared --no-autoupdate "
              f"--metrics 127.0.0.1:20299 --config /etc/cloudflared/wirebot.yml tunnel run")


def _origins_serving(count: int) -> set:
    """Send `count` public requests; the set of origins the edge says served them."""
    seen = set()
    for _ in range(count):
        status, _ = public("wins.wirebot.chat", "/health")
        assert status in (200, 502)  # 502: the standby's connector reached its stopped scoreboard
    since = time.time() - 60
    _, log = edge(f"/lab/requests?since={since}")
    for entry in log[-count:]:
        seen.add(entry["origin_ip"])
    return seen


def test_edge_routes_to_the_primary_connector_only_while_it_is_alone():
    status, connectors = edge("/lab/connectors")
    assert status == 200
    origins = {c["origin_ip"] for c in connectors}
    assert origins == {settings.address("primary")}, connectors
    assert _origins_serving(20) == {settings.address("primary")}


def test_a_connector_on_both_hosts_splits_traffic_the_signal_later_work_prevents():
    started = time.time()
    _start_connector("standby", "lab-split-brain-test")
    try:
        wait_for(lambda: len({c["origin_ip"] for c in edge("/lab/connectors")[1]}) == 2,
                 timeout=15, what="the standby's connector to register")
        assert _origins_serving(60) == {settings.address("primary"), settings.address("standby")}
        status, overlaps = edge(f"/lab/overlaps?since={started}")
        assert status == 200 and overlaps, "the edge must report two origins connected at once"
    finally:
        ssh("standby", "systemctl stop lab-split-brain-test", check=False)
    wait_for(lambda: {c["origin_ip"] for c in edge("/lab/connectors")[1]} == {settings.address("primary")},
             timeout=10, what="the stopped connector to be deregistered")


def test_a_killed_connector_disappears_from_the_edge_within_seconds():
    _start_connector("standby", "lab-kill-test")
    wait_for(lambda: settings.address("standby") in {c["origin_ip"] for c in edge("/lab/connectors")[1]},
             timeout=15, what="the standby's connector to register")
    ssh("standby", "systemctl kill -s SIGKILL lab-kill-test", check=False)
    killed = time.monotonic()
    wait_for(lambda: settings.address("standby") not in {c["origin_ip"] for c in edge("/lab/connectors")[1]},
             timeout=settings.CONNECTOR_EXPIRY_SECONDS + 5, what="the killed connector to expire")
    assert time.monotonic() - killed < settings.CONNECTOR_EXPIRY_SECONDS + 5

"""tasks/provision/firewall/rules.py: the nft file of each host (the lab proves it live: test_fencing)."""

import pytest

from tasks.provision.firewall.rules import render


def primary(**extra):
    args = dict(role="primary", peer=["203.0.113.20"], ssh_sources=["198.51.100.0/24", "2001:db8::/32"],
                agent_port=8300, lease=True, tunnel_ports=[7844], lease_users=["wirebot"])
    args.update(extra)
    return render(**args)


def test_the_lease_set_is_never_flushed_by_a_reapply():
    text = primary()
    assert "add set inet wirebot lease { typeof meta nfproto; flags timeout; }" in text
    assert "flush set inet wirebot lease\n" not in text and "delete table" not in text


def test_ssh_and_the_agent_port_only_from_their_sources():
    text = primary()
    assert "add element inet wirebot ssh_v4 { 198.51.100.0/24, 203.0.113.20/32 }" in text
    assert "add element inet wirebot ssh_v6 { 2001:db8::/32 }" in text
    assert "add element inet wirebot agent_v4 { 203.0.113.20/32 }" in text  # the peer only
    assert "ip saddr @agent_v4 tcp dport 8300 accept" in text
    assert "add chain inet wirebot input { type filter hook input priority 0; policy drop; }" in text


def test_the_primary_gates_serving_traffic_on_the_lease_both_ways():
    text = primary(inbound=[{"port": 7845, "from": ["203.0.113.4"]}])
    for rule in ("input th sport @tunnel_ports jump lease_gate", "input th dport @public_ports jump lease_gate",
                 "output th dport @tunnel_ports jump lease_gate", "output th sport @public_ports jump lease_gate",
                 "output meta skuid @lease_users jump lease_gate", "lease_gate meta nfproto @lease return"):
        assert f"add rule inet wirebot {rule}" in text
    # the gate comes before "established": a frozen-then-thawed connector's old connection is cut too
    assert text.index("th sport @tunnel_ports jump lease_gate") < text.index("ct state established,related")


def test_the_standby_has_no_lease_gate():
    text = render("standby", ["203.0.113.10"], ["198.51.100.0/24"], 8300,
                  inbound=[{"port": 7845, "from": ["203.0.113.4"]}])
    assert "jump lease_gate" not in text and "add rule inet wirebot lease_gate return" in text
    assert "ip saddr { 203.0.113.4/32 } tcp dport 7845 accept" in text


def test_a_bad_address_is_refused_naming_the_setting():
    with pytest.raises(ValueError, match="firewall_ssh_sources: 'everyone'"):
        render("standby", ["203.0.113.10"], ["everyone"], 8300)


def test_the_metrics_sources_reach_the_agent_port_and_nothing_else():
    """The deploy's rules_for: agent_metrics_sources join firewall_agent_sources for agent_port only."""
    from types import SimpleNamespace

    from tasks.provision.firewall import rules_for

    data = SimpleNamespace(fencing_lease_enabled=False, wirebot_service_user="wirebot",
                           scoreboard_user="wirebot-scoreboard", fencing_lease_users=[],
                           firewall_ssh_sources=["198.51.100.0/24"], agent_port=8300,
                           firewall_agent_sources=[], agent_metrics_sources=["192.0.2.7", "2001:db8::7"],
                           firewall_inbound=[], fencing_tunnel_ports=[7844])
    text = rules_for(data, "standby", "203.0.113.10")
    assert "add element inet wirebot agent_v4 { 192.0.2.7/32, 203.0.113.10/32 }" in text
    assert "add element inet wirebot agent_v6 { 2001:db8::7/128 }" in text
    assert "192.0.2.7" not in text.split("agent_v4 {")[0] and text.count("192.0.2.7") == 1  # not SSH, not inbound
    data.agent_metrics_sources = []
    assert "add element inet wirebot agent_v4 { 203.0.113.10/32 }" in rules_for(data, "standby", "203.0.113.10")

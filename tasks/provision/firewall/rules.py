"""The host firewall and the serving lease as one nftables table (``inet wirebot``), rendered from settings.

Pure: ``render(...)`` returns the text of an ``nft -f`` file, so it is unit-tested without hosts. The file
is written with ``add`` + ``flush`` statements, never ``delete table``: re-applying it (a deploy, a reboot)
replaces every rule and every address set in one transaction but keeps the ``lease`` set's element, so a
re-deploy never takes the primary's lease away (docs/fencing.md).

Input (both hosts, policy drop): loopback; the lease gate (primary); established/related; ICMP; SSH
(:22) from the operator's sources and the peer; the agents' port from the peer (and the configured
extra agent sources); the extra inbound ports given. Output (policy accept): on the primary the
lease gate only. Nothing else of other tables is touched.

The lease gate (primary only): "serving traffic" - the tunnel's ports (both directions), the public
inbound ports, and anything sent by the serving users - passes only while the ``lease`` set holds the
packet's family (``ipv4``/``ipv6``), an element added with a timeout by the replicator on each heartbeat
the standby acknowledges (wirebot.primary.lease). The kernel drops the element when the timeout runs out, whether
or not any process of the host still runs.
"""

import ipaddress
from typing import Iterable, List, Sequence

TABLE = "inet wirebot"


def _split(sources: Iterable[str], where: str):
    v4, v6 = [], []
    for source in sources:
        try:
            net = ipaddress.ip_network(str(source), strict=False)
        except ValueError:
            raise ValueError(f"{where}: {source!r} is not an IP address or network") from None
        (v4 if net.version == 4 else v6).append(str(net))
    return sorted(set(v4)), sorted(set(v6))


def _set(name: str, kind: str, flags: str, elements: Sequence) -> List[str]:
    lines = [f"add set {TABLE} {name} {{ {kind}; {flags}}}".replace(";  }", "; }"),
             f"flush set {TABLE} {name}"]
    if elements:
        lines.append(f"add element {TABLE} {name} {{ {', '.join(str(e) for e in elements)} }}")
    return lines


def render(role: str, peer: Sequence[str], ssh_sources: Sequence[str], agent_port: int,
           agent_sources: Sequence[str] = (), inbound: Sequence[dict] = (), lease: bool = False,
           tunnel_ports: Sequence[int] = (), lease_users: Sequence[str] = ()) -> str:
    """The nft file for one host. ``inbound``: [{"port": int, "from": [cidr, ...]}] (lab: the stand-in's
    proxy port from the edge); on the primary with ``lease`` their traffic is serving traffic too."""
    peer4, peer6 = _split(peer, "peer")
    ssh4, ssh6 = _split(list(ssh_sources) + list(peer), "firewall_ssh_sources")
    ag4, ag6 = _split(list(agent_sources) + list(peer), "firewall_agent_sources")
    lines = [f"# Managed by the wirebot deploy (tasks/provision/firewall): the {role}'s host firewall"
             + (" and serving lease" if lease else "") + ".", f"add table {TABLE}"]
    lines += _set("lease", "typeof meta nfproto", "flags timeout; ", [])[:1]  # never flushed here
    lines += _set("ssh_v4", "type ipv4_addr", "flags interval; ", ssh4)
    lines += _set("ssh_v6", "type ipv6_addr", "flags interval; ", ssh6)
    lines += _set("agent_v4", "type ipv4_addr", "flags interval; ", ag4)
    lines += _set("agent_v6", "type ipv6_addr", "flags interval; ", ag6)
    lines += _set("tunnel_ports", "typeof th dport", "", sorted(set(int(p) for p in tunnel_ports)) if lease else [])
    lines += _set("public_ports", "typeof th dport", "", sorted({int(r["port"]) for r in inbound}))
    lines += _set("lease_users", "typeof meta skuid", "", sorted(set(lease_users)) if lease else [])
    del peer4, peer6
    for chain, hook, policy in (("input", "input", "drop"), ("output", "output", "accept")):
        lines += [f"add chain {TABLE} {chain} {{ type filter hook {hook} priority 0; policy {policy}; }}",
                  f"flush chain {TABLE} {chain}"]
    lines += [f"add chain {TABLE} lease_gate", f"flush chain {TABLE} lease_gate"]
    rule = lambda chain, text: f"add rule {TABLE} {chain} {text}"  # noqa: E731
    if lease:
        lines += [rule("lease_gate", "meta nfproto @lease return"),
                  rule("lease_gate", 'counter drop comment "serving traffic without a lease"')]
    else:
        lines += [rule("lease_gate", "return")]
    # input
    lines.append(rule("input", "iif lo accept"))
    if lease:
        lines += [rule("input", "th sport @tunnel_ports jump lease_gate"),
                  rule("input", "th dport @public_ports jump lease_gate")]
    lines += [rule("input", "ct state established,related accept"),
              rule("input", "ct state invalid drop"),
              rule("input", "meta l4proto icmp accept"),
              rule("input", "meta l4proto icmpv6 accept"),
              rule("input", "ip saddr @ssh_v4 tcp dport 22 accept"),
              rule("input", "ip6 saddr @ssh_v6 tcp dport 22 accept"),
              rule("input", f"ip saddr @agent_v4 tcp dport {int(agent_port)} accept"),
              rule("input", f"ip6 saddr @agent_v6 tcp dport {int(agent_port)} accept")]
    for entry in inbound:
        in4, in6 = _split(entry["from"], f"inbound port {entry['port']}")
        if in4:
            lines.append(rule("input", f"ip saddr {{ {', '.join(in4)} }} tcp dport {int(entry['port'])} accept"))
        if in6:
            lines.append(rule("input", f"ip6 saddr {{ {', '.join(in6)} }} tcp dport {int(entry['port'])} accept"))
    lines.append(rule("input", 'counter comment "dropped by policy"'))
    # output
    lines.append(rule("output", "oif lo accept"))
    if lease:
        lines += [rule("output", "th dport @tunnel_ports jump lease_gate"),
                  rule("output", "th sport @public_ports jump lease_gate"),
                  rule("output", "meta skuid @lease_users jump lease_gate")]
    return "\n".join(lines) + "\n"

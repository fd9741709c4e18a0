"""The host firewall (nftables, Debian and AlmaLinux alike) and, on the primary, the serving lease."""

from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server, systemd  # nftables comes with packages_apt/dnf (base)

from tasks.core import pairs, paths
from tasks.core.ops import managed_file, service
from tasks.provision.firewall.rules import render

UNIT = "wirebot-firewall"
UNIT_TEXT = """# Managed by the wirebot deploy (tasks/provision/firewall).
[Unit]
Description=Wirebot host firewall and serving lease (nftables table inet wirebot)
DefaultDependencies=no
Before=network-pre.target
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/nft -f {path}
ExecReload=/usr/sbin/nft -f {path}

[Install]
WantedBy=multi-user.target
"""


def rules_for(data, role: str, peer_address: str) -> str:
    """The nft file of this host (pure: tests call it with plain settings objects)."""
    lease = role == "primary" and data.fencing_lease_enabled
    users = sorted({data.wirebot_service_user, data.scoreboard_user, *data.fencing_lease_users})
    return render(role, [peer_address], data.firewall_ssh_sources, data.agent_port,
                  [*data.firewall_agent_sources, *data.agent_metrics_sources], data.firewall_inbound, lease=lease,
                  tunnel_ports=data.fencing_tunnel_ports, lease_users=users)


@deploy("Host firewall")
def firewall():
    """
    Guarantees: (nftables comes with packages_apt/packages_dnf, installed by base) the table
    ``inet wirebot`` loaded from firewall_rules_file by the unit wirebot-firewall (enabled, before the
    network; re-applied whenever the file changes, in one transaction that keeps the lease). Inbound:
    SSH only from firewall_ssh_sources and the peer, the agents' agent_port only from the peer,
    firewall_agent_sources and agent_metrics_sources (the metrics reader, served GET /metrics alone), the
    ports of firewall_inbound from their sources, replies and ICMP; everything else dropped. On the
    primary (fencing_lease_enabled) the serving traffic - fencing_tunnel_ports both ways, firewall_inbound
    ports, and whatever the users wirebot_service_user, scoreboard_user and fencing_lease_users send -
    passes only while the lease element exists (docs/fencing.md). Other tables are left alone.

    Reads: firewall_ssh_sources, firewall_agent_sources, agent_metrics_sources, firewall_inbound,
    firewall_rules_file, agent_port, fencing_lease_enabled, fencing_tunnel_ports, fencing_lease_users,
    wirebot_service_user, scoreboard_user.
    """
    data = host.data
    role = "primary" if "primary" in host.groups else "standby"
    peer = pairs.peer_of(host)
    rules = managed_file(name=f"Ensure {data.firewall_rules_file} holds this host's firewall.",
                      src=StringIO(rules_for(data, role, pairs.address_of(peer))),
                      dest=data.firewall_rules_file, user="root", group="root", mode="600")
    unit = managed_file(name=f"Ensure {UNIT}.service is installed.",
                     src=StringIO(UNIT_TEXT.format(path=data.firewall_rules_file)),
                     dest=f"{paths.UNIT_DIR}/{UNIT}.service", user="root", group="root", mode="644")
    systemd.daemon_reload(name="Reload systemd for the firewall unit.", _if=unit.did_change)
    service(name=f"Ensure {UNIT} is enabled and applied.", unit=UNIT, running=True, enabled=True)
    server.shell(name="Apply the changed firewall (one transaction; the lease is kept).",
                 commands=[f"nft -f {data.firewall_rules_file}"], _if=rules.did_change)

"""The replicator on the primary: Litestream supervision, file sync, the signed heartbeat, :8300 API."""

from pyinfra import host, inventory
from pyinfra.api import deploy

from tasks.provision import agent_configs
from tasks.provision.agent import install_agent
from tasks.provision.secrets_check import cloudflared_files
from tasks.provision.trust import address_of


@deploy("Replicator")
def replicator():
    """
    Guarantees: replicator_config rendered from settings (seed section 12 shape plus epoch state,
    witness and secrets paths), the unit replicator_unit enabled and running, restarted when its
    config or unit changes. The agents' code is installed by the base deploy.

    Reads: every key agent_configs.replicator reads, replicator_unit, replicator_config.
    """
    data = host.data
    standby = inventory.get_group("standby")[0]
    tunnel = cloudflared_files(data.secrets_dir, data.cloudflared_secrets)
    config = agent_configs.replicator(data, address_of(host), address_of(standby), tunnel)
    install_agent(data.replicator_unit, "wirebot.replicator", "Wirebot replicator (primary)",
                  data.replicator_config, config, data.wirebot_agents_dir)

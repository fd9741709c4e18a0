"""The replicator on the primary: Litestream supervision, file sync, the signed heartbeat, :8300 API."""

from pyinfra import host
from pyinfra.api import deploy

from tasks.provision import agent_configs
from tasks.provision.agent import install_agent, rendered_config


@deploy("Replicator")
def replicator():
    """
    Guarantees: replicator_config rendered from settings (seed section 12 shape plus epoch state,
    witness and secrets paths), the unit replicator_unit enabled and running, restarted when its
    config or unit changes. The agents' code is installed by the base deploy.

    Reads: every key agent_configs.replicator reads, replicator_unit, replicator_config.
    """
    data = host.data
    config = rendered_config(agent_configs.replicator, "standby")
    install_agent(data.replicator_unit, "wirebot.replicator", "Wirebot replicator (primary)",
                  data.replicator_config, config, data.wirebot_agents_dir)

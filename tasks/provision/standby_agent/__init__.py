"""The standby agent: receives heartbeats, checks the witness, fences, activates."""

from pyinfra import host, inventory
from pyinfra.api import deploy

from tasks.provision import agent_configs
from tasks.provision.agent import install_agent
from tasks.provision.secrets_check import cloudflared_files
from tasks.provision.trust import address_of


@deploy("Standby agent")
def standby_agent():
    """
    Guarantees: standby_config rendered from settings (heartbeat, witness, fence, replica and
    activation sections), the unit standby_unit enabled and running, restarted when its config or unit
    changes (the agent resumes from its state file).

    Reads: every key agent_configs.standby reads, standby_unit, standby_config.
    """
    data = host.data
    primary = inventory.get_group("primary")[0]
    tunnel = cloudflared_files(data.secrets_dir, data.cloudflared_secrets)
    config = agent_configs.standby(data, address_of(host), address_of(primary), tunnel)
    install_agent(data.standby_unit, "wirebot.standby", "Wirebot standby agent",
                  data.standby_config, config, data.wirebot_agents_dir)

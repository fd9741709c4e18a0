"""The standby agent: receives heartbeats, checks the witness, fences, activates."""

from pyinfra import host
from pyinfra.api import deploy

from tasks.provision import agent_configs
from tasks.provision.agent import install_agent, rendered_config


@deploy("Standby agent")
def standby_agent():
    """
    Guarantees: standby_config rendered from settings (heartbeat, witness, fence, replica and
    activation sections), the unit standby_unit enabled and running, restarted when its config or unit
    changes (the agent resumes from its state file).

    Reads: every key agent_configs.standby reads, standby_unit, standby_config.
    """
    data = host.data
    config = rendered_config(agent_configs.standby, "primary")
    install_agent(data.standby_unit, "wirebot.standby", "Wirebot standby agent",
                  data.standby_config, config, data.wirebot_agents_dir)

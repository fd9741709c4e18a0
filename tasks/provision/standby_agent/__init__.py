"""The standby agent: receives heartbeats, checks the witness, fences, activates."""

from pyinfra import host
from pyinfra.api import deploy

from tasks.provision import agent_configs, sandbox
from tasks.provision.agent import install_agent, rendered_config


@deploy("Standby agent")
def standby_agent():
    """
    Guarantees: standby_config rendered from settings (heartbeat, witness, fence, replica and
    activation sections), the unit standby_unit enabled and running, restarted when its config or unit
    changes (the agent resumes from its state file). The unit runs as root with only
    standby_capabilities, writes only wirebot_state_dir, wirebot_data_root and the synced trees (where
    activation copies them), and of the secrets sees only its own (tasks/provision/sandbox.py).

    Reads: every key agent_configs.standby reads, standby_unit, standby_config, standby_capabilities,
    wirebot_state_dir, wirebot_data_root, filesync_paths, wirebot_config_dir, wirebot_run_dir,
    cloudflared_config, fence_key, secrets_dir, secrets_files, agent_keys_dir,
    agent_control_socket, wirebot_agents_dir.
    """
    data = host.data
    config = rendered_config(agent_configs.standby)
    inside = data.wirebot_data_root.rstrip("/") + "/"
    writes = [data.wirebot_state_dir, data.wirebot_data_root] + [
        path for path in data.filesync_paths if not path.startswith(inside)]
    unit_sandbox = sandbox.root_unit(data, "standby", data.standby_capabilities, read_write=writes, umask="0022")
    unit_sandbox += "\n" + sandbox.control_socket(data)
    install_agent(data.standby_unit, "wirebot.standby.agent", "Wirebot standby agent",
                  data.standby_config, config, data.wirebot_agents_dir, unit_sandbox,
                  sandbox.secrets_digest(data, "standby"))

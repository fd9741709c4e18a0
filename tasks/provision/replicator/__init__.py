"""The replicator on the primary: Litestream supervision, file sync, the signed heartbeat, :8300 API."""

from pyinfra import host
from pyinfra.api import deploy

from tasks.provision import agent_configs, sandbox
from tasks.provision.agent import install_agent, rendered_config


@deploy("Replicator")
def replicator():
    """
    Guarantees: replicator_config rendered from settings (seed section 12 shape plus epoch state,
    witness and secrets paths), the unit replicator_unit enabled and running, restarted when its
    config or unit changes. The agents' code is installed by the base deploy. The unit runs as root with
    only replicator_capabilities, writes only wirebot_state_dir, reads the synced trees, and of the
    secrets sees only its own (tasks/provision/sandbox.py).

    Reads: every key agent_configs.replicator reads, replicator_unit, replicator_config,
    replicator_capabilities, wirebot_state_dir, filesync_paths, wirebot_config_dir, wirebot_run_dir,
    cloudflared_config, replica_key, secrets_dir, secrets_files, agent_keys_dir,
    agent_control_socket, wirebot_agents_dir.
    """
    data = host.data
    config = rendered_config(agent_configs.replicator)
    unit_sandbox = sandbox.root_unit(data, "replicator", data.replicator_capabilities,
                                     read_write=[data.wirebot_state_dir], read=data.filesync_paths,
                                     families=sandbox.INET + ("AF_NETLINK",), chown=False)
    unit_sandbox += "\n" + sandbox.control_socket(data)
    install_agent(data.replicator_unit, "wirebot.primary.replicator", "Wirebot replicator (primary)",
                  data.replicator_config, config, data.wirebot_agents_dir, unit_sandbox,
                  sandbox.secrets_digest(data, "replicator"))

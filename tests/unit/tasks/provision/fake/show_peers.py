"""Test equipment: a deploy file that changes nothing and prints, per host, its pair, its peer and the
agent config the deploy would render for it (tests/unit/tasks/provision/test_pairs_deploy.py reads the lines)."""

import json

from pyinfra import host

from tasks.core import pairs
from tasks.provision import agent_configs
from tasks.provision.agent import rendered_config

_config = rendered_config(agent_configs.replicator if "primary" in host.groups else agent_configs.standby)
print("PEERS " + json.dumps({"host": host.name, "pair": pairs.pair_of(host).name, "peer": pairs.peer_of(host).name,
                             "config": _config}, default=str), flush=True)

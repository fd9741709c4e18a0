"""What the deploys' own code (not their operations) reads from each host while pyinfra prepares the
operations: gathered for every host at once, in parallel, before the first deploy runs
(tasks/provision/hoststate.py). A read missing here is made when the code asks for it (one round trip
more); nothing depends on this list being complete, only the number of round trips."""

from pyinfra.facts.server import Arch, Which

from tasks.provision import paths
from tasks.provision.gateway import ready_url
from tasks.provision.gateway.openclaw_config import OpenClawConfigText
from tasks.provision.litestream import HOST_KEY
from tasks.provision.ops import Certificate, HttpStatus, InstalledDebPackages, NotOwnedBy, PublicKey, WirebotState


def prepare_reads(target) -> dict:
    """{"paths", "facts"} that deploy.py's code reads on `target` (its own deploys' and its peer's)."""
    data = target.data
    facts = [
        (Which, {"command": "apt-get"}), (Which, {"command": "dnf"}), (Arch, {}),  # base, litestream
        (InstalledDebPackages, {"packages": list(data.packages_apt)}),  # base (Debian)
        (WirebotState, {"path": paths.state_file(data)}),  # roles: serving, epoch
        (Certificate, {"path": paths.agent_key_file(data, "agent.crt")}),  # trust: its names
        (PublicKey, {"path": "/etc/ssh/ssh_host_ed25519_key.pub"}),  # trust: pinned by the peer
        (NotOwnedBy, {"path": f"{data.wirebot_data_root}/scoreboard", "user": data.scoreboard_user}),  # base
        (OpenClawConfigText, {"path": data.gateway_config_file}),  # gateway: keys merged
    ]
    if "primary" in target.groups:
        facts.append((HttpStatus, {"url": ready_url(data)}))  # gateway: ready (the standby's only when active)
        facts.append((PublicKey, {"path": f"{data.replica_key}.pub"}))  # trust: the standby authorizes it
    else:
        facts.append((PublicKey, {"path": f"{data.fence_key}.pub"}))  # trust: the primary authorizes it
        facts.append((PublicKey, {"path": HOST_KEY}))  # litestream on the primary pins it
        facts += [(NotOwnedBy, {"path": f"{data.replica_root}/{sub}", "user": user})  # trust: replica halves
                  for sub, user in ((paths.LITESTREAM, data.replica_user), (paths.FILES, data.replica_files_user))]
    return {"paths": [f"{data.wirebot_state_dir}/fenced.json", data.cloudflared_binary], "facts": facts}

"""Provision Wirebot's primary and standby: `pyinfra inventory.py deploy.py` (lab: lab/inventory.py).

A table of contents: each line is one component's @deploy under tasks/provision/, whose docstring says
what it guarantees and which settings it reads. A second run changes nothing. First of all, every host's
final settings (group data, host data, `--data`) are checked against tasks/core/settings_schema.py: a bad one
stops the run before any operation is added, on any host. Every pair of the inventory is provisioned in
the same run, in parallel; each host is wired to its own pair's peer only (tasks/core/pairs.py, checked here
before any operation; `--limit NAME`: one pair).
"""

from pyinfra import host, inventory

from tasks.core import hoststate, pairs
from tasks.core.settings_check import check_pyinfra_hosts
from tasks.provision.base import base
from tasks.provision.cloudflared import cloudflared
from tasks.provision.firewall import firewall
from tasks.provision.gateway import gateway
from tasks.provision.litestream import litestream
from tasks.provision.reads import prepare_reads
from tasks.provision.replicator import replicator
from tasks.provision.services import services
from tasks.provision.sshd import sshd
from tasks.provision.standby_agent import standby_agent
from tasks.provision.trust import trust

check_pyinfra_hosts()  # every host of the inventory, before any operation; --data values coerced

pairs.pair_of(host)  # the inventory's pairs are sound (else a PairError stops the run before any change)
# every host's current state in one command each, in parallel (tasks/core/hoststate.py): the
# operations below read it instead of asking one fact at a time
hoststate.prefetch(inventory.get_active_hosts(), prepare_reads)
base()  # packages, users, directories, runtime secrets, the agents' code
firewall()  # nftables: host firewall on both, the serving lease on the primary (before anything serves)
trust()  # replication and fence keys, pinned host keys, the replication accounts and their tree
sshd()  # keys only, no forwarding; the replication accounts' chroot and forced commands
gateway()  # the OpenClaw gateway: serving (and /readyz) on the primary, waiting on the standby; its state
# folders exist before Litestream's sandbox is set up (ReadWritePaths of a missing folder is dropped)
litestream()  # binary on both; streaming primary -> standby
services()  # the scoreboard unit: serving on the primary, waiting on the standby
if "primary" in host.groups:
    replicator()  # file sync, heartbeat, lag, :8300 API; its config also feeds the connector's start gate
else:
    standby_agent()  # heartbeat receiver, witness, fence, activation
cloudflared()  # one tunnel, a connector on each host, only the serving side's running: last

"""Status of the pair: `pyinfra inventory.py tasks/status.py` (lab: lab/inventory.py); read-only, no changes.

Prints a table at the end of the run: the active side (units, the standby agent's state and one public
request), the epoch on both hosts, each agent's state, replication lag per DB and per path (from the
replicator's and the standby agent's /status on their local control socket, asked on the hosts), the last
heartbeat's age, and the last fire drill's result and time (last JSON line of
/var/log/wirebot/fire-drill.log on the primary). A host that cannot be reached shows as unreachable.
"""

import atexit
import sys

from pyinfra import host

from tasks.incident import status
from tasks.incident.hosts import pair

primary, standby = pair()
reporter = standby if standby.connected else primary
if host.name == reporter.name:
    table = status.format_table(status.collect(primary, standby))
    atexit.register(lambda: print("\n" + table, file=sys.stderr if "--json" in sys.argv else sys.stdout))

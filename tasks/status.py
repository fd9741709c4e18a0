"""Status of every pair: `pyinfra inventory.py tasks/status.py` (lab: lab/inventory.py); read-only, no changes.

Prints a table per pair at the end of the run (one pair: `--limit NAME`), in the pairs' name order: the
active side (units, the standby agent's state and one public request), the epoch on both hosts, each
agent's state, replication lag per DB and per path (from the replicator's and the standby agent's /status
on their local control socket, asked on the hosts), the last heartbeat's age, and the last fire drill's
result and time (last JSON line of /var/log/wirebot/fire-drill.log on the primary). A host that cannot be
reached shows as unreachable.
"""

from pyinfra import host, inventory, state

from tasks.core import pairs
from tasks.playbooks import status_report

several = len(pairs.pairs(inventory)) > 1
connected = [each for each in inventory if each.connected]
for chosen in pairs.in_limit(state, inventory):  # a pair with no host reached: another host reports it
    reporter = next((each for each in (chosen.standby, chosen.primary) if each.connected), None) or connected[0]
    if host.name == reporter.name:
        view = status_report.collect(chosen.primary, chosen.standby)
        status_report.print_at_exit(chosen.name, status_report.format_table(view, chosen.name if several else None))

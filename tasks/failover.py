"""Failover, planned or during an incident: `pyinfra inventory.py tasks/failover.py` (lab: lab/inventory.py).

Fences the primary when it can be reached (its connector, then its gateway and scoreboard), activates
the standby through the agent's activation path (wirebot.standby.activation) and verifies that the public
endpoint is served by the standby. When the primary cannot be reached, the failover goes on with the
standby only if the witness confirms the primary's connector is gone; otherwise it refuses and says
what it would need, unless you decide: `--data failover_force=true`. Dry-run with `--dry`; a second
run changes nothing. Prints each step's duration and a summary to paste into the incident channel.
Settings and the logic: tasks/playbooks/failover_plan.py.
"""

from tasks.core.settings_check import check_pyinfra_hosts
from tasks.playbooks.failover_plan import failover

check_pyinfra_hosts()  # every host's final settings, --data included, before any operation
failover()

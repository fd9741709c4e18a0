"""Recovery (failback) as a planned switchover: `pyinfra inventory.py tasks/recovery.py` (lab: lab/inventory.py).

Stops the standby, merges its writes into the primary (per replicated DB, insert-or-ignore by primary
key), verifies by set comparison that every standby key is on the primary, moves replication to the
next epoch, puts the standby agent back to STANDBY and only then starts the primary's services and
connector. Interrupted at any step, run it again: it resumes from markers on the primary. `--dry`
lists per DB how many rows the merge would insert; nothing to recover is a no-op. Prints each step's
duration and a summary. Settings and the logic: tasks/playbooks/recovery_plan.py.
"""

from tasks.core.settings_check import check_pyinfra_hosts
from tasks.playbooks.recovery_plan import recovery

check_pyinfra_hosts()  # every host's final settings, --data included, before any operation
recovery()

"""The monthly fire drill (seed section 14): `pyinfra inventory.py tasks/drill.py` (lab: lab/inventory.py).

Guarantees: a synthetic local-first surface (tasks/drills/surface.py) writes events through the
public endpoint before, during and after an outage it causes; the eleven steps run in order, each timed
and checked: 1 the primary's connector stops; 2 the surface shows offline, not error, and keeps writing
locally; 3 the standby is activated by the failover playbook's own operations (fence, activation,
verification: tasks/playbooks/failover_plan.py); 4 every public hostname answers /health; 5 a chat message
is answered; 6 a test event is found in the standby's events.db; 7-8 the recovery playbook's own
operations (stop the standby, merge, verify, replication, standby back to STANDBY, primary and its
connector: tasks/playbooks/recovery_plan.py) hand traffic back; 9 the surface reconnects and drains its queue;
then the verdict (every event the surface created is in the primary's events.db exactly once), 10 one
JSON line appended to {wirebot_log_dir}/fire-drill.log on the primary (and to drill_local_dir on this
machine), 11 a summary to the Discord webhook. The human summary is printed at the end; the exit
status is non-zero when any step fails or any event is lost or doubled.

Refuses before changing anything while the standby is ACTIVE or ACTIVATING (an incident is on), the
primary is fenced, a host is unreachable, or the public endpoint does not answer.

Reads: the drill_* settings (tasks/drills/drill_settings.py: defaults and meaning), public_hostnames,
witness_public_url, witness_public_host_header, scoreboard_events_db, cloudflared_unit,
wirebot_log_dir, wirebot_state_dir, secrets_dir, and what the failover and recovery playbooks read.
A dry run (`--dry`) checks the refusals and lists the operations; it runs no step.
"""

from pyinfra import host, inventory, state
from pyinfra.api.exceptions import PyinfraError
from pyinfra.operations import python

from tasks.core.settings_check import check_pyinfra_hosts
from tasks.drills import drill_steps
from tasks.drills.drill_settings import DrillSettingError
from tasks.drills.run import Drill, Refused
from tasks.playbooks.failover_plan import failover
from tasks.playbooks.recovery_plan import recovery

check_pyinfra_hosts()  # every host's final settings, --data included, before the drill touches anything
try:
    drill = Drill.for_run(state, inventory, host)
except (Refused, DrillSettingError) as error:
    raise PyinfraError(f"fire drill refused: {error}") from None


def step(n, body, *skip_if):
    """The python.call function of seed step `n` (skipped unless the steps `skip_if` succeeded)."""
    return drill.op(f"step{n}", lambda: drill.run_step(n, body, skip_if))


python.call(name="Fire drill: the surface writes and syncs before the outage.",
            function=drill.op("warmup", lambda: drill_steps.warmup(drill), abort_on_failure=True))
python.call(name="Fire drill step 1: the primary's connector is stopped.", function=step(1, drill_steps.stop_connector))
python.call(name="Fire drill step 2: the surface shows offline (not error) and keeps writing locally.",
            function=step(2, drill_steps.shows_offline, 1))
python.call(name="Fire drill step 3 begins: the failover playbook activates the standby.",
            function=drill.mark("activation_start"))
failover(report=False)
python.call(name="Fire drill step 3: the standby is active (failover playbook done).",
            function=step(3, drill_steps.activation))
python.call(name="Fire drill step 4: every public hostname answers.", function=step(4, drill_steps.endpoints, 3))
python.call(name="Fire drill step 5: a chat message gets an AI answer.", function=step(5, drill_steps.chat, 3))
python.call(name="Fire drill step 6: a test event is in the standby's scoreboard.",
            function=step(6, drill_steps.probe, 3))
python.call(name="Fire drill steps 7-8 begin: the recovery playbook hands traffic back.",
            function=drill.mark("recovery_start"))
recovery(report=False)
python.call(name="Fire drill steps 7-8: the standby is deactivated, the primary reconnected (recovery done).",
            function=drill.op("recovery",
                              lambda: drill.recovery_done(drill_steps.deactivation, drill_steps.reconnection)))
python.call(name="Fire drill step 9: the surface reconnects and drains its queue.",
            function=step(9, drill_steps.drained))
python.call(name="Fire drill: the verdict (every event on the primary exactly once).",
            function=drill.op("verdict", lambda: drill_steps.verdict(drill)))
python.call(name="Fire drill step 10: the result is logged on the primary.", function=step(10, drill_steps.log))
python.call(name="Fire drill step 11: the operator is alerted (Discord webhook).", function=step(11, drill_steps.alert))
python.call(name="Fire drill: the result decides the exit status.", function=drill.op("finish", drill.finish,
                                                                                       abort_on_failure=True))

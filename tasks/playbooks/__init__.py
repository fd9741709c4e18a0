"""Incident playbooks' logic: failover, recovery (failback) and status. tasks/failover.py,
tasks/recovery.py and tasks/status.py are thin deploy files around it.

How to reuse failover and recovery (the drill does): ONE pyinfra run, execution-time decisions
------------------------------------------------------------------------------------------------
Every step is one custom pyinfra @operation that reads live facts *inside* the operation. pyinfra 3
runs an operation's body twice: at prepare time (change detection, `--dry`) and again when it
executes, and facts are not cached, so each step decides from the state of the hosts at the moment
it runs. The deploys register all their steps unconditionally (no Python `if` on state the playbook
changes), so in one deploy file

    from tasks.playbooks.failover_plan import failover
    from tasks.playbooks.recovery_plan import recovery

    failover(report=False)     # fence the primary, activate the standby, verify the public endpoint
    ...                        # the drill's own operations (checks while the standby serves)
    recovery(report=False)     # stop the standby, merge, verify, move replication, hand back

does the failover, then the checks, then the recovery, in that order (pyinfra runs operations in
order, each on all its hosts before the next). A step whose state already holds yields nothing (no
change); a step with work yields one FunctionCommand that does it and times it.

Public names (stable):
  failover.failover(force=False, report=True)   @deploy; its steps run on the standby host
  failover.STEPS                                ("fence", "activate", "verify")
  recovery.recovery(report=True)                @deploy; its steps run on the primary host
  recovery.STEPS                                ("stop", "merge", "verify", "replication", "standby",
                                                 "primary", "confirm"); "merge" is one op per database,
                                                its timeline key "merge <path relative to the data root>"
  timeline.TIMELINE                             what ran: records with playbook, number, key, title,
                                                host, status (done|already|failed|refused|skipped),
                                                seconds, detail; timeline.records(playbook) filters
  summary.format_summary(playbook, records, ...)  the paste-able text the playbooks print
  status.collect(primary, standby) / status.format_table(view)   the status table (tasks/status.py is
                                                a read-only deploy file that prints it at exit)

The playbooks print their summary at exit (report=True). With report=False nothing is printed: read
timeline.records("failover") / ("recovery") in a later operation (e.g. the drill's report step) for
each step's seconds. An operation that fails (a StepFailed or a refusal) fails its host, so pyinfra
runs no later step on it; the failure's reason is logged on that host and is in the timeline.

Settings (host.data, e.g. `--data failover_force=true`; kind, range and default: section "incident" of
tasks/core/settings_schema.py, read with its host_value()):
  failover_force            False  activate even when the primary cannot be fenced and the witness cannot
                                   confirm its connector is gone (the operator's decision)
  failover_activation_wait  300    seconds wirebot.standby.activation may take to reach ACTIVE
  failover_witness_wait     30     primary unreachable: seconds to wait while the Cloudflare API still
                                   lists its connector (a dead connector leaves the list with a delay)
  incident_verify_seconds   60     seconds to wait for the public endpoint to be served by the new side
  incident_verify_probes    3      requests that must all be served by the expected side
  recovery_stop_after       0      stop after recovery step K (1-7) as if interrupted (tests, drills)
  recovery_skip_dbs         []     DBs (relative to wirebot_data_root, list or comma-separated) whose
                                   standby writes are not merged (a schema the merge cannot handle);
                                   their standby copies stay in {wirebot_state_dir}/recovery/epoch-T/
"""

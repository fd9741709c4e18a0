"""Recovery (failback, seed section 8) as a planned switchover, resumable at every step.

Execution order (the issue's operator view, with the hand-over reordered for safety):
  1 stop         nothing serves while the DBs merge: the standby's connector, gateway and scoreboard
                 stopped; the primary fenced (connector stopped and masked, fence record), its
                 gateway and scoreboard stopped (a rebooted primary's gate could otherwise let its
                 connector start as soon as its epoch passes the standby's)
  2 merge        one op per replicated DB: a consistent copy on the standby (backup API), fetched
                 through the control machine to the primary, merged there by wirebot.hosttools.merge
  3 verify       every primary key of the standby's copies is on the primary (set comparison)
  4 replication  the primary holds epoch T = standby epoch + 1, litestream.yml names the epoch-T
                 replica paths, litestream restarted, the replicator running
  5 standby      the standby agent back to STANDBY at epoch T (wirebot.hosttools.ctl deactivate --epoch T):
                 BEFORE the primary's connector starts, since an ACTIVE standby fences any other
                 origin's connector it sees (issue step 5)
  6 primary      un-fence the primary and start its gateway, scoreboard and (once the gateway's /readyz
                 answers 200) its connector (issue step 4)
  7 confirm      the public endpoint is served by the primary; the recovery is recorded as done
Progress markers live on the primary in {wirebot_state_dir}/recovery/epoch-T/ (started.json,
1-stopped.json, 2-merged-<db>.json, 3-verified.json, 7-done.json); steps 4-6 are read from the hosts'
state. A re-run after an interruption finds what remains from these facts; merges are idempotent.
"""

import hashlib
import json
import shlex
import time

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.util import get_template
from pyinfra.context import state as context_state
from wirebot.common import layout

from tasks.core import pairs, paths
from tasks.core.ops import PublicKey
from tasks.core.settings_schema import host_value
from tasks.playbooks import model, remote, summary, timeline
from tasks.playbooks.facts import HELPER_MODULE, view
from tasks.playbooks.incident_step import Step, incident_step
from tasks.playbooks.merge_step import MergeSteps
from tasks.playbooks.model import DONE, STARTED, STOPPED, VERIFIED
from tasks.playbooks.preview import preview
from tasks.playbooks.remote import StepFailed, fence_units_args
from tasks.provision.gateway import wait_ready_command
from tasks.provision.litestream import HOST_KEY, config_arguments

PLAYBOOK = "recovery"
STEPS = ("stop", "merge", "verify", "replication", "standby", "primary", "confirm")


class Recovery(MergeSteps):
    """The recovery's steps for one run (facts are re-read by every check)."""

    def __init__(self, stop_after: int = 0):
        self.primary, self.standby = pairs.selected_hosts("the recovery")
        self.data, self.sdata = self.primary.data, self.standby.data
        self.connector = self.data.cloudflared_unit
        self.stop_after = stop_after
        root = self.data.wirebot_data_root
        self.dbs = [(paths.relative_to_data_root(p, root), p, False) for p in self.data.litestream_databases]
        if self.data.litestream_tenant_dir:
            tenants = self.data.litestream_tenant_dir
            self.dbs.append((paths.relative_to_data_root(tenants, root), tenants, True))
        # The gateway's own databases (every one in gateway_state_dir) are never merged: OpenClaw's internal
        # state has no append-only keys (the merge would refuse it); the primary's gateway resumes its own
        # state, the standby's copies are kept on the primary like any skipped DB (the surfaces keep their
        # chat history).
        gateway_state = self.data.gateway_state_dir.rstrip("/") + "/"
        self.skip_dbs = [db.strip("/") for db in host_value(self.data, "recovery_skip_dbs")] + [
            paths.relative_to_data_root(p, root) for p in self.data.litestream_databases if p.startswith(gateway_state)]
        self.explained = {}

    # --- facts ---------------------------------------------------------------------------------------
    def target(self):
        """(Target or None, primary view, standby view), from live facts."""
        primary, standby = view(self.primary), view(self.standby)
        for side in (primary, standby):
            if not side.reachable:
                raise StepFailed(f"{side.name} does not answer: the recovery needs both hosts")
        target = model.recovery_target(primary, standby)
        if target is None:
            self.explained["*"] = model.nothing_to_recover(primary, standby)
            if context_state.is_executing:
                timeline.note(PLAYBOOK, self.explained["*"])
        return target, primary, standby

    def base(self, epoch: int) -> str:
        return paths.recovery_markers_dir(self.data, epoch)

    def copy_path(self, epoch: int, relative: str) -> str:
        return f"{self.base(epoch)}/standby/{relative}"

    def outgoing(self, relative: str) -> str:
        return f"{self.sdata.wirebot_state_dir}/recovery/outgoing/{relative}"

    def marker(self, epoch: int, name: str, content: dict) -> None:
        remote.put_text(self.primary, json.dumps(dict(content, at=time.time()), indent=2, sort_keys=True) + "\n",
                        f"{self.base(epoch)}/{name}")

    def steps(self, counts=None):
        counts = counts or {}
        explain = lambda key: (lambda: self.explained.get(key) or self.explained.get("*"))  # noqa: E731
        steps = [Step(PLAYBOOK, 1, "stop", "Nothing serves while the databases merge: the standby's connector, "
                      "gateway and scoreboard are stopped and the primary is fenced.", self.stop_check,
                      self.stop_run, explain=explain("stop"))]
        for relative, path, tenants in self.dbs:
            extra = f" ({counts[relative]})" if relative in counts else ""
            steps.append(Step(PLAYBOOK, 2, f"merge {relative}", f"The standby's rows of {relative} are merged "
                              f"into the primary{extra}.", self._merge_check(relative, counts.get(relative)),
                              self._merge_run(relative, path, tenants), explain=explain(f"merge {relative}")))
        steps += [
            Step(PLAYBOOK, 3, "verify", "Every primary key of the standby's databases is on the primary.",
                 self.verify_check, self.verify_run, explain=explain("verify")),
            Step(PLAYBOOK, 4, "replication", "Replication streams to the next epoch's replica paths.",
                 self.replication_check, self.replication_run, explain=explain("replication")),
            Step(PLAYBOOK, 5, "standby", "The standby agent is STANDBY at the primary's epoch.",
                 self.standby_check, self.standby_run, explain=explain("standby")),
            Step(PLAYBOOK, 6, "primary", "The primary serves: un-fenced, its gateway, scoreboard and "
                 "connector running.", self.primary_check, self.primary_run, explain=explain("primary")),
            Step(PLAYBOOK, 7, "confirm", "The public endpoint is served by the primary; the recovery is "
                 "recorded as done.", self.confirm_check, self.confirm_run, explain=explain("confirm")),
        ]
        for step in steps:
            step.skip = self._skipper(step.number)
        return steps

    def _skipper(self, number: int):
        return lambda: (f"recovery_stop_after={self.stop_after}: left for the next run"
                        if self.stop_after and number > self.stop_after else None)

    def _require(self, ok: bool, why: str) -> None:
        if not ok:
            raise StepFailed(why)

    # 1 stop ------------------------------------------------------------------------------------------
    def stop_check(self):
        target, primary, standby = self.target()
        if target is None or STOPPED in primary.marks(target.epoch):
            self.explained["stop"] = target and f"done earlier for epoch {target.epoch} ({STOPPED})"
            return None
        return f"recovery to epoch {target.epoch} ({target.reason}): stop the standby, fence the primary"

    def stop_run(self, todo):
        target, primary, standby = self.target()
        if STARTED not in primary.marks(target.epoch):
            self.marker(target.epoch, STARTED, {"epoch": target.epoch, "reason": target.reason,
                                                "standby_epoch": standby.epoch})
        remote.sh(self.standby, f"systemctl stop {self.connector} && systemctl stop {' '.join(layout.SERVICES)}",
                  "stopping the standby's connector, gateway and scoreboard")
        data = self.data
        code, stdout, stderr = remote.exit_code(self.primary, remote.agents(
            data, "hosttools.fence_command", *fence_units_args(self.connector), "--fenced-file",
            paths.fenced_file(data)))
        self._require(code == 0, f"fencing the primary failed (exit {code}): {(stdout + stderr)[-300:]}")
        remote.sh(self.primary, f"systemctl stop {' '.join(layout.SERVICES)}",
                  "stopping the primary's gateway and scoreboard")
        primary, standby = view(self.primary), view(self.standby)
        running = [f"{u} on the standby" for u in layout.serving_units(self.connector) if standby.active(u)]
        running += [f"{u} on the primary" for u in layout.serving_units(self.connector) if primary.active(u)]
        self._require(not running, f"still running: {', '.join(running)}")
        self.marker(target.epoch, STOPPED, {})
        return (f"recovery to epoch {target.epoch}: standby's connector, gateway and scoreboard stopped; primary "
                "fenced, its gateway and scoreboard stopped")

    # 4 replication -------------------------------------------------------------------------------------
    def litestream_config(self, epoch: int) -> str:
        key = self.standby.get_fact(PublicKey, path=HOST_KEY)
        self._require(bool(key), f"{self.standby.name}: no {HOST_KEY} to pin in litestream.yml")
        arguments = config_arguments(self.data, self.standby, key, epoch)
        source = arguments.pop("src")
        for name in ("dest", "user", "group", "mode"):
            arguments.pop(name)
        return get_template(source).render(arguments)

    def _replication_units(self):
        return [layout.LITESTREAM_UNIT, self.data.get("replicator_unit") or layout.REPLICATOR_UNIT]

    def replication_check(self):
        target, primary, _ = self.target()
        if target is None:
            return None
        wanted = hashlib.sha256(self.litestream_config(target.epoch).encode()).hexdigest()
        self.explained["replication"] = f"primary at epoch {primary.epoch}, litestream.yml for epoch {target.epoch}"
        return model.replication_todo(primary, target.epoch, wanted, self._replication_units())

    def replication_run(self, todo):
        target, primary, _ = self.target()
        self._require(VERIFIED in primary.marks(target.epoch), "step 3 (verify) has not completed")
        data = self.data
        litestream, replicator = self._replication_units()
        # the replicator is the only writer of the primary's state file: it raises the epoch on request
        # (signed, over its root-only control socket); it is started first (ctl waits for it to answer)
        remote.sh(self.primary, f"systemctl start {replicator}", "starting the replicator")
        code, stdout, stderr = remote.exit_code(self.primary, remote.agents(
            data, "hosttools.ctl", "--config", data.replicator_config, "set-epoch", "--epoch", target.epoch))
        self._require(code == 0, f"the replicator did not raise the primary's epoch to {target.epoch} (exit {code}): "
                                 f"{(stdout + stderr).strip()[-400:]}")
        config = self.litestream_config(target.epoch)
        moved = hashlib.sha256(config.encode()).hexdigest() != primary.litestream_sha
        if moved:
            # Litestream's local state (.<db>-litestream) belongs to the old replica path: started on a new
            # path with it, Litestream mixes two histories there and restores silently miss rows. So stop,
            # reset every database's local state, switch the config, start: the new path gets one fresh
            # snapshot. Never done once the config names epoch T (a restart must not reset again).
            databases = " ".join(shlex.quote(p) for p in data.litestream_databases)
            tenants = f"{shlex.quote(data.litestream_tenant_dir)}/*.db" if data.litestream_tenant_dir else ""
            remote.sh(self.primary, f"systemctl stop {litestream} && for db in {databases} {tenants}; do "
                                    f"[ -f \"$db\" ] || continue; {shlex.quote(data.litestream_binary)} reset \"$db\" "
                                    ">/dev/null || exit 1; done", "resetting Litestream's local state")
            remote.put_text(self.primary, config, data.litestream_config)
            remote.sh(self.primary, f"chown root:root {data.litestream_config}", "owning litestream.yml")
        remote.sh(self.primary, f"systemctl start {litestream} {replicator}", "starting litestream and the replicator")
        left = self.replication_check()
        self._require(left is None, f"replication still needs: {left}")
        return (f"primary epoch {target.epoch}; litestream streams to "
                f"{data.replica_root}/litestream/epoch-{target.epoch}/"
                + (" (local state reset, restarted)" if moved else ""))

    # 5 standby ---------------------------------------------------------------------------------------
    def standby_check(self):
        target, _, standby = self.target()
        if target is None or standby.agent_state == "STANDBY":
            self.explained["standby"] = self.explained.get("*") or f"standby STANDBY at epoch {standby.epoch}"
            return None
        return f"deactivate the standby ({standby.agent_state} at epoch {standby.epoch}) at epoch {target.epoch}"

    def standby_run(self, todo):
        target, primary, _ = self.target()
        self._require(VERIFIED in primary.marks(target.epoch), "step 3 (verify) has not completed")
        self._require(primary.epoch >= target.epoch, "step 4 (replication) has not completed")
        code, stdout, stderr = remote.exit_code(self.standby, remote.agents(
            self.sdata, "hosttools.ctl", "--config", self.sdata.standby_config, "deactivate", "--epoch", target.epoch))
        self._require(code == 0, f"wirebot.hosttools.ctl deactivate exited {code}: {(stdout + stderr).strip()[-400:]}")
        standby = view(self.standby)
        self._require(standby.agent_state == "STANDBY", f"the standby is {standby.agent_state} after deactivate")
        return f"standby STANDBY at epoch {standby.epoch}"

    # 6 primary ---------------------------------------------------------------------------------------
    def primary_check(self):
        target, primary, _ = self.target()
        if target is None:
            return None
        self.explained["primary"] = f"{self.primary.name}: un-fenced, {self.connector} and services running"
        return model.primary_todo(primary, self.connector, layout.SERVICES)

    def primary_run(self, todo):
        target, primary, standby = self.target()
        self._require(standby.agent_state == "STANDBY", "step 5 (standby) has not completed")
        self._require(primary.epoch >= target.epoch, "step 4 (replication) has not completed")
        fenced = paths.fenced_file(self.data)
        # the fence masked the connector, the gateway and the scoreboard: unmask all, then start the services
        remote.sh(self.primary, f"systemctl unmask {self.connector} {' '.join(layout.SERVICES)} && "
                                f"systemctl start {' '.join(layout.SERVICES)}", "starting the primary's services")
        remote.sh(self.primary, wait_ready_command(self.data),  # ready means ready: /readyz, then the tunnel
                  "waiting for the primary's gateway to be ready", timeout=self.data.gateway_ready_timeout_seconds + 30)
        remote.sh(self.primary, f"rm -f {fenced} && (systemctl reset-failed {self.connector} || true) && "
                                f"systemctl start {self.connector}", "starting the primary's connector")
        left = model.primary_todo(view(self.primary), self.connector, layout.SERVICES)
        if left:
            log = remote.sh(self.primary, f"journalctl -u {self.connector} -n 5 --no-pager; true", "reading the log")
            raise StepFailed(f"the primary still needs: {left}\n{log.stdout[-600:]}")
        return f"{self.primary.name}: fence removed, {', '.join(layout.SERVICES)} and {self.connector} running"

    # 7 confirm ---------------------------------------------------------------------------------------
    def confirm_check(self):
        target, _, _ = self.target()
        return None if target is None else "check the public endpoint, record the recovery as done"

    def confirm_run(self, todo):
        target, primary, _ = self.target()
        self._require(model.primary_todo(primary, self.connector, layout.SERVICES) is None,
                      "step 6 (primary) has not completed")
        verdict = remote.wait_served(self.data, pairs.address_of(self.primary),
                                     float(host_value(self.data, "incident_verify_seconds")),
                                     int(host_value(self.data, "incident_verify_probes")))
        self.marker(target.epoch, DONE, {"epoch": target.epoch, "verdict": verdict,
                                         "steps": [r.to_dict() for r in timeline.records(PLAYBOOK)]})
        return verdict


def refuse(message: str) -> None:
    """Record a refusal found at prepare time and stop the run before anything changes."""
    timeline.add(timeline.Record(PLAYBOOK, 0, "refused", "refused before any change", host.name, "refused", 0.0,
                                 message))
    raise PyinfraError(message)


@deploy("Recovery")
def recovery(report=True):
    """
    Guarantees (seed section 8, a planned switchover): every row the standby took while it served is
    on the primary exactly once (merge by primary key, one transaction per DB; tenant DBs only on the
    standby copied), verified by set comparison before traffic moves; the primary serves again at epoch
    T = the standby's epoch + 1 with Litestream streaming to the epoch-T replica paths; the standby
    agent is STANDBY at epoch T. Never two connectors: the standby is deactivated before the primary's
    connector starts. Resumable: markers per epoch on the primary. Nothing to recover (the standby is
    not ACTIVE, no recovery in progress, the primary not fenced) is a no-op, not an error. The dry run
    lists, per DB, the rows the merge would insert as of now; a schema the merge does not understand
    refuses the recovery before anything is stopped.

    Reads: recovery_stop_after (0), recovery_skip_dbs ([]), incident_verify_seconds (60),
    incident_verify_probes (3), gateway_ready_timeout_seconds, gateway_port, gateway_state_dir,
    litestream_databases, litestream_tenant_dir, litestream_config and the litestream deploy's keys,
    cloudflared_unit, replicator_unit, replicator_config, standby_config, wirebot_state_dir, wirebot_data_root,
    wirebot_agents_dir, witness_public_url, witness_public_host_header, witness_cloudflare_api_base,
    secrets_dir, cloudflared_secrets.

    + report: print the summary at the end of the run
    """
    primary, standby = pairs.selected_hosts("the recovery")
    if report:
        summary.at_exit(PLAYBOOK)
    if host.name == standby.name:
        if not primary.connected:
            refuse(f"the primary ({primary.name}) cannot be reached: the recovery needs it (boot it, then run "
                   "the recovery again)")
        return
    if host.name != primary.name:
        return
    if not standby.connected:
        refuse(f"the standby ({standby.name}) cannot be reached: its writes cannot be merged")
    run = Recovery(int(host_value(host.data, "recovery_stop_after") or 0))
    counts = {}
    try:
        target, primary_view, standby_view = run.target()
        missing = [side.name for side in (primary_view, standby_view) if not side.helper]
        if missing:
            refuse(f"{', '.join(missing)} lack {HELPER_MODULE}: run deploy.py first")
        if target is not None and not context_state.is_executing:
            counts = preview(run, target, primary_view)
    except (model.Refusal, StepFailed) as exc:
        refuse(str(exc))
    for step in run.steps(counts):
        incident_step(name=step.title, step=step)

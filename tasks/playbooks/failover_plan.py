"""Failover, operator-initiated: fence the primary, activate the standby, verify the public endpoint.

All three steps are operations on the standby host (the side that changes role); the primary is
reached through its own pyinfra connection when it has one. Each step decides from live facts when it
runs (see tasks/playbooks/__init__.py), so a second run changes nothing.
"""

import shlex

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.context import state as context_state
from wirebot.common import layout

from tasks.core import pairs, paths
from tasks.core.settings_schema import host_value
from tasks.core.wait import WaitTimeout, wait_for
from tasks.playbooks import model, remote, summary, timeline
from tasks.playbooks.facts import WitnessNow, view
from tasks.playbooks.incident_step import Step, incident_step
from tasks.playbooks.remote import StepFailed, fence_units_args

PLAYBOOK = "failover"
STEPS = ("fence", "activate", "verify")


class Failover:
    """The failover's steps for one run; `force` is the operator's explicit decision."""

    def __init__(self, force: bool = False):
        self.primary, self.standby = pairs.selected_hosts("the failover")
        self.data = self.standby.data
        self.force = force
        self.connector = self.data.cloudflared_unit
        self.serving = layout.serving_units(self.connector)
        self.token_file = f"{self.data.wirebot_run_dir}/cloudflare-api-token"
        self.explained = {}
        self._decision = None

    def steps(self):
        """The Step objects, in order (fence, activate, verify)."""
        return [
            Step(PLAYBOOK, 1, "fence", "The primary is fenced: its connector stopped and masked, then its "
                 "gateway and scoreboard stopped.", self.fence_check, self.fence_run,
                 explain=lambda: self.explained.get("fence")),
            Step(PLAYBOOK, 2, "activate", "The standby is ACTIVE (activated through wirebot.standby.activation).",
                 self.activate_check, self.activate_run, explain=lambda: self.explained.get("activate")),
            Step(PLAYBOOK, 3, "verify", "The public endpoint is served by the standby.",
                 self.verify_check, self.verify_run, explain=lambda: self.explained.get("verify")),
        ]

    # 1 -------------------------------------------------------------------------------------------------
    def fence_check(self):
        primary = view(self.primary)
        if not primary.reachable:
            self.explained["fence"] = f"primary {self.primary.name} unreachable over SSH: not fenced here"
            return None
        self.explained["fence"] = f"{self.primary.name}: fenced, {', '.join(self.serving)} stopped"
        return model.fence_todo(primary, self.connector, layout.SERVICES)

    def fence_run(self, todo):
        data = self.primary.data
        code, stdout, stderr = remote.exit_code(self.primary, remote.agents(
            data, "hosttools.fence_command", *fence_units_args(self.connector), "--fenced-file",
            paths.fenced_file(data)))
        if code != 0:
            raise StepFailed(f"the fence command exited {code}: {(stdout + stderr)[-400:]}")
        remote.sh(self.primary, f"systemctl stop {' '.join(layout.SERVICES)}", "stopping the gateway and scoreboard")
        left = model.fence_todo(view(self.primary), self.connector, layout.SERVICES)
        if left:
            raise StepFailed(f"after fencing, still to do: {left}")
        return f"{self.primary.name}: {self.connector} stopped and masked, fence record written, " \
               f"{' and '.join(layout.SERVICES)} stopped; {self.flush()}"

    def flush(self) -> str:
        """Best effort, once the writers are stopped: push the last frames of every DB to the standby's
        replica (litestream sync -wait), so the standby restores the primary's very last writes. A
        failure costs nothing the recovery cannot bring back: the primary keeps its rows."""
        data = self.primary.data
        databases = " ".join(shlex.quote(p) for p in data.litestream_databases)
        tenants = f"{shlex.quote(data.litestream_tenant_dir)}/*.db" if data.litestream_tenant_dir else ""
        sync = (f"{shlex.quote(data.litestream_binary)} sync -wait -timeout 10 "
                f"-socket {shlex.quote(data.litestream_socket)}")
        code, stdout, _ = remote.exit_code(self.primary, (
            f"n=0; failed=0; for db in {databases} {tenants}; do [ -f \"$db\" ] || continue; n=$((n+1)); "
            f"{sync} \"$db\" >/dev/null 2>&1 || failed=$((failed+1)); done; echo \"$n $failed\""))
        words = stdout.split()
        if code != 0 or len(words) != 2:
            return "replicas not flushed (litestream sync did not run)"
        total, failed = int(words[0]), int(words[1])
        lag = " (the rest lag: the recovery merges them)" if failed else ""
        return f"{total - failed}/{total} replicas flushed{lag}"

    # 2 -------------------------------------------------------------------------------------------------
    def decision(self) -> model.Activation:
        """What the activation will do, from live facts; Refusal when it must not happen."""
        primary, standby = view(self.primary), view(self.standby)
        if not standby.reachable:
            raise StepFailed(f"the standby {self.standby.name} does not answer")
        witness = None
        if not primary.reachable and standby.agent_state != layout.ACTIVE:
            witness = self.witness()
        self._decision = model.activation(primary, standby, witness, self.force, self.serving,
                                          self.connector, self.token_file,
                                          fence_first=not context_state.is_executing)
        if self._decision.note and context_state.is_executing:
            timeline.note(PLAYBOOK, self._decision.note)
        return self._decision

    def witness(self) -> dict:
        """The standby's witness check. While the API still lists the unreachable primary's connector,
        ask again for up to failover_witness_wait seconds: a dead connector leaves the list only after
        the edge notices (the lab's edge: 3 s)."""
        seen = {}

        def clear():
            seen["witness"] = self.standby.get_fact(WitnessNow, agents_dir=self.data.wirebot_agents_dir,
                                                    config=self.data.standby_config)
            return not seen["witness"].get("other_connector")

        try:
            wait_for(clear, float(host_value(self.data, "failover_witness_wait")), 1.0,
                     "the witness to stop listing the primary's connector")
        except WaitTimeout:
            pass  # the last answer stands: the activation step decides on it
        return seen["witness"]

    def activate_check(self):
        decision = self.decision()
        self.explained["activate"] = decision.note
        return decision.todo

    def activate_run(self, todo):
        decision = self._decision or self.decision()
        reason = "tasks/failover.py (operator)" + (": forced, fence not established" if decision.force else "")
        args = ["--config", self.data.standby_config, "--reason", reason,
                "--wait", str(host_value(self.data, "failover_activation_wait"))]
        code, stdout, stderr = remote.exit_code(self.standby, remote.agents(
            self.data, "standby.activation", *args, *(["--force"] if decision.force else [])))
        reply = remote.last_json(stdout) or {}
        if code != 0:
            raise StepFailed(activation_failure(code, reply, stdout + stderr))
        return describe_activation(reply, decision)

    # 3 -------------------------------------------------------------------------------------------------
    def verify_check(self):
        ok, text = remote.public_view(self.data, pairs.address_of(self.standby),
                                      int(host_value(self.data, "incident_verify_probes")))
        self.explained["verify"] = text
        return None if ok else f"wait for the standby to serve the public endpoint (now: {text})"

    def verify_run(self, todo):
        return remote.wait_served(self.data, pairs.address_of(self.standby),
                                  float(host_value(self.data, "incident_verify_seconds")),
                                  int(host_value(self.data, "incident_verify_probes")))


def describe_activation(reply: dict, decision: model.Activation) -> str:
    """One line from wirebot.standby.activation's JSON: epoch and the agent's own step timings."""
    answer = reply.get("answer") if isinstance(reply.get("answer"), dict) else reply
    epoch = answer.get("epoch", reply.get("epoch"))
    steps = ((reply.get("activation") or {}).get("steps")) or {}
    timed = sorted((record.get("started_at") or 0, name, record["seconds"]) for name, record in steps.items()
                   if isinstance(record, dict) and isinstance(record.get("seconds"), (int, float)) and name != "epoch")
    timings = ", ".join(f"{name} {seconds:.1f} s" for _, name, seconds in timed)
    text = f"standby ACTIVE at epoch {epoch}" + (f" ({timings})" if timings else "")
    return text + ("; FORCED" if decision.force else "")


def activation_failure(code: int, reply: dict, output: str) -> str:
    """Why wirebot.standby.activation gave up, in one line: its own verdict (e.g. "not ACTIVE after 20s", or the
    state and reason) and the agent's activation error from its status (the failed step and its
    error, e.g. "restore: ... No space left on device"), with the attempts so far."""
    status = reply.get("status") if isinstance(reply.get("status"), dict) else reply
    activation = status.get("activation") if isinstance(status.get("activation"), dict) else {}
    failed = [(name, record.get("error")) for name, record in (activation.get("steps") or {}).items()
              if isinstance(record, dict) and record.get("status") == "failed" and record.get("error")]
    error = activation.get("error") or "; ".join(f"{name}: {text}" for name, text in failed)
    verdict = reply.get("error") or (f"state {status['state']}" + (f" ({status['reason']})" if status.get("reason")
                                                                     else "") if status.get("state") else "")
    text = f"wirebot.standby.activation exited {code}: {verdict or ' '.join(output.split())[-400:]}"
    if error:
        attempts = activation.get("attempts")
        text += f"; the agent's activation error: {' '.join(str(error).split())}"
        text += f" ({attempts} attempts)" if attempts else ""
    return text


def refuse(message: str, number: int = 2, key: str = "activate") -> None:
    """Record a refusal found at prepare time and stop the run before anything changes."""
    timeline.add(timeline.Record(PLAYBOOK, number, key, "refused before any change", host.name, "refused", 0.0,
                                 message))
    raise PyinfraError(message)


@deploy("Failover")
def failover(force=False, report=True):
    """
    Guarantees: the primary is fenced when it is reachable (fence command: connector stopped and
    masked, fence record; then gateway and scoreboard stopped); the standby is ACTIVE through
    wirebot.standby.activation; the public endpoint answers 2xx from the standby only (the origin the
    edge names in setting edge_origin_header's header, where it has one; the Cloudflare API's connections
    when the secrets hold an API token). When the
    primary cannot be reached it is dropped by pyinfra: the run goes on with the standby and activates
    only if the witness confirms the primary's connector is gone, or with force; otherwise it refuses
    before changing anything and says what it would need. Prints each step's duration and a summary.

    Reads: failover_force (False), failover_activation_wait (300), failover_witness_wait (30),
    incident_verify_seconds (60),
    incident_verify_probes (3), cloudflared_unit, standby_config, wirebot_agents_dir, wirebot_state_dir,
    wirebot_run_dir, witness_public_url, witness_public_host_header, witness_cloudflare_api_base,
    secrets_dir, cloudflared_secrets.

    + force: activate although the fence cannot be established (same as --data failover_force=true)
    + report: print the summary at the end of the run
    """
    primary, standby = pairs.selected_hosts("the failover")
    if report:
        summary.at_exit(PLAYBOOK)
    if host.name == primary.name:
        if not standby.connected:
            refuse(f"the standby ({standby.name}) cannot be reached: there is nothing to fail over to", 1, "fence")
        return
    if host.name != standby.name:
        return
    run = Failover(bool(force) or host_value(host.data, "failover_force"))
    if not primary.connected:
        timeline.note(PLAYBOOK, f"the primary ({primary.name}) could not be connected over SSH: pyinfra dropped "
                                "it; the run continues with the standby only")
        context_state.failed_hosts.discard(primary)  # handled here: the witness or force decides below
        try:
            run.decision()
        except model.Refusal as exc:
            refuse(str(exc))
    for step in run.steps():
        incident_step(name=step.title, step=step)

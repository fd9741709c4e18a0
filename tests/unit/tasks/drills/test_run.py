"""The drill's wiring without hosts (tasks/drills/run.py): operations that run once on a host pyinfra still
counts as active, steps that record their failures instead of raising, skips, and the report it builds."""

from tasks.drills import report
from tasks.drills.run import Drill

LAB = {"witness_public_url": "http://10.213.3.4:80/health", "witness_public_host_header": "wins.wirebot.chat"}


class FakeHost:
    def __init__(self, name):
        self.name = name


class FakeState:
    def __init__(self, *active):
        self.active_hosts = set(active)


def make(tmp_path, *active_names, **data):
    primary, standby = FakeHost("primary"), FakeHost("standby")
    hosts = {"primary": primary, "standby": standby}
    state = FakeState(*(hosts[n] for n in active_names))
    return Drill(state, primary, standby, {**LAB, "drill_local_dir": str(tmp_path), **data})


def test_an_operation_runs_once_on_the_primary_while_it_is_active(tmp_path):
    drill = make(tmp_path, "primary", "standby")
    ran = []
    call = drill.op("k", lambda: ran.append("x"))
    assert call(drill.state, drill.primary) is True and call(drill.state, drill.standby) is True
    assert ran == ["x"] and drill.calls["k"]["host"] is drill.primary


def test_after_the_primary_failed_operations_run_on_the_standby(tmp_path):
    drill = make(tmp_path, "standby")
    ran = []
    call = drill.op("k", lambda: ran.append(drill.calls["k"]["host"].name))
    assert call(drill.state, drill.standby) is True
    assert ran == ["standby"]


def test_abort_on_failure_fails_every_host(tmp_path):
    drill = make(tmp_path, "primary", "standby")
    call = drill.op("warmup", lambda: False, abort_on_failure=True)
    assert call(drill.state, drill.primary) is False and call(drill.state, drill.standby) is False
    quiet = drill.op("step", lambda: False)
    assert quiet(drill.state, drill.primary) is True


def test_steps_record_failures_skips_and_seconds_from_elsewhere(tmp_path):
    drill = make(tmp_path, "primary", "standby")

    def broken(_):
        raise OSError("ssh: connection reset")

    assert drill.run_step(3, broken) is False
    assert drill.steps[3]["status"] == report.FAILED and "connection reset" in drill.steps[3]["detail"]
    assert drill.run_step(4, lambda _: (True, "fine"), (3,)) is False
    assert drill.steps[4] == {**drill.steps[4], "status": report.SKIPPED, "detail": "step 3 did not succeed"}
    assert drill.run_step(7, lambda _: (True, "recovery: stop done", 2.5)) is True
    assert drill.steps[7]["seconds"] == 2.5 and drill.steps[7]["status"] == report.OK
    built = drill.build_report()
    assert built["result"] == "failed" and 3 in built["failed_steps"] and built["drill_id"] == drill.id
    assert set(built["seconds"]) == {"detection", "activation", "outage", "end_to_end"}
    line = report.json_line(built)
    drill.write_local(line)
    assert (tmp_path / "fire-drill.log").read_text() == line + "\n"
    assert (tmp_path / "drills" / drill.id / "report.json").exists()

"""tasks/core/hoststate.py and the operations that read through it (ops.managed_file, service,
absent): table-driven like pyinfra's own operation tests (facts in, commands out, [] = no change), the
batched fact's command run by a local shell, and the read cache against a stand-in host that runs its
facts locally and counts the round trips."""

import subprocess
import types

import pytest
from pyinfra.facts.server import Which

from tasks.core import hoststate, ops
from tasks.core.hoststate import FactBatch, PathStats, UnitStates, split_batch

A, B = "a" * 64, "b" * 64
DEST = "/etc/wirebot/x.conf"
TEMP = "/etc/wirebot/.x.conf.wirebot-new"
INSTALL = f"chown root:root -- {TEMP} && chmod 644 -- {TEMP} && mv -f -- {TEMP} {DEST}"
DIR = {"kind": "d", "user": "root", "group": "root", "mode": "755", "sha256": None}


def stats(sha=A, user="root", group="root", mode="644", kind="f"):
    return {"kind": kind, "user": user, "group": group, "mode": mode, "sha256": sha}


FILE_CASES = {
    "in place: nothing": (stats(), DIR, []),
    "missing: uploaded beside it, owner and mode set, moved in": (None, DIR, ["upload", INSTALL]),
    "missing with its folder: folder made first": (None, None, ["mkdir -p -- /etc/wirebot", "upload", INSTALL]),
    "other content: replaced whole": (stats(sha=B), DIR, ["upload", INSTALL]),
    "wrong owner only: chown in place": (stats(user="nobody"), DIR, [f"chown root:root -- {DEST}"]),
    "wrong group only: chown in place": (stats(group="wirebot"), DIR, [f"chown root:root -- {DEST}"]),
    "wrong mode only: chmod in place": (stats(mode="666"), DIR, [f"chmod 644 -- {DEST}"]),
    "owner and mode": (stats(user="nobody", mode="600"), DIR,
                       [f"chown root:root -- {DEST}", f"chmod 644 -- {DEST}"]),
}
PRIVATE = f"chown root:root -- {TEMP} && chmod 600 -- {TEMP} && mv -f -- {TEMP} {DEST}"


def test_a_private_file_is_uploaded_into_a_file_made_with_its_mode():
    made = f"rm -f -- {TEMP} && install -m 600 -o root -g root /dev/null {TEMP}"
    assert ops.file_plan(A, stats(sha=B, mode="600"), DIR, DEST, "root", "root", "600") == [made, "upload", PRIVATE]
    assert ops.file_plan(A, stats(mode="600"), DIR, DEST, "root", "root", "600") == []


@pytest.mark.parametrize("case", FILE_CASES, ids=list(FILE_CASES))
def test_file_plan(case):
    remote, parent, expected = FILE_CASES[case]
    assert ops.file_plan(A, remote, parent, DEST, "root", "root", "0644") == expected


@pytest.mark.parametrize("kind", ["d", "l", "o"])
def test_file_plan_refuses_what_is_not_a_regular_file(kind):
    with pytest.raises(ValueError, match="is not a regular file"):
        ops.file_plan(A, stats(kind=kind, sha=None), DIR, DEST, "root", "root", "644")


def unit_state(running, enabled):
    return {"running": running, "enabled": enabled, "loaded": True}


SERVICE_CASES = {
    "running and enabled, wanted so: nothing": (unit_state(True, True), True, True, []),
    "stopped, wanted running": (unit_state(False, True), True, True, ["systemctl start x.service"]),
    "disabled, wanted enabled": (unit_state(True, False), True, True, ["systemctl enable x.service"]),
    "both": (unit_state(False, False), True, True, ["systemctl start x.service", "systemctl enable x.service"]),
    "running, wanted stopped and disabled": (unit_state(True, True), False, False,
                                             ["systemctl stop x.service", "systemctl disable x.service"]),
    "stopped and disabled, wanted so: nothing": (unit_state(False, False), False, False, []),
    "mid-incident (None): left as it is": (unit_state(True, False), None, None, []),
}


@pytest.mark.parametrize("case", SERVICE_CASES, ids=list(SERVICE_CASES))
def test_service_plan(case):
    current, running, enabled, expected = SERVICE_CASES[case]
    assert ops.service_plan("x", current, running, enabled) == expected


@pytest.mark.parametrize("output, expected", [
    (["Id=a.service", "LoadState=loaded", "SubState=running", "UnitFileState=enabled", "",
      "Id=b.service", "SubState=exited", "UnitFileState=static", "LoadState=loaded", "",
      "UnitFileState=", "SubState=dead", "LoadState=not-found", "Id=gone.service"],
     {"a.service": {"running": True, "enabled": True, "loaded": True},
      "b.service": {"running": True, "enabled": True, "loaded": True},  # a oneshot that stays: running
      "gone.service": {"running": False, "enabled": False, "loaded": False}}),
    (["Id=c.service", "SubState=failed", "UnitFileState=disabled", "LoadState=loaded"],
     {"c.service": {"running": False, "enabled": False, "loaded": True}}),
])
def test_unit_states_parsing(output, expected):
    assert UnitStates().process(output) == expected


def test_unit_names_get_their_type():
    assert [hoststate.unit_name(u) for u in ("litestream", "a.service", "b.timer", "c@d")] == [
        "litestream.service", "a.service", "b.timer", "c@d.service"]


@pytest.mark.parametrize("output, wanted, missing", [
    (["dpkg", "rsync ii ", "curl ii "], ["rsync", "curl", "nftables"], ["nftables"]),
    (["dpkg", "rsync rc ", "curl ii "], ["rsync", "curl"], ["rsync"]),  # removed, config left: not installed
    (["dpkg", "rsync ii ", "curl ii "], ["rsync", "curl"], []),
    ([], ["rsync"], ["rsync"]),  # no answer: install
])
def test_installed_packages(output, wanted, missing):
    installed = ops.InstalledDebPackages().process(output) if output else None
    assert ops.missing_packages(wanted, installed) == missing


@pytest.mark.parametrize("line", [f"{A}  /x y", f"{A} */x y"])  # sha256sum's and openssl -r's formats
def test_path_stats_reads_both_digest_formats(line):
    assert PathStats().process(["s 81a4 root root 600 /x y", line])["/x y"]["sha256"] == A


MARK = "@@wirebot-0123"
SPLIT_CASES = {
    "each fact from its own lines": (
        [MARK + " 0", "/usr/bin/sh", "", MARK + " end 0", MARK + " 1", "x86_64", "", MARK + " end 0"],
        ["/usr/bin/sh", "x86_64"]),
    "output without a final newline": ([MARK + " 0", "200" + "", MARK + " end 0", MARK + " 1", MARK + " end 0"],
                                       ["200", None]),
    "a failed command gives the default": ([MARK + " 0", "partial", "", MARK + " end 1", MARK + " 1", "ok", "",
                                            MARK + " end 0"], [None, "ok"]),
}


class Lines(hoststate.FactBase):
    def command(self):
        return "true"

    def process(self, output):
        return "\n".join(output)


@pytest.mark.parametrize("case", SPLIT_CASES, ids=list(SPLIT_CASES))
def test_split_batch(case):
    lines, expected = SPLIT_CASES[case]
    assert split_batch([(Lines, {}), (Lines, {})], MARK, lines) == expected


def test_split_batch_marks_what_the_output_lacks_as_missing():
    """No markers at all (another program answered, e.g. pyinfra's @fake connector): read each alone."""
    assert split_batch([(Lines, {})], MARK, ["something else"]) == [hoststate.MISSING]


def _run(command: str) -> list:
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True)
    return out.returncode, out.stdout.splitlines()


def test_fact_batch_on_this_machine_equals_each_fact_alone(tmp_path):
    (tmp_path / "f").write_text("x")
    (tmp_path / "d").mkdir()
    specs = [(PathStats, {"paths": [str(tmp_path / n) for n in ("f", "d", "none")], "digests": True}),
             (Which, {"command": "sh"}), (Which, {"command": "no-such-tool-here"}),
             (ops.WirebotState, {"path": str(tmp_path / "none")})]
    _, lines = _run(FactBatch().command(specs, MARK))
    batched = split_batch(specs, MARK, lines)
    alone = []
    for cls, kwargs in specs:
        status, out = _run(str(cls().command(**kwargs)))
        alone.append(cls().process(out) if status == 0 and out else cls().default())
    assert batched == alone
    assert batched[0][str(tmp_path / "f")]["sha256"] == ops.hashlib.sha256(b"x").hexdigest()
    assert str(tmp_path / "none") not in batched[0] and batched[0][str(tmp_path / "d")]["kind"] == "d"


class StandIn:
    """A host whose facts run on this machine; counts round trips; `run()` plays an operation that ran a
    command (pyinfra's OperationMeta.executed)."""

    def __init__(self):
        self.name, self.calls, self.batch = "stand-in", 0, True
        self.state = types.SimpleNamespace(ops={self: {}})

    def get_fact(self, cls, **kwargs):
        self.calls += 1
        if cls is FactBatch and not self.batch:
            return ["an answer without markers"]
        status, out = _run(str(cls().command(**kwargs)))
        return cls().process(out) if status == 0 and out else cls().default()

    def run(self):
        meta = types.SimpleNamespace(is_complete=lambda: True, executed=True)
        self.state.ops[self][len(self.state.ops[self])] = types.SimpleNamespace(operation_meta=meta)


@pytest.fixture
def files(tmp_path):
    for name in "abc":
        (tmp_path / name).write_text(name)
    return tmp_path


def test_declared_reads_take_one_round_trip_and_are_kept_while_nothing_runs(files):
    host = StandIn()
    hoststate.want(host, paths=[str(files / "a"), str(files / "b")], facts=[(Which, {"command": "sh"})])
    assert hoststate.path(host, str(files / "a"))["sha256"] == ops.hashlib.sha256(b"a").hexdigest()
    assert hoststate.path(host, str(files / "b"))["kind"] == "f" and hoststate.fact(host, Which, command="sh")
    assert host.calls == 1
    (files / "a").write_text("changed behind our back")  # nothing ran on the host: what was read stands
    assert hoststate.path(host, str(files / "a"))["sha256"] == ops.hashlib.sha256(b"a").hexdigest()
    assert host.calls == 1


def test_an_operation_that_ran_a_command_makes_the_next_read_fresh(files):
    host = StandIn()
    hoststate.want(host, paths=[str(files / "a")])
    hoststate.path(host, str(files / "a"))
    (files / "a").unlink()
    host.run()
    assert hoststate.path(host, str(files / "a")) is None
    assert host.calls == 2


def test_after_an_invalidation_only_what_nobody_has_read_yet_comes_along(files):
    host = StandIn()
    hoststate.want(host, paths=[str(files / n) for n in "abc"])
    hoststate.path(host, str(files / "a"))
    host.run()
    (files / "c").write_text("new")
    assert hoststate.path(host, str(files / "b"))["kind"] == "f"  # regathers b (asked) and c (never read)
    assert hoststate.path(host, str(files / "c"))["sha256"] == ops.hashlib.sha256(b"new").hexdigest()
    assert host.calls == 2
    assert hoststate.path(host, str(files / "a"))["kind"] == "f"  # read before the change: asked again alone
    assert host.calls == 3


def test_an_undeclared_read_costs_one_round_trip_and_is_right(files):
    host = StandIn()
    assert hoststate.path(host, str(files / "c"))["sha256"] == ops.hashlib.sha256(b"c").hexdigest()
    assert hoststate.path(host, str(files / "nothing")) is None
    assert host.calls == 2


def test_an_answer_without_markers_reads_each_fact_alone(files):
    host = StandIn()
    host.batch = False
    hoststate.want(host, paths=[str(files / "a")], facts=[(Which, {"command": "sh"})])
    assert hoststate.path(host, str(files / "a"))["kind"] == "f"
    assert hoststate.fact(host, Which, command="sh")
    assert host.calls == 3  # the batch, then each alone

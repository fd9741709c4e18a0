"""wirebot.standby.activation: the one activation path with a fake systemctl, loopback health servers and
real Litestream file replicas; resumable after a crash at each step."""

import json
import os
import sqlite3
import stat
import subprocess
import sys
import time

import pytest
from wirebot.common import statefile
from wirebot.common.alerts import Alerter
from wirebot.standby import activation
from wirebot.standby import activation_steps as steps
from wirebot.standby import machine as m

from .. import agenttest
from ..agenttest import count_rows, make_db


class Crash(BaseException):
    """A simulated kill -9 in the middle of a step."""


@pytest.fixture
def site(tmp_path, http_server, fake_systemctl):
    s = agenttest.Site(tmp_path, http_server, fake_systemctl)
    s.build_replicas(rows=10, epoch=1)     # an older epoch: must not be used
    s.build_replicas(rows=50, epoch=2)
    s.build_files()
    s.stale_live(rows=3)
    return s


def new_store(site, state=m.ACTIVATING, epoch=2, heartbeat_epoch=2):
    store = statefile.Store(site.state_file, m.default_state())
    with store.lock:
        store.data.update(epoch=epoch, last_heartbeat={"epoch": heartbeat_epoch, "received_at": 1.0})
        if state == m.ACTIVATING:
            activation.enter_activating(store.data, "test activation", 100.0)
        else:
            store.data["state"] = state
        store.save()
    return store


def reload(site):
    return statefile.Store(site.state_file, m.default_state())


def test_full_activation(site, capsys):
    settings = site.settings()
    store = new_store(site)
    assert activation.run(settings, store, Alerter("standby", None)) is True
    data = reload(site).data
    assert data["state"] == m.ACTIVE and data["epoch"] == 3
    act = data["activation"]
    assert [act["steps"][n]["status"] for n in activation.STEPS] == ["done"] * 6
    assert act["active_at"] <= act["steps"]["tunnel"]["started_at"] <= act["completed_at"]  # ACTIVE first
    assert all(isinstance(act["steps"][n]["seconds"], float) for n in activation.STEPS)
    restored = act["steps"]["restore"]["detail"]
    assert restored["epoch_dir"] == 2 and restored["skipped"] == []
    assert len(restored["restored"]) == 5  # 3 DBs + 2 tenant DBs
    for live in site.dbs + [os.path.join(site.tenant_dir, t) for t in ("acme.db", "globex.db")]:
        assert count_rows(live) == 50
    for live in site.dbs:
        assert stat.S_IMODE(os.stat(live).st_mode) == 0o640
        assert not os.path.exists(live + "-shm") or open(live + "-shm", "rb").read() != b"stale"
    assert stat.S_IMODE(os.stat(os.path.join(site.tenant_dir, "acme.db")).st_mode) == 0o640
    for live in site.files_live:
        assert json.load(open(os.path.join(live, "sub", "config.json"))) == {"replicated": True}
    assert site.systemctl.calls() == [
        "stop wirebot-scoreboard", "stop openclaw-gateway",
        "start openclaw-gateway", "start wirebot-scoreboard", "start cloudflared-wirebot"]
    out = capsys.readouterr().out
    alert = [json.loads(line) for line in out.splitlines() if '"event": "alert"' in line][-1]
    assert alert["kind"] == "activated" and "epoch 3" in alert["message"] and "restore" in alert["message"]


def test_epoch_is_max_of_own_and_heartbeat_plus_one(site):
    store = new_store(site, epoch=4, heartbeat_epoch=2)
    assert activation.run(site.settings(), store, Alerter("t", None))
    assert reload(site).data["epoch"] == 5
    store = new_store(site, epoch=1, heartbeat_epoch=7)
    site.systemctl.calls()
    assert activation.run(site.settings(), store, Alerter("t", None))
    assert reload(site).data["epoch"] == 8


def test_db_without_replica_is_skipped_not_an_error(tmp_path, http_server, fake_systemctl):
    s = agenttest.Site(tmp_path, http_server, fake_systemctl)
    events = s.dbs[1]
    s.build_replicas(rows=20, skip=(events,))
    store = new_store(s)
    assert activation.run(s.settings(), store, Alerter("t", None))
    detail = reload(s).data["activation"]["steps"]["restore"]["detail"]
    assert detail["skipped"] == [events] and not os.path.exists(events)
    assert count_rows(s.dbs[0]) == 20


def test_no_replica_tree_at_all_still_activates(tmp_path, http_server, fake_systemctl):
    s = agenttest.Site(tmp_path, http_server, fake_systemctl)
    assert activation.run(s.settings(), new_store(s), Alerter("t", None))
    detail = reload(s).data["activation"]["steps"]["restore"]["detail"]
    assert detail["epoch_dir"] is None and sorted(detail["skipped"]) == sorted(s.dbs)


def corrupt_db(path):
    make_db(path, 2000)
    conn = sqlite3.connect(path)
    conn.execute("CREATE INDEX ix ON t (x)")
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode=delete")
    conn.close()
    with open(path, "r+b") as handle:  # scribble over the index's pages
        size = os.path.getsize(path)
        handle.seek(size - 3 * 4096 + 100)
        handle.write(os.urandom(2000))


def test_integrity_failure_aborts_without_replacing_live_db(site, tmp_path):
    bad = str(tmp_path / "corrupt.db")
    corrupt_db(bad)
    ok, text = steps.integrity_ok(bad)
    assert not ok and text
    fake = tmp_path / "fake-litestream"
    fake.write_text(f"#!/bin/sh\n# restore -o OUT URL\ncp '{bad}' \"$3\"\n")
    fake.chmod(0o755)
    site.cfg["activation"]["litestream_binary"] = str(fake)
    live = site.dbs[0]
    before = open(live, "rb").read()
    store = new_store(site)
    assert activation.run(site.settings(), store, Alerter("t", None)) is False
    data = reload(site).data
    assert data["state"] == m.ACTIVATING
    assert "integrity check" in data["activation"]["error"] and "live DB left untouched" in data["activation"]["error"]
    assert open(live, "rb").read() == before
    assert [f for f in os.listdir(os.path.dirname(live)) if "wirebot-restore" in f] == []
    assert not any(c.startswith("start") for c in site.systemctl.calls())


def test_litestream_restore_failure_is_a_step_error(site, tmp_path):
    fake = tmp_path / "failing-litestream"
    fake.write_text("#!/bin/sh\necho 'Error: no matching backup files available' >&2\nexit 1\n")
    fake.chmod(0o755)
    site.cfg["activation"]["litestream_binary"] = str(fake)
    assert activation.run(site.settings(), new_store(site), Alerter("t", None)) is False
    assert "no matching backup files" in reload(site).data["activation"]["error"]


def test_health_timeout_fails_step_then_retry_completes_without_restoring_again(site):
    site.scoreboard.set("/health", 503, {"ok": False})
    settings = site.settings()
    store = new_store(site)
    assert activation.run(settings, store, Alerter("t", None)) is False
    data = reload(site).data
    assert data["state"] == m.ACTIVATING and data["activation"]["services_begun"] is True
    assert "services:" in data["activation"]["error"] and "not ready within" in data["activation"]["error"]
    # the gateway has started serving: it writes a row; a retry must not restore over it
    conn = sqlite3.connect(site.dbs[1])
    conn.execute("INSERT INTO t VALUES (424242)")
    conn.commit()
    conn.close()
    site.scoreboard.set("/health", 200, {"ok": True})
    assert activation.run(settings, reload(site), Alerter("t", None)) is True
    assert count_rows(site.dbs[1]) == 51
    calls = site.systemctl.calls()
    assert calls.count("stop openclaw-gateway") == 1 and calls.count("start openclaw-gateway") == 2


def test_tunnel_needs_ready_connections(site):
    site.tunnel.set("/ready", 200, {"status": 200, "readyConnections": 0})
    settings = site.settings()
    assert activation.run(settings, new_store(site), Alerter("t", None)) is False
    assert "tunnel:" in reload(site).data["activation"]["error"]
    site.tunnel.set("/ready", 200, {"status": 200, "readyConnections": 1})
    assert activation.run(settings, reload(site), Alerter("t", None)) is True


def _crash_in(monkeypatch, step, after_real_work):
    """Make ``step`` die like a killed process (after doing its real work when asked)."""
    real = activation.RUNNERS.get(step)

    def dying(settings, **kwargs):
        if after_real_work and real:
            real(settings, **kwargs)
        raise Crash(step)

    if step == "epoch":
        monkeypatch.setattr(activation, "_finish", lambda *a, **k: (_ for _ in ()).throw(Crash("epoch")))
    else:
        monkeypatch.setitem(activation.RUNNERS, step, dying)


@pytest.mark.parametrize("step", ["restore", "files", "services", "epoch", "tunnel", "ready"])
@pytest.mark.parametrize("after_real_work", [False, True])
def test_resumes_after_crash_at_each_step(site, monkeypatch, step, after_real_work):
    settings = site.settings()
    store = new_store(site)
    with monkeypatch.context() as patch:
        _crash_in(patch, step, after_real_work)
        with pytest.raises(Crash):
            activation.run(settings, store, Alerter("t", None))
    data = reload(site).data
    # ACTIVE is recorded before the tunnel starts: a crash in the tunnel or readiness step leaves it ACTIVE
    assert data["state"] == (m.ACTIVE if step in ("tunnel", "ready") else m.ACTIVATING)
    services_begun = data["activation"]["services_begun"]
    assert services_begun == (step in ("services", "epoch", "tunnel", "ready"))
    if services_begun:  # a service wrote after activation began: it must survive the resume
        conn = sqlite3.connect(site.dbs[1])
        conn.execute("INSERT INTO t VALUES (777)")
        conn.commit()
        conn.close()
    restores = []
    real_restore = steps.restore_db
    monkeypatch.setattr(steps, "restore_db", lambda *a, **k: restores.append(a) or real_restore(*a, **k))
    assert activation.run(settings, reload(site), Alerter("t", None)) is True  # the restarted agent
    data = reload(site).data
    assert data["state"] == m.ACTIVE and data["epoch"] == 3
    if services_begun:  # never restored again once services started
        assert restores == [] and count_rows(site.dbs[1]) == 51
    else:  # a crashed restore is redone (nothing has written yet); a completed one is not
        assert len(restores) == (5 if step == "restore" else 0) and count_rows(site.dbs[1]) == 50
    assert activation.run(settings, reload(site), Alerter("t", None)) is True  # ACTIVE: nothing again
    assert reload(site).data["epoch"] == 3


def test_run_does_nothing_unless_activating(site):
    store = new_store(site, state=m.STANDBY)
    assert activation.run(site.settings(), store, Alerter("t", None)) is False
    assert site.systemctl.calls() == []


def test_deactivate_stops_tunnel_then_services_in_reverse(site):
    settings = site.settings()
    store = new_store(site)
    assert activation.run(settings, store, Alerter("t", None))
    before = len(site.systemctl.calls())
    activation.deactivate(settings, store, 4, clock=lambda: 500.0)
    assert site.systemctl.calls()[before:] == [
        "stop cloudflared-wirebot", "stop wirebot-scoreboard", "stop openclaw-gateway"]
    data = reload(site).data
    assert data["state"] == m.STANDBY and data["epoch"] == 4 and data["activation"] == {}
    assert data["recheck_after"] == 500.0 + 2 * 3


def test_deactivate_failure_leaves_state(site):
    settings = site.settings()
    store = new_store(site, state=m.ACTIVE)
    site.systemctl.fail("stop", "cloudflared-wirebot", "Job failed")
    with pytest.raises(steps.StepError):
        activation.deactivate(settings, store, 4)
    assert reload(site).data["state"] == m.ACTIVE


def run_cli(site, *args):
    env = dict(os.environ, PYTHONPATH=agenttest.AGENTS)
    proc = subprocess.run([sys.executable, "-m", "wirebot.standby.activation", "--config", site.config_path,
                           "--wait", "20"] + list(args), env=env, capture_output=True, text=True, timeout=120)
    return proc


def test_cli_refuses_without_fence_then_force_activates(site):
    site.write_config()
    proc = run_cli(site, "--reason", "drill")
    assert proc.returncode == 1
    data = reload(site).data
    assert data["state"] == m.FENCE_BLOCKED and "No route to host" in data["reason"]
    assert site.systemctl.calls() == []
    proc = run_cli(site, "--force", "--reason", "operator says so")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = reload(site).data
    assert data["state"] == m.ACTIVE and data["activation"]["forced"] is True
    assert "operator says so" in data["activation"]["reason"]


def test_cli_with_fence_over_ssh_activates(site):
    site.set_ssh("echo '{\"fenced\": true, \"connector_active\": false}'")
    site.write_config()
    proc = run_cli(site)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout[proc.stdout.index("{\n"):])["state"] == m.ACTIVE


def test_copied_files_take_the_owner_of_the_live_folder(tmp_path):
    """The replica's files belong to the file-sync account; once activated they belong to whoever owns
    the live folder (root for bin, the service user for the workspace)."""
    replica_root, live = tmp_path / "replica", tmp_path / "live" / "workspace"
    source = replica_root / "files" / str(live).lstrip("/")
    source.mkdir(parents=True)
    (source / "identity.md").write_text("who am I\n")
    subprocess.run(["chown", "-R", "4242:4242", str(replica_root / "files")], check=True)
    live.mkdir(parents=True)
    os.chown(live, 1234, 1234)
    result = steps.copy_files(str(replica_root), [str(live)])
    assert result["copied"] == [str(live)]
    copied = (live / "identity.md").stat()
    assert (copied.st_uid, copied.st_gid) == (1234, 1234)


def test_a_link_leaving_the_replica_refuses_the_activation_before_anything_changes(site, capsys):
    """Issue 9: files/home/wirebot/clawd replaced by a link to /root/.ssh before an activation."""
    secret = site.tmp / "root-ssh"
    secret.mkdir()
    (secret / "id_ed25519").write_text("PRIVATE\n")
    clawd = os.path.join(site.replica_root, "files", site.files_live[0].lstrip("/"))
    subprocess.run(["rm", "-rf", clawd], check=True)
    os.symlink(str(secret), clawd)
    before = {live: count_rows(live) for live in site.dbs}
    store = new_store(site)
    assert activation.run(site.settings(), store, Alerter("standby", None)) is False
    data = reload(site).data
    assert data["state"] == m.ACTIVATING
    error = data["activation"]["steps"]["restore"]["error"]
    assert error.startswith("replica tree refused, nothing copied from it: ") and "is a symlink" in error
    assert site.systemctl.calls() == []                      # nothing stopped, nothing restored
    assert {live: count_rows(live) for live in site.dbs} == before
    assert not os.path.exists(os.path.join(site.files_live[0], "id_ed25519"))
    alerts = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"event": "alert"' in line]
    assert [a["kind"] for a in alerts] == ["replica-refused"] and "is a symlink" in alerts[0]["message"]
    os.unlink(clawd)                                         # the operator removes it: the retry activates
    assert activation.run(site.settings(), store, Alerter("standby", None)) is True


def test_a_link_in_the_litestream_tree_refuses_the_activation(site):
    epoch = os.path.join(site.replica_root, "litestream", "epoch-3")
    os.symlink("/etc", epoch)
    assert activation.run(site.settings(), new_store(site), Alerter("standby", None)) is False
    error = reload(site).data["activation"]["steps"]["restore"]["error"]
    assert f"{epoch} is a symlink (-> /etc); Litestream never makes one" in error


def test_a_live_folder_replaced_by_a_link_is_never_written_through(site):
    """The live DB folder replaced by a link (the service user owns its parent): refused, not followed."""
    elsewhere = site.tmp / "elsewhere"
    elsewhere.mkdir()
    mem0 = os.path.dirname(site.dbs[2])
    subprocess.run(["rm", "-rf", mem0], check=True)
    os.symlink(str(elsewhere), mem0)
    assert activation.run(site.settings(), new_store(site), Alerter("standby", None)) is False
    error = reload(site).data["activation"]["steps"]["restore"]["error"]
    assert f"{mem0} is a symlink: refusing to go through it" in error
    assert list(elsewhere.iterdir()) == []


def test_a_live_db_replaced_by_a_link_is_replaced_not_written_through(site):
    target = site.tmp / "victim"
    target.write_text("root's file\n")
    os.unlink(site.dbs[1])
    os.symlink(str(target), site.dbs[1])
    assert activation.run(site.settings(), new_store(site), Alerter("standby", None)) is True
    assert target.read_text() == "root's file\n"
    assert not os.path.islink(site.dbs[1]) and count_rows(site.dbs[1]) == 50


def test_waiting_for_readiness_stops_when_cancelled():
    """A deactivation while the gateway's /readyz is awaited (after ACTIVE) ends the wait at once."""
    started = time.monotonic()
    with pytest.raises(steps.StepError, match="stopped waiting for .*: deactivated"):
        steps.wait_http("http://127.0.0.1:9/readyz", 300, cancelled=lambda: "deactivated")
    assert time.monotonic() - started < 5


def test_a_pending_deactivation_ends_the_readiness_wait_before_it_holds_the_lock():
    """POST /deactivate waits for the activation's lock, which the ready step holds while it awaits the gateway:
    the stop event it sets first is what ends that wait (the state the wait also watches cannot change yet)."""
    import threading

    from wirebot.standby import machine as sm

    class Store:
        lock = threading.Lock()

    act = {"steps": {}}
    store = Store()
    store.data = {"state": sm.ACTIVE, "activation": act}
    stop = threading.Event()
    assert activation._cancelled(store, act, stop) is None
    assert activation._cancelled(store, act, None) is None
    stop.set()
    assert activation._cancelled(store, act, stop) == "deactivation requested"
    stop.clear()
    store.data["state"] = sm.STANDBY
    assert activation._cancelled(store, act, stop) == "deactivated"
    store.data = {"state": sm.ACTIVE, "activation": {"steps": {}}}
    assert activation._cancelled(store, act, stop) == "deactivated"

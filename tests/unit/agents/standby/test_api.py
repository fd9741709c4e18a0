"""wirebot.standby.agent + standby_api: heartbeats, control POSTs, /status, /metrics and the tick loop,
against loopback servers (edge witness, health, tunnel-ready), a fake systemctl and a fake ssh."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from wirebot.common import channel, httpapi, signing, statefile, tls
from wirebot.hosttools import ctl
from wirebot.standby import activation
from wirebot.standby import api as standby_api
from wirebot.standby import machine as m
from wirebot.standby.agent import StandbyAgent

from .. import agenttest

API_PATH = "/client/v4/accounts/acct/cfd_tunnel/tun/connections"
HEARTBEAT = signing.Binding("heartbeat", "primary", "standby")
CONTROL = signing.Binding("control", "operator", "standby")


class Clock:
    def __init__(self):
        self.t = time.time()

    def __call__(self):
        return self.t

    def advance(self, seconds):
        self.t += seconds


class Env:
    def __init__(self, tmp_path, http_server, fake_systemctl):
        self.site = agenttest.Site(tmp_path, http_server, fake_systemctl)
        self.site.build_replicas(rows=5)
        self.site.cfg["heartbeat"]["interval_seconds"] = 1
        self.clock = Clock()
        self.agent = None
        self.server = None
        self.sequence = 100
        self.edge = self.site.edge
        self.edge.set(API_PATH, 200, {"success": True, "result": []})

    def start(self):
        if self.server:
            self.stop()
        settings = self.site.settings()
        self.agent = StandbyAgent(settings, clock=self.clock)
        self.agent.join_seconds = 30  # the fence and the activation (threads) finish within the tick here
        self.server = channel.serve(settings["channel"], "127.0.0.1", settings["listen_port"],
                                    standby_api.peer_routes(self.agent), standby_api.local_routes(self.agent),
                                    ["127.0.0.1"], "standby", max_body=4096)
        self.agent.servers = self.server
        self.peer = httpapi.Target.peer(f"https://127.0.0.1:{settings['listen_port']}",
                                        tls.client_context(agenttest.tls_settings("primary", "standby")))
        self.local = channel.local_target(settings["channel"])
        return self.agent

    def stop(self):
        channel.stop(self.server)
        self.server = None

    def request(self, method, path, body=b"", headers=None, via=None):
        """``method path`` to the agent: heartbeats over mutual TLS as the primary, everything else over
        the local control socket (``via``: "peer" or "local" to choose)."""
        via = via or ("peer" if path == "/heartbeat" else "local")
        conn = (self.peer if via == "peer" else self.local).connection(10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            raw = response.read()
            ctype = response.getheader("Content-Type") or ""
            return response.status, (json.loads(raw) if "json" in ctype else raw.decode())
        finally:
            conn.close()

    def heartbeat(self, epoch=1, sequence=None, now=None, key=None, body=None, drop=None, lease=None):
        if sequence is None:
            self.sequence += 1
            sequence = self.sequence
        beat = {"node": "primary", "sent_at": self.clock(), "sequence": sequence, "epoch": epoch,
                "services": {"openclaw-gateway": "active"}, "litestream": {}, "file_sync": {}}
        if lease is not None:
            beat["lease"] = lease
        payload = body if body is not None else json.dumps(beat).encode()
        headers = signing.signed_headers(key or self.site.key, HEARTBEAT, "POST", "/heartbeat", payload, sequence,
                                         now=self.clock() if now is None else now)
        if drop:
            del headers[drop]
        return self.request("POST", "/heartbeat", payload, headers)

    def control(self, path, payload, sequence=None):
        body = json.dumps(payload).encode()
        self.control_sequence = signing.next_sequence(getattr(self, "control_sequence", 0), now=self.clock())
        seq = sequence or self.control_sequence
        headers = signing.signed_headers(self.site.control_key, CONTROL, "POST", path, body, seq, now=self.clock())
        return self.request("POST", path, body, headers)

    def status(self):
        return self.request("GET", "/status")[1]

    def state(self):
        return statefile.load(self.site.state_file, {})


@pytest.fixture
def env(tmp_path, http_server, fake_systemctl):
    e = Env(tmp_path, http_server, fake_systemctl)
    yield e
    if e.server:
        e.stop()


# heartbeats ----------------------------------------------------------------------------------------
def test_valid_heartbeat_accepted_and_shown(env):
    env.start()
    status, answer = env.heartbeat(epoch=1)
    assert status == 200 and answer == {"ok": True, "state": m.STANDBY, "epoch": 1, "lease": {"granted": False}}
    st = env.status()
    assert st["last_heartbeat"]["node"] == "primary" and st["last_heartbeat"]["source"] == "127.0.0.1"
    assert st["last_heartbeat"]["services"] == {"openclaw-gateway": "active"}
    assert st["last_heartbeat_age_seconds"] == 0 and st["heartbeats"]["accepted"] == 1
    assert st["connections"]["peer"]["refused_source"] == 0 and st["connections"]["local"]["open"] == 1
    assert env.state()["last_sequence"] == env.sequence


def test_bad_signature_401(env):
    env.start()
    status, answer = env.heartbeat(key=bytes(32))
    assert status == 401 and answer["error"].startswith("bad-signature")


def test_stale_heartbeat_401(env):
    env.start()
    status, answer = env.heartbeat(now=env.clock() - 120)
    assert status == 401 and answer["error"].startswith("stale")


def test_replayed_heartbeat_409(env):
    env.start()
    assert env.heartbeat(sequence=500)[0] == 200
    status, answer = env.heartbeat(sequence=500)
    assert status == 409 and answer["error"].startswith("replayed")
    assert env.heartbeat(sequence=499)[0] == 409


@pytest.mark.parametrize("drop", [signing.HDR_SIGNATURE, signing.HDR_TIMESTAMP, signing.HDR_SEQUENCE])
def test_missing_headers_401(env, drop):
    env.start()
    status, answer = env.heartbeat(drop=drop)
    assert status == 401 and answer["error"].startswith("missing")


def test_restart_does_not_accept_a_replay(env):
    env.start()
    assert env.heartbeat(sequence=700)[0] == 200
    env.start()  # a new agent process on the same state file
    assert env.heartbeat(sequence=700)[0] == 409
    assert env.heartbeat(sequence=701)[0] == 200


def test_source_not_allowed_403(env):
    env.site.cfg["heartbeat"]["allowed_sources"] = ["10.213.0.2"]
    env.start()
    status, answer = env.heartbeat()
    assert status == 403 and "allowed_sources" in answer["error"]
    assert env.state()["last_heartbeat"] is None


@pytest.mark.parametrize("body,needle", [
    (b"not json", "not a JSON object"),
    (b"[1]", "not a JSON object"),
    (json.dumps({"node": "primary", "sent_at": 1.0, "sequence": 1}).encode(), "field epoch"),
    (json.dumps({"node": "p", "sent_at": 1.0, "sequence": 1, "epoch": 1}).encode(), "differs"),
])
def test_malformed_heartbeat_body_400_and_stays_up(env, body, needle):
    env.start()
    status, answer = env.heartbeat(body=body)
    assert status == 400 and needle in answer["error"]
    assert env.request("GET", "/health") == (200, {"ok": True})


def test_oversized_and_junk_requests_4xx_and_stays_up(env):
    env.start()
    assert env.request("POST", "/heartbeat", b"x" * 5000)[0] == 413
    assert env.request("GET", "/heartbeat")[0] == 405
    assert env.request("GET", "/nope")[0] == 404
    assert env.request("POST", "/heartbeat", b"{}")[0] == 401
    assert env.heartbeat()[0] == 200


def test_heartbeat_epoch_adopted_while_standby(env):
    env.start()
    env.heartbeat(epoch=4)
    assert env.status()["epoch"] == 4 and env.state()["epoch"] == 4


def test_metrics(env):
    env.start()
    env.heartbeat()
    env.heartbeat(key=bytes(32))
    env.heartbeat(key=bytes(32))
    status, text = env.request("GET", "/metrics")
    lines = text.splitlines()
    assert status == 200
    assert 'wirebot_standby_state{state="STANDBY"} 1' in lines
    assert 'wirebot_standby_state{state="ACTIVE"} 0' in lines
    assert "wirebot_standby_epoch 1" in lines and "wirebot_standby_heartbeats_accepted_total 1" in lines
    assert 'wirebot_standby_heartbeats_rejected_total{reason="bad-signature"} 2' in lines
    assert "wirebot_standby_seconds_since_heartbeat 0" in lines
    agenttest.assert_exposition_documented(text)


# the tick loop ------------------------------------------------------------------------------------------
def test_heartbeats_stop_but_primary_serves_public_no_activation(env, capsys):
    agent = env.start()
    env.heartbeat()
    env.edge.set("/health", 200, {"ok": True})
    env.clock.advance(3.5)
    d = agent.tick()
    assert d.state == m.STANDBY and "served (HTTP 200)" in env.status()["reason"]
    assert env.status()["witness"]["primary_serving"] is True
    assert not env.site.systemctl.calls()
    out = capsys.readouterr().out
    assert '"kind": "activation-refused"' in out and '"previous": "STANDBY", "state": "SUSPECT"' in out
    env.clock.advance(1)
    assert agent.tick().state == m.STANDBY  # watching: next suspicion only after another threshold
    env.clock.advance(3)
    assert agent.tick().state == m.STANDBY
    assert '"kind": "activation-refused"' not in capsys.readouterr().out  # same refusal: one alert


def test_connector_attached_at_api_no_activation(env):
    token = env.site.tmp / "cf-token"
    token.write_text("tok")
    env.site.cfg["secrets"]["cloudflare_api_token_file"] = str(token)
    env.edge.set(API_PATH, 200, {"success": True, "result": [{"id": "x", "conns": [{"origin_ip": "10.213.0.2"}]}]})
    agent = env.start()
    env.clock.advance(3.5)
    assert agent.tick().state == m.STANDBY
    assert "10.213.0.2" in env.status()["reason"] and not env.site.systemctl.calls()


def test_witness_clear_and_api_shows_none_is_not_a_fence(env):
    token = env.site.tmp / "cf-token"
    token.write_text("tok")
    env.site.cfg["secrets"]["cloudflare_api_token_file"] = str(token)
    agent = env.start()
    env.heartbeat(epoch=2)
    env.clock.advance(3.5)
    agent.tick()
    st = env.status()
    assert st["state"] == m.FENCE_BLOCKED and "absent is not fenced" in st["reason"], st
    assert "start cloudflared-wirebot" not in env.site.systemctl.calls()


def test_an_expired_enforced_lease_activates_without_the_ssh_fence(env):
    agent = env.start()
    status, answer = env.heartbeat(epoch=2, lease={"enforced": True, "seconds": 2})
    assert status == 200 and answer["lease"] == {"granted": True}
    env.clock.advance(3.5)
    agent.tick()
    st = env.status()
    assert st["state"] == m.ACTIVE and st["epoch"] == 3, st
    assert st["fence"] is None  # no SSH needed: the primary's kernel stopped its serving traffic
    assert set(st["activation"]["steps"]) == set(activation.STEPS)
    assert "start cloudflared-wirebot" in env.site.systemctl.calls()
    status, answer = env.heartbeat(epoch=2, lease={"enforced": True, "seconds": 2})
    assert answer["lease"] == {"granted": False} and answer["state"] == m.ACTIVE  # never again


def test_no_api_token_and_fence_fails_fence_blocked_then_heartbeat_returns(env, capsys):
    agent = env.start()
    env.clock.advance(3.5)
    assert agent.tick().state == m.FENCE_BLOCKED
    assert "No route to host" in env.status()["reason"]
    assert '"kind": "fence-blocked"' in capsys.readouterr().out
    env.clock.advance(20)
    assert agent.tick().state == m.FENCE_BLOCKED  # re-evaluated, no new alert
    assert '"kind": "fence-blocked"' not in capsys.readouterr().out
    env.heartbeat()
    assert agent.tick().state == m.STANDBY


def test_fence_over_ssh_succeeds_activates(env):
    env.site.set_ssh("echo '{\"fenced\": true, \"connector_active\": false}'")
    agent = env.start()
    env.clock.advance(3.5)
    agent.tick()
    assert env.status()["state"] == m.ACTIVE and env.status()["fence"]["ok"] is True


def test_active_standby_logs_its_witness_watch_only_when_the_answer_changes(env, capsys):
    token = env.site.tmp / "cf-token"
    token.write_text("tok")
    env.site.cfg["secrets"]["cloudflare_api_token_file"] = str(token)
    env.site.cfg["fencing"] = {"watch_seconds": 3}
    agent = env.start()
    env.heartbeat(lease={"enforced": True, "seconds": 2})
    env.clock.advance(3.5)
    agent.tick()
    assert env.state()["state"] == m.ACTIVE
    env.clock.advance(3.5)
    agent.tick()  # the first watch asks the public endpoint too (not probed while the lease ran out)
    capsys.readouterr()
    for _ in range(3):  # routine re-checks, each one watch period apart, same answer
        env.clock.advance(3.5)
        agent.tick()
    out = capsys.readouterr().out
    assert env.state()["witness"]["at"] == env.clock() and '"witness-checked"' not in out
    env.edge.set(API_PATH, 200, {"success": True, "result": [{"id": "x", "conns": [{"origin_ip": "10.213.0.2"}]}]})
    env.clock.advance(3.5)
    agent.tick()
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"witness-checked"' in line]
    assert len(logged) == 1 and logged[0]["other_connector"] is True


def test_heartbeat_during_suspect_returns_to_standby(env):
    agent = env.start()
    env.clock.advance(3.5)
    called = []
    agent.witness_fn = lambda *a: called.append(a) or {"at": None}
    with agent.store.lock:  # enter SUSPECT without completing the witness check
        agent._apply(m.decide(agent.store.data, agent.observe()), env.clock())
    assert env.state()["state"] == m.SUSPECT
    env.clock.advance(0.1)
    env.heartbeat()
    assert agent.tick().state == m.STANDBY


def test_restart_in_activating_resumes_and_active_stays(env):
    agent = env.start()
    with agent.store.lock:
        activation.enter_activating(agent.store.data, "test", env.clock())
        agent.store.save()
    agent = env.start()
    agent.tick()
    assert env.state()["state"] == m.ACTIVE
    calls = len(env.site.systemctl.calls())
    agent = env.start()
    agent.tick()
    assert env.state()["state"] == m.ACTIVE and len(env.site.systemctl.calls()) == calls


# control POSTs ---------------------------------------------------------------------------------------
def test_control_posts_must_be_signed(env):
    env.start()
    assert env.request("POST", "/activate", b'{"force": true}')[0] == 401
    assert env.request("POST", "/deactivate", b'{"epoch": 2}')[0] == 401
    assert env.control("/activate", {"force": "yes"})[0] == 400


def test_forced_activate_then_deactivate(env):
    agent = env.start()
    status, answer = env.control("/activate", {"force": True, "reason": "drill"})
    assert status == 202 and answer["accepted"] and answer["id"]
    agent.tick()
    st = env.status()
    assert st["state"] == m.ACTIVE and st["last_manual"]["id"] == answer["id"]
    assert st["activation"]["forced"] is True
    assert env.control("/activate", {})[1]["message"] == "already ACTIVE"
    assert env.control("/deactivate", {"epoch": 1})[0] == 409  # lower than our epoch 2
    status, answer = env.control("/deactivate", {"epoch": 3})
    assert status == 200 and answer == {"state": m.STANDBY, "epoch": 3, "changed": True}
    assert env.site.systemctl.calls()[-3:] == [
        "stop cloudflared-wirebot", "stop wirebot-scoreboard", "stop openclaw-gateway"]
    assert env.control("/deactivate", {"epoch": 3}) == (200, {"state": m.STANDBY, "epoch": 3, "changed": False})
    assert env.control("/deactivate", {"epoch": 5})[0] == 409
    assert env.control("/deactivate", {"epoch": "x"})[0] == 400
    env.clock.advance(1)
    assert agent.tick().state == m.STANDBY  # grace after deactivation: no instant suspicion


def test_activate_while_active_but_still_finishing_is_accepted_so_the_caller_waits(env):
    """A playbook's activation request between ACTIVE and completed_at (tunnel, readiness) gets 202: the
    caller (ctl activate --wait) then waits for the whole activation instead of returning at once."""
    store = env.start().store
    with store.lock:
        store.data.update(state=m.ACTIVE, epoch=2, activation={"steps": {"epoch": {"status": "done"}}})
        store.save()
    status, answer = env.control("/activate", {})
    assert status == 202 and answer["accepted"] and answer["id"] is None and answer["state"] == m.ACTIVE
    with store.lock:
        store.data["activation"]["completed_at"] = 5.0
        store.save()
    assert env.control("/activate", {})[1]["message"] == "already ACTIVE"


def test_unforced_activate_needs_the_fence(env):
    agent = env.start()
    status, answer = env.control("/activate", {"reason": "planned"})
    assert status == 202
    agent.tick()
    st = env.status()
    assert st["state"] == m.FENCE_BLOCKED and st["last_manual"]["outcome"] == "fence-blocked"
    assert env.control("/deactivate", {"epoch": 1})[0] == 200  # FENCE_BLOCKED -> STANDBY


def test_the_tick_falls_on_the_missed_heartbeat_threshold_not_up_to_a_tick_after_it(env):
    agent = env.start()
    assert env.heartbeat(epoch=1)[0] == 200
    tick = agent.tick_seconds()
    assert agent.next_wait() == pytest.approx(tick)  # the threshold is far off
    env.clock.advance(agent.threshold - tick / 2)
    assert agent.next_wait() == pytest.approx(tick / 2 + 0.005)  # wake just past the threshold
    env.clock.advance(tick)
    assert agent.next_wait() == pytest.approx(tick)  # past it: the detector fired, back to the period


def test_running_loop_and_ctl(env, capsys):
    agent = env.start()
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
    try:
        settings = env.site.settings()
        capsys.readouterr()
        assert ctl.status(settings) == 0
        out = capsys.readouterr().out
        assert json.loads(out[out.index("{\n"):])["state"] == m.STANDBY
        assert ctl.activate(settings, False, "planned", wait=20, poll=0.05) == 1  # no fence
        assert '"ok": false' in capsys.readouterr().out
        assert ctl.deactivate(settings, 1) == 0
        assert ctl.activate(settings, True, "drill", wait=30, poll=0.05) == 0
        assert '"state": "ACTIVE"' in capsys.readouterr().out
        assert env.state()["state"] == m.ACTIVE
        # the activation CLI sees the agent's lock and hands over to it
        lock = activation.try_lock(settings["state_file"])
        assert lock is not None
        try:
            assert activation.main(["--config", env.site.config_path, "--wait", "5"]) == 0
        finally:
            os.close(lock)
        assert ctl.main(["--config", env.site.config_path, "deactivate", "--epoch", "5"]) == 0
        assert env.state()["state"] == m.STANDBY and env.state()["epoch"] == 5
    finally:
        stop.set()
        agent.wake.set()
        thread.join(10)


def test_daemon_process_starts_serves_and_stops(env):
    settings = env.site.settings()
    proc = subprocess.Popen([sys.executable, "-m", "wirebot.standby.agent", "--config", env.site.config_path],
                            env=dict(os.environ, PYTHONPATH=agenttest.AGENTS), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        local = channel.local_target(settings["channel"])
        deadline = time.monotonic() + 20
        while httpapi.get_json(local, "/health", 1)[0] != 200:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        assert activation.try_lock(settings["state_file"]) is None  # the agent holds it
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    events = [json.loads(line)["event"] for line in out.splitlines() if line.startswith("{")]
    assert events[0] == "started" and "stopping" in events


def test_daemon_config_error_exit_2(tmp_path):
    bad = tmp_path / "standby.yml"
    bad.write_text("listen_address: 127.0.0.1\n")
    proc = subprocess.run([sys.executable, "-m", "wirebot.standby.agent", "--config", str(bad)], capture_output=True,
                          env=dict(os.environ, PYTHONPATH=agenttest.AGENTS), text=True, timeout=30)
    assert proc.returncode == 2 and f"{bad}: node_name is required (missing)" in proc.stderr

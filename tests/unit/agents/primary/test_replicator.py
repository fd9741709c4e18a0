"""wirebot.primary.replicator: the daemon in-process on 127.0.0.1 with a temp config, a stand-in Litestream
control socket and a loopback standby (mutual TLS, the standby's certificate) receiving heartbeats.
The API is reached over the replicator's local control socket; control requests signed with its
control key."""

import datetime
import functools
import itertools
import json
import os
import shutil
import socketserver
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest
import yaml
from wirebot.common import config, httpapi, signing, statefile, tls
from wirebot.primary import filesync, replicator

from tasks.core.wait import wait_for as core_wait_for

from .. import agenttest

KEY_HEX = "ab" * 32  # the heartbeat key
KEY = bytes.fromhex(agenttest.CONTROL_KEY_HEX)  # the control key (what signed() uses)
CONTROL = signing.Binding("control", "operator", "primary")
_LOCAL = {}
_seq = itertools.count(signing.next_sequence(0))


class FakeLitestream(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Answers /list and /sync like Litestream 0.5.17's control socket (shapes from the fixtures)."""

    daemon_threads = True

    def __init__(self, path):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def address_string(self):
                return "unix"

            def _json(self, obj):
                data = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._json({"databases": [{"path": p, "status": "replicating",
                                           "last_sync_at": "2026-11-26T19:44:07.563575724Z"}
                                          for p in server.dbs]})

            def do_POST(self):
                req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.sync_requests.append(req)
                self._json({"status": "no_change", "path": req["path"], "txid": 3, "replicated_txid": 3})

        server = self
        self.dbs = []
        self.sync_requests = []
        super().__init__(path, Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


class Standby:
    """The standby's peer listener: mutual TLS with the standby's certificate, pinning the primary's."""

    def __init__(self):
        self.beats = []
        self.clients = []

        def beat(request):
            self.beats.append(request.json())
            self.clients.append(request.client)
            return 200, {"ok": True}

        self.server = httpapi.serve("127.0.0.1", 0, {("POST", "/heartbeat"): beat}, component="standby-test",
                                    tls=tls.server_context(agenttest.tls_settings("standby", "primary")))
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"


def write_config(tmp_path, socket_path, agent_url, **overrides):
    (tmp_path / "hmac.key").write_text(KEY_HEX + "\n")
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "openclaw.json").write_text("{}")
    channel = agenttest.channel_config(tmp_path, "primary", "standby")
    cfg = {
        "node_name": "primary", "listen_address": "127.0.0.1", "listen_port": 0,
        "state_file": str(tmp_path / "state.json"), "data_root": str(tmp_path),
        "secrets": {"hmac_key_file": str(tmp_path / "hmac.key"), "control_key_file": channel["control_key_file"],
                    "discord_webhook_file": str(tmp_path / "absent.url"),
                    "cloudflare_api_token_file": str(tmp_path / "absent-token")},
        "tls": channel["tls"], "control": channel["control"], "http": channel["http"],
        "standby": {"host": "127.0.0.1", "user": "wirebot-repl", "ssh_key": "/nonexistent/key",
                    "known_hosts": "/nonexistent/known", "agent_url": agent_url, "node_name": "standby",
                    "replica_root": str(tmp_path / "replica")},
        "litestream": {"socket": socket_path,
                       "dbs": [str(tmp_path / "events.db")], "tenant_dir": str(tmp_path / "tenants"),
                       "stall_seconds": 120, "poll_seconds": 0.2},
        "file_sync": {"paths": [str(src)], "debounce_seconds": 0.1, "full_sync_minutes": 15,
                      "retry_max_seconds": 5, "exclude": []},
        "heartbeat": {"interval_seconds": 0.2, "clock_window_seconds": 60},
        "services": ["litestream"],
        "drill": {"command": [], "log_file": "", "max_age_days": 35},
        "witness": {"public_url": "http://127.0.0.1:9/health", "public_host_header": None,
                    "cloudflare_api_base": "http://127.0.0.1:9/client/v4", "account_id": "acct",
                    "tunnel_id": "tun", "self_origin_ip": "127.0.0.1", "timeout_seconds": 1},
        "fencing": {"lease_enabled": False, "lease_seconds": 2, "units": ["cloudflared-wirebot"],
                    "fenced_file": str(tmp_path / "fenced.json"), "ready_url": "http://127.0.0.1:9/ready"},
    }
    for dotted, value in overrides.items():
        node = cfg
        *parents, last = dotted.split(".")
        for part in parents:
            node = node[part]
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    path = tmp_path / "replicator.yml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.fixture
def env(tmp_path):
    sockdir = tempfile.mkdtemp(prefix="wbrep-", dir="/tmp")
    fake = FakeLitestream(os.path.join(sockdir, "ls.sock"))
    fake.dbs = [str(tmp_path / "events.db")]
    standby = Standby()
    daemons = []

    def start(**overrides):
        c = replicator.load_config(write_config(tmp_path, fake.server_address, standby.url, **overrides))
        d = replicator.Replicator(c, command_for=filesync.local_command(str(tmp_path / "replica")),
                                  probe=lambda unit: "active")
        d.start()
        daemons.append(d)
        _LOCAL["target"] = httpapi.Target.local(c["channel"]["control_socket"])
        d.url = ""  # call() and signed() take the path and go through the control socket
        return d

    statefile.save(str(tmp_path / "state.json"), {"epoch": 7, "sequence": 0})
    yield {"start": start, "fake": fake, "standby": standby, "tmp": tmp_path}
    for d in daemons:
        d.stop()
    standby.server.shutdown()
    standby.server.server_close()
    fake.shutdown()
    fake.server_close()
    shutil.rmtree(sockdir, ignore_errors=True)


def call(path, method="GET", body=None, headers=None):
    """``method path`` on the running replicator's control socket; (status, JSON or text)."""
    conn = _LOCAL["target"].connection(10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        raw, status, ctype = response.read(), response.status, response.getheader("Content-Type") or ""
    finally:
        conn.close()
    return status, (json.loads(raw) if "json" in ctype else raw.decode())


def signed(path, payload=None, raw=None):
    body = raw if raw is not None else json.dumps(payload or {}).encode()
    headers = {"Content-Type": "application/json"}
    headers.update(signing.signed_headers(KEY, CONTROL, "POST", path, body, next(_seq)))
    return call(path, "POST", body, headers), headers, body


wait_for = functools.partial(core_wait_for, timeout=15.0, interval=0.05)  # the one wait_for, this file's pace


def test_health_status_metrics(env):
    d = env["start"]()
    everything_ok = {"litestream": "ok", "file_sync": "ok", "heartbeat": "ok"}
    assert wait_for(lambda: call(d.url + "/health")[1]["components"] == everything_ok)
    status, health = call(d.url + "/health")
    assert status == 200
    assert health == {"ok": True, "components": {"litestream": "ok", "file_sync": "ok", "heartbeat": "ok"},
                      "failing": []}
    status, st = call(d.url + "/status")
    db = str(env["tmp"] / "events.db")
    src = str(env["tmp"] / "src")
    assert status == 200 and st["epoch"] == 7 and st["node"] == "primary" and st["drills"] == []
    assert st["litestream"][db]["lag_txids"] == 0 and st["litestream"][db]["replicated_txid"] == 3
    assert st["file_sync"][src]["state"] == "clean" and st["file_sync"][src]["lag_seconds"] == 0
    assert st["heartbeat"]["last"]["ok"] and st["heartbeat"]["last"]["epoch"] == 7
    assert st["services"] == {"litestream": "active"} and st["watcher"] in ("inotify", "scan")
    assert (env["tmp"] / "replica" / "files" / src.lstrip("/") / "openclaw.json").exists()
    beat = wait_for(lambda: next((b for b in env["standby"].beats if b["litestream"]), None))
    assert beat["epoch"] == 7 and db in beat["litestream"] and src in beat["file_sync"]
    status, text = call(d.url + "/metrics")
    assert status == 200
    for line in ("wirebot_replicator_up 1", f'wirebot_replicator_db_lag_seconds{{db="{db}"}} 0',
                 f'wirebot_replicator_db_lag_txids{{db="{db}"}} 0',
                 f'wirebot_replicator_path_lag_seconds{{path="{src}"}} 0',
                 f'wirebot_replicator_file_sync_failures_total{{path="{src}"}} 0'):
        assert line in text.splitlines()
    assert "wirebot_replicator_heartbeats_sent_total" in text
    assert "wirebot_replicator_heartbeat_failures_total 0" in text
    assert 'wirebot_replicator_component_failing{component="file_sync"} 0' in text.splitlines()
    assert "wirebot_replicator_drill_last_pass_timestamp_seconds" not in text  # no drill log configured
    agenttest.assert_exposition_documented(text)


def test_drill_watch_metric_and_overdue_alert(env, capsys):
    log_file = env["tmp"] / "fire-drill.log"
    passed_at = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) - datetime.timedelta(days=40)
    failed_at = passed_at + datetime.timedelta(days=30)
    log_file.write_text(json.dumps({"result": "passed", "finished_at": passed_at.isoformat()}) + "\n"
                        + json.dumps({"result": "failed", "finished_at": failed_at.isoformat()}) + "\n")
    d = env["start"](**{"drill.log_file": str(log_file), "drill.max_age_days": 35})
    since = d.drill_watch.since
    assert statefile.load(str(env["tmp"] / "state.json"), {})["drill_watch_since"] == since  # kept across restarts
    assert d.drill_watch.check(time.time()) is True
    _, text = call(d.url + "/metrics")
    assert f"wirebot_replicator_drill_last_pass_timestamp_seconds {int(passed_at.timestamp())}" in text.splitlines()
    assert "wirebot_replicator_drill_watch_since_timestamp_seconds " in text
    agenttest.assert_exposition_documented(text)
    out = capsys.readouterr().out
    assert '"kind": "drill-overdue"' in out and passed_at.isoformat() in out and "40.0 days ago" in out


def test_health_503_when_litestream_unreachable(env, tmp_path):
    d = env["start"](**{"litestream.socket": str(tmp_path / "no.sock")})
    assert wait_for(lambda: call(d.url + "/health")[1]["components"]["litestream"] == "unreachable")
    status, health = call(d.url + "/health")
    assert status == 503 and not health["ok"] and health["failing"] == ["litestream"]


def test_signed_posts(env):
    d = env["start"]()
    assert call(d.url + "/trigger-sync", "POST", b"{}", {"Content-Type": "application/json"})[0] == 401
    before = len(env["fake"].sync_requests)
    (status, body), headers, raw = signed(d.url + "/trigger-sync")
    assert status == 202 and body["accepted"]
    assert wait_for(lambda: any(r.get("wait") for r in env["fake"].sync_requests[before:]))
    assert call(d.url + "/trigger-sync", "POST", raw, headers)[0] == 401          # replay
    bad = dict(headers, **{"X-Wirebot-Signature": "0" * 64})
    assert call(d.url + "/trigger-sync", "POST", raw, bad)[0] == 401
    stale = signing.signed_headers(KEY, CONTROL, "POST", "/trigger-sync", raw, next(_seq), now=time.time() - 3600)
    assert call(d.url + "/trigger-sync", "POST", raw, stale)[0] == 401
    assert signed(d.url + "/trigger-sync", raw=b"{not json")[0][0] == 400
    big = b"x" * 70000
    assert call(d.url + "/trigger-sync", "POST", big, {"Content-Type": "application/json"})[0] == 413
    assert call(d.url + "/drill", "POST", b"{}", {"Content-Length": "nonsense"})[0] == 400
    assert call(d.url + "/nope")[0] == 404 and call(d.url + "/health", "POST", b"{}")[0] == 405
    assert call(d.url + "/health")[0] in (200, 503)                                # still up
    saved = statefile.load(str(env["tmp"] / "state.json"), {})
    assert saved["api_last_sequence"] >= int(headers["X-Wirebot-Sequence"]) and saved["epoch"] == 7


def test_drill_runs_once_at_a_time(env, tmp_path):
    gate = tmp_path / "go"
    script = (f"i=0; while [ ! -e '{gate}' ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; "
              "echo drill-output; exit 3")
    d = env["start"](**{"drill.command": ["sh", "-c", script]})
    (status, body), _, _ = signed(d.url + "/drill")
    assert status == 202 and body["id"]
    (status, again), _, _ = signed(d.url + "/drill")
    assert status == 409 and "already running" in again["error"]
    assert call(d.url + "/status")[1]["drills"][0]["state"] == "running"
    gate.write_text("")
    drill = wait_for(lambda: [r for r in call(d.url + "/status")[1]["drills"] if r["exit_code"] is not None])
    assert drill[0]["id"] == body["id"] and drill[0]["exit_code"] == 3 and drill[0]["state"] == "failed"
    assert "drill-output" in drill[0]["output_tail"]
    assert signed(d.url + "/drill")[0][0] == 202                                  # free again


def test_drill_without_command_is_503(env):
    d = env["start"]()
    assert call(d.url + "/drill", "POST", b"{}")[0] == 401                        # auth comes first
    (status, body), _, _ = signed(d.url + "/drill")
    assert status == 503 and body["error"] == "no drill command configured"


@pytest.mark.parametrize("overrides, message", [
    ({"standby.host": None}, "standby.host is required"),
    ({"listen_port": "eighty"}, "listen_port: expected an integer"),
    ({"file_sync.paths": ["/ok", 3]}, "file_sync.paths[1]: expected a non-empty string"),
    ({"file_sync.debounce_seconds": -1}, "file_sync.debounce_seconds: expected a positive number"),
    ({"litestream.socket": "relative.sock"}, "litestream.socket: expected an absolute path"),
    ({"drill.command": "make drill"}, "drill.command: expected a list"),
])
def test_config_errors_name_file_and_key(tmp_path, overrides, message):
    path = write_config(tmp_path, "/tmp/x.sock", "https://127.0.0.1:9", **overrides)
    with pytest.raises(config.ConfigError) as err:
        replicator.load_config(path)
    assert str(err.value).startswith(path + ": ") and message in str(err.value)


def test_main_exits_2_on_config_error(tmp_path, capsys):
    path = write_config(tmp_path, "/tmp/x.sock", "https://127.0.0.1:9", **{"secrets.hmac_key_file": None})
    assert replicator.main(["--config", path]) == 2
    assert "secrets.hmac_key_file is required" in capsys.readouterr().err
    assert replicator.main(["--config", str(tmp_path / "missing.yml")]) == 2
    assert "missing.yml: file not found" in capsys.readouterr().err
    path = write_config(tmp_path, "/tmp/x.sock", "https://127.0.0.1:9")
    (tmp_path / "hmac.key").write_text("abcd")
    assert replicator.main(["--config", path]) == 2
    assert "HMAC key" in capsys.readouterr().err


def test_post_signed_helper_is_accepted(env):
    env["start"]()
    status, body = httpapi.post_signed(_LOCAL["target"], "/trigger-sync", KEY, CONTROL, {"why": "test"},
                                       next(_seq), 5)
    assert status == 202 and body["accepted"]


def test_control_is_bound_to_its_key_path_and_listener(env):
    """A control request signed for /trigger-sync is refused at /drill; the heartbeat key does not sign
    control; the peer listener (mutual TLS, the standby only) has no control route at all."""
    d = env["start"]()
    body = b"{}"
    made_for_sync = signing.signed_headers(KEY, CONTROL, "POST", "/trigger-sync", body, next(_seq))
    assert call("/drill", "POST", body, made_for_sync) == (401, {"error": "signature refused: bad-signature"})
    heartbeat_key = bytes.fromhex(KEY_HEX)
    with_hb_key = signing.signed_headers(heartbeat_key, CONTROL, "POST", "/trigger-sync", body, next(_seq))
    assert call("/trigger-sync", "POST", body, with_hb_key)[0] == 401
    as_heartbeat = signing.signed_headers(heartbeat_key, signing.Binding("heartbeat", "primary", "standby"), "POST",
                                          "/trigger-sync", body, next(_seq))
    assert call("/trigger-sync", "POST", body, as_heartbeat)[0] == 401
    assert d.drills == [] and statefile.load(str(env["tmp"] / "state.json"), {}).get("api_last_sequence") is None
    port = d.servers[0].server_address[1]
    as_standby = httpapi.Target.peer(f"https://127.0.0.1:{port}",
                                     tls.client_context(agenttest.tls_settings("standby", "primary")))
    assert httpapi.get_json(as_standby, "/status", 5)[1]["node"] == "primary"  # the peer may read
    signed_ok = signing.signed_headers(KEY, CONTROL, "POST", "/trigger-sync", body, next(_seq))
    assert httpapi.call(as_standby, "POST", "/trigger-sync", body, signed_ok, 5)[0] == 404
    stranger = httpapi.Target.peer(f"https://127.0.0.1:{port}",
                                   tls.client_context(agenttest.tls_settings("stranger", "primary")))
    assert httpapi.get_json(stranger, "/status", 5)[0] == 0
    assert wait_for(lambda: env["standby"].beats) and set(env["standby"].clients) == {"127.0.0.1"}


def test_the_heartbeat_goes_only_to_the_pinned_standby(env):
    """A standby presenting another certificate never receives a heartbeat (the TLS handshake fails)."""
    env["standby"].server.shutdown()
    env["standby"].server.server_close()
    impostor = []
    srv = httpapi.serve("127.0.0.1", 0, {("POST", "/heartbeat"): lambda r: impostor.append(r) or (200, {})},
                        component="impostor", tls=tls.server_context(agenttest.tls_settings("stranger", "primary")))
    env["standby"].server = srv
    d = env["start"](**{"standby.agent_url": f"https://127.0.0.1:{srv.server_address[1]}"})
    assert wait_for(lambda: d.sender.status()["failures_total"] >= 2)
    assert impostor == [] and "unreachable" in d.sender.status()["last"]["reason"]


def test_epoch_is_raised_only_by_a_signed_request_to_the_replicator(env):
    """POST /epoch: the replicator is the state file's only writer. Unsigned: 401, nothing written; a higher
    epoch is saved (sequences kept) and the next heartbeats carry it; the same again: changed false; a lower
    (stale) one: 409 and the epoch stays; not a positive integer: 400."""
    d = env["start"]()
    state = str(env["tmp"] / "state.json")
    assert call(d.url + "/epoch", "POST", b'{"epoch": 9}', {"Content-Type": "application/json"})[0] == 401
    assert statefile.load(state, {})["epoch"] == 7
    (status, body), headers, _ = signed(d.url + "/epoch", {"epoch": 9})
    assert (status, body) == (200, {"epoch": 9, "changed": True})
    saved = statefile.load(state, {})
    assert saved["epoch"] == 9 and saved["api_last_sequence"] == int(headers["X-Wirebot-Sequence"])
    assert wait_for(lambda: env["standby"].beats and env["standby"].beats[-1]["epoch"] == 9)
    assert statefile.load(state, {})["sequence"] > 0  # the heartbeat thread kept writing its sequence
    assert signed(d.url + "/epoch", {"epoch": 9})[0] == (200, {"epoch": 9, "changed": False})
    (status, body), _, _ = signed(d.url + "/epoch", {"epoch": 8})
    assert status == 409 and "below this primary's epoch 9" in body["error"]
    for bad in ({"epoch": 0}, {"epoch": "10"}, {"epoch": True}, {}):
        assert signed(d.url + "/epoch", bad)[0][0] == 400
    assert call(d.url + "/status")[1]["epoch"] == 9 and statefile.load(state, {})["epoch"] == 9


def _printed(text):
    """ctl's printed document (indented JSON) out of stdout, which also holds the agents' log lines."""
    lines = text.splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")
    return json.loads("\n".join(lines[start:]))


def test_ctl_set_epoch_asks_the_replicator_and_fails_clearly_when_it_is_down(env, capsys):
    from wirebot.hosttools import ctl

    d = env["start"]()
    path = str(env["tmp"] / "replicator.yml")
    assert ctl.main(["--config", path, "set-epoch", "--epoch", "8"]) == 0
    assert _printed(capsys.readouterr().out)["answer"] == {"epoch": 8, "changed": True}
    assert ctl.main(["--config", path, "set-epoch", "--epoch", "7"]) == 1
    assert _printed(capsys.readouterr().out)["http_status"] == 409
    d.stop()
    started = time.monotonic()
    assert ctl.main(["--config", path, "set-epoch", "--epoch", "9", "--wait", "0.5"]) == 1
    out = _printed(capsys.readouterr().out)
    assert time.monotonic() - started < 5
    assert "does not answer on its control socket" in out["error"] and "is it running?" in out["error"]
    assert statefile.load(str(env["tmp"] / "state.json"), {})["epoch"] == 8

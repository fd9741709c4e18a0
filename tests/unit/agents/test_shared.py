"""wirebot.log, statefile, metrics, alerts."""

import json
import os
import stat
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from wirebot import alerts, metrics, statefile
from wirebot.log import log


def test_log_one_json_line(capsys):
    log("standby", "state-change", reason="because", to="SUSPECT")
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    record = json.loads(out)
    assert record["component"] == "standby" and record["event"] == "state-change"
    assert record["level"] == "info" and record["reason"] == "because" and "ts" in record


def test_log_unserialisable_values(capsys):
    log("x", "y", obj=object(), level="error")
    record = json.loads(capsys.readouterr().out)
    assert record["level"] == "error" and "object" in record["obj"]


def test_statefile_roundtrip_atomic_0600(tmp_path):
    path = str(tmp_path / "sub" / "state.json")
    default = {"state": "STANDBY", "epoch": 1}
    assert statefile.load(path, default) == default
    statefile.save(path, {"state": "ACTIVE", "epoch": 3})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert statefile.load(path, default) == {"state": "ACTIVE", "epoch": 3}
    assert [p for p in os.listdir(os.path.dirname(path)) if p.endswith(".tmp")] == []


def test_statefile_fills_defaults_and_survives_corruption(tmp_path, capsys):
    path = tmp_path / "state.json"
    path.write_text('{"epoch": 4}')
    assert statefile.load(str(path), {"state": "STANDBY", "epoch": 1}) == {"state": "STANDBY", "epoch": 4}
    path.write_text("{torn")
    assert statefile.load(str(path), {"epoch": 1}) == {"epoch": 1}
    assert "state-unreadable" in capsys.readouterr().out


def test_statefile_default_not_aliased(tmp_path):
    default = {"activation": {}}
    loaded = statefile.load(str(tmp_path / "none.json"), default)
    loaded["activation"]["x"] = 1
    assert default == {"activation": {}}


def test_metrics_render():
    text = metrics.render("wirebot_standby", {"epoch": 3, "seconds_since_heartbeat": 1.5, "none": None,
                                              "heartbeats_accepted_total": 7},
                          {"state": [({"state": "ACTIVE"}, 1), ({"state": "STANDBY"}, 0)],
                           "heartbeats_rejected_total": [({"reason": 'bad"sig'}, 2)]})
    lines = text.splitlines()
    assert "wirebot_standby_epoch 3" in lines
    assert "wirebot_standby_seconds_since_heartbeat 1.5" in lines
    assert "# TYPE wirebot_standby_heartbeats_accepted_total counter" in lines
    assert "# TYPE wirebot_standby_epoch gauge" in lines
    assert 'wirebot_standby_state{state="ACTIVE"} 1' in lines
    assert 'wirebot_standby_heartbeats_rejected_total{reason="bad\\"sig"} 2' in lines
    assert not any("none" in line for line in lines)
    assert text.endswith("\n")


def test_alert_journal_only(capsys):
    assert alerts.Alerter("standby", None).send("fence-blocked", "no fence", epoch=2) is None
    record = json.loads(capsys.readouterr().out)
    assert record["event"] == "alert" and record["kind"] == "fence-blocked" and record["epoch"] == 2


def test_alert_webhook_posts_discord_content(capsys):
    received = []
    done = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()
            done.set()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/api/webhooks/SECRET"
    try:
        thread = alerts.Alerter("standby", url, timeout=5).send("activated", "now active", epoch=3)
        thread.join(10)
        assert done.wait(10)
    finally:
        server.shutdown()
        server.server_close()
    assert "now active" in received[0]["content"] and "epoch=3" in received[0]["content"]
    assert "SECRET" not in capsys.readouterr().out


def test_alert_webhook_failure_never_raises(capsys):
    thread = alerts.Alerter("standby", "http://127.0.0.1:1/x", timeout=1).send("k", "m")
    thread.join(10)
    out = capsys.readouterr().out
    assert "alert-webhook-failed" in out and "127.0.0.1:1" not in out

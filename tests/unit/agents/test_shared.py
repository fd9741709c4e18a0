"""wirebot.common.log, statefile, metrics, alerts."""

import json
import os
import stat
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from wirebot.common import alerts, metrics, statefile
from wirebot.common.log import log


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
                           "heartbeats_rejected_total": [({"reason": 'bad"sig'}, 2)]},
                          {"epoch": "the epoch", "seconds_since_heartbeat": "age\nof it", "none": "n",
                           "heartbeats_accepted_total": "accepted", "state": "state",
                           "heartbeats_rejected_total": "refused, by reason"})
    lines = text.splitlines()
    assert "# HELP wirebot_standby_epoch the epoch" in lines
    assert "# HELP wirebot_standby_seconds_since_heartbeat age of it" in lines
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


def test_metrics_without_help_is_refused():
    with pytest.raises(KeyError):
        metrics.render("wirebot_x", {"undocumented": 1}, {}, {})


@pytest.mark.parametrize("level,priority", [("info", 6), ("warning", 4), ("error", 3), ("debug", 7),
                                            ("critical", 2), ("odd", 6)])
def test_log_priority_prefix_only_on_the_journal_stream(tmp_path, monkeypatch, level, priority):
    """On the stream named by $JOURNAL_STREAM each line starts with <N>; anywhere else plain JSON."""
    out = open(tmp_path / "stream", "w+")
    status = os.fstat(out.fileno())
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setenv("JOURNAL_STREAM", f"{status.st_dev}:{status.st_ino}")
    log("standby", "e", level=level)
    monkeypatch.setenv("JOURNAL_STREAM", f"{status.st_dev}:{status.st_ino + 1}")  # another stream
    log("standby", "f", level=level)
    monkeypatch.delenv("JOURNAL_STREAM")
    log("standby", "g", level=level)
    out.seek(0)
    first, second, third = out.read().splitlines()
    out.close()
    assert first.startswith(f"<{priority}>{{") and json.loads(first[3:])["level"] == level
    assert json.loads(second)["event"] == "f" and json.loads(third)["event"] == "g"


class _Discord(BaseHTTPRequestHandler):
    """A webhook stand-in: answers from the class's `answers` list (status, body, headers) in turn."""

    answers, received = [], []

    def do_POST(self):
        type(self).received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        status, body, headers = type(self).answers.pop(0) if type(self).answers else (204, b"", {})
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def discord():
    _Discord.answers, _Discord.received = [], []
    server = HTTPServer(("127.0.0.1", 0), _Discord)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/webhooks/SECRET", _Discord
    server.shutdown()
    server.server_close()


def test_alert_mentions_nobody(discord, capsys):
    url, stand_in = discord
    alerts.Alerter("standby", url).send("k", "@everyone look at <@123>").join(10)
    assert stand_in.received[0]["allowed_mentions"] == {"parse": []}
    assert "@everyone" in stand_in.received[0]["content"]


def test_alert_429_waits_retry_after_then_sends(discord, capsys):
    url, stand_in = discord
    stand_in.answers = [(429, b'{"message": "rate limited", "retry_after": 0.25, "global": false}', {}),
                        (429, b"", {"Retry-After": "1.5"}), (204, b"", {})]
    slept = []
    alerts.Alerter("standby", url, sleep=slept.append).send("k", "m").join(10)
    assert slept == [0.25, 1.5] and len(stand_in.received) == 3
    assert '"alert-webhook-sent"' in capsys.readouterr().out


def test_alert_429_retries_are_bounded(discord, capsys):
    url, stand_in = discord
    stand_in.answers = [(429, b'{"retry_after": 0.1}', {})] * (alerts.RETRIES_429 + 3)
    slept = []
    alerts.Alerter("standby", url, sleep=slept.append).send("k", "m").join(10)
    assert len(slept) == alerts.RETRIES_429 and len(stand_in.received) == alerts.RETRIES_429 + 1
    out = capsys.readouterr().out
    assert '"alert-webhook-failed"' in out and "SECRET" not in out


def test_alert_429_too_long_is_given_up_not_waited(discord, capsys):
    url, stand_in = discord
    stand_in.answers = [(429, b'{"retry_after": 3600}', {})]
    slept = []
    alerts.Alerter("standby", url, sleep=slept.append).send("k", "m").join(10)
    assert slept == [] and len(stand_in.received) == 1


def test_alert_send_returns_before_the_webhook_answers(discord, capsys):
    """The agent's tick never waits on Discord: send() returns while the thread sleeps out a 429."""
    url, stand_in = discord
    stand_in.answers = [(429, b'{"retry_after": 1}', {})]
    release = threading.Event()
    thread = alerts.Alerter("standby", url, sleep=lambda s: release.wait(10)).send("k", "m")
    assert thread.is_alive()
    release.set()
    thread.join(10)
    assert len(stand_in.received) == 2

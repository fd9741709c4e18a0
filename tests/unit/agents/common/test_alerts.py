"""wirebot.common.alerts: journal lines and the Discord webhook (mentions, 429, never blocking)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from wirebot.common import alerts


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

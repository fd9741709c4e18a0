"""The drill's verdict (a set comparison), its JSON line, human summary and Discord message (sent to a
loopback receiver)."""

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.drills import report

IDS = [str(uuid.UUID(int=i, version=4)) for i in range(1, 11)]


def test_verdict_exactly_once():
    v = report.verdict(IDS, list(reversed(IDS)))
    assert v == {"created": 10, "found": 10, "lost": 0, "doubled": 0, "unexpected": 0, "lost_ids": [],
                 "exactly_once": True}


def test_verdict_counts_lost_doubled_and_unexpected():
    stranger = str(uuid.uuid4())
    found = IDS[2:] + [IDS[3], IDS[3].upper(), IDS[4], stranger]
    v = report.verdict(IDS, found)
    assert (v["lost"], v["doubled"], v["unexpected"], v["found"]) == (2, 3, 1, 8)
    assert v["lost_ids"] == sorted(IDS[:2]) and not v["exactly_once"]


@given(st.lists(st.integers(0, 30), max_size=60), st.sets(st.integers(0, 30)))
def test_verdict_matches_counting(found_ints, created_ints):
    created = [str(uuid.UUID(int=i + 1)) for i in created_ints]
    found = [str(uuid.UUID(int=i + 1)) for i in found_ints]
    v = report.verdict(created, found)
    assert v["lost"] == len(created_ints - set(found_ints))
    assert v["doubled"] == sum(found_ints.count(i) - 1 for i in set(found_ints) & created_ints)
    assert v["unexpected"] == sum(1 for i in found_ints if i not in created_ints)
    assert v["found"] + v["lost"] == v["created"] == len(created_ints)


def sample(status=report.OK):
    steps = report.new_steps()
    for step in steps:
        step.update(status=report.OK, seconds=1.25 * step["n"], detail="fine")
    steps[4].update(status=status, detail="gateway answered HTTP 502")
    r = {"drill": "fire-drill", "drill_id": "d-1", "started_at": "2026-12-06T11:00:00Z",
         "finished_at": "2026-12-06T11:03:00Z", "hosts": {"primary": "10.0.0.2", "standby": "10.0.0.3"},
         "seconds": {"detection": 0.4, "activation": 6.1, "outage": 7.0, "end_to_end": 31.2},
         "events": {"created": 60, "before": 10, "during": 30, "after": 20, "waited": 25, "found": 60,
                    "lost": 0, "doubled": 0, "unexpected": 0, "lost_ids": []},
         "surface": {"transitions": []}, "steps": steps,
         "epoch": {"before": {"primary": 1, "standby": 1}, "after": {"primary": 3, "standby": 2}}}
    return report.settle(r)


def test_result_and_json_line_shape():
    good, bad = sample(), sample(report.FAILED)
    assert good["result"] == "passed" and good["failed_steps"] == []
    assert (good["ok"], good["lost"], good["doubled"]) == (True, 0, 0) and bad["ok"] is False
    assert bad["result"] == "failed" and bad["failed_steps"] == [5]
    line = report.json_line(good)
    assert "\n" not in line and json.loads(line) == good
    parsed = json.loads(line)
    for key in ("drill_id", "started_at", "finished_at", "result", "ok", "lost", "doubled", "seconds", "events",
                "steps", "hosts"):
        assert key in parsed
    assert set(parsed["seconds"]) == {"detection", "activation", "outage", "end_to_end"}
    assert [s["n"] for s in parsed["steps"]] == list(range(1, 12))
    assert all({"n", "name", "status", "seconds", "detail"} <= set(s) for s in parsed["steps"])


def test_lost_events_fail_the_drill_even_with_every_step_ok():
    r = sample()
    r["events"]["lost"] = 1
    assert report.result(r) == "failed"


def test_human_summary_and_discord_message():
    text = report.human_summary(sample(report.FAILED))
    print(text)
    assert text.startswith("Fire drill FAILED") and "lost 0, doubled 0" in text
    assert "gateway answered HTTP 502" in text and len(text.splitlines()) >= 14
    message = report.discord_message(sample())
    assert set(message) == {"content", "allowed_mentions"} and message["content"].startswith("**Fire drill PASSED")
    assert message["allowed_mentions"] == {"parse": []}  # an @everyone in a step detail pings nobody
    assert len(message["content"]) <= report.DISCORD_LIMIT
    long = sample(report.FAILED)
    long["steps"][4]["detail"] = "x" * 5000
    assert len(report.discord_message(long)["content"]) <= report.DISCORD_LIMIT


@pytest.fixture
def receiver():
    """A loopback Discord stand-in: records JSON bodies, answers 204 (or `status`)."""
    got = []

    class Handler(BaseHTTPRequestHandler):
        status = 204

        def log_message(self, *args):
            pass

        def do_POST(self):
            got.append((self.path, self.headers["Content-Type"],
                        json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            self.send_response(Handler.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.got, server.handler = got, Handler
    server.url = f"http://127.0.0.1:{server.server_address[1]}/api/webhooks/1/token"
    yield server
    server.shutdown()
    server.server_close()


def test_send_webhook_to_a_loopback_receiver(receiver):
    message = report.discord_message(sample())
    assert report.send_webhook(receiver.url, message) == (True, "HTTP 204")
    assert receiver.got == [("/api/webhooks/1/token", "application/json", message)]
    receiver.handler.status = 404
    ok, detail = report.send_webhook(receiver.url, message)
    assert not ok and "404" in detail
    ok, detail = report.send_webhook("http://127.0.0.1:9/nothing", message, timeout=2)
    assert not ok and detail.startswith("no answer")

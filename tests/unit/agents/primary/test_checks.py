"""wirebot.primary.checks: slow checks run off the beat path; a result older than its bound is sent as stale."""

import threading
import time

from wirebot.common import httpapi, signing
from wirebot.primary import checks, heartbeat, lease

KEY = bytes(range(32))
HB = signing.Binding("heartbeat", "primary", "standby")


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_result_is_current_until_its_bound_then_stale():
    clock, calls = Clock(), []

    def serving():
        calls.append(clock.now)
        if len(calls) > 1:
            raise OSError("systemctl gone")  # a failed check keeps no new result
        return True

    c = checks.Checks({"serving": serving}, max_age=2.0, clock=clock)
    assert c.read("serving") == (checks.STALE, None)  # never checked: nothing is claimed
    c.refresh()
    clock.now = 101.5
    assert c.read("serving") == (True, 1.5)
    c.refresh()  # raises: the old result stays and ages
    clock.now = 102.0
    assert c.read("serving") == (True, 2.0)
    clock.now = 102.01
    assert c.read("serving") == (checks.STALE, 2.01)


def test_a_slow_check_is_aged_from_its_start():
    """The state a check reports may be as old as its start: a 3 s systemctl is 3 s old when it returns."""
    clock = Clock()

    def slow():
        clock.now += 3.0
        return {"litestream": "active"}

    c = checks.Checks({"services": slow}, max_age=2.0, clock=clock)
    c.refresh()
    assert c.read("services") == (checks.STALE, 3.0)


def test_a_check_that_blocks_for_seconds_delays_no_lease_beat(tmp_path):
    """Soak, lab 5: a starved primary's `systemctl` took 7 s on the heartbeat thread and its lease lapsed. Here
    the serving and services checks block 2 s: the beats (lease beats and full heartbeats) keep their
    period, claim what the last check saw while it is within the bound, and "unknown" once it is older."""
    release, sent = threading.Event(), []
    blocking = {"on": False}

    def serving():
        if blocking["on"]:
            release.wait(2.0)
        return True

    def services():
        if blocking["on"]:
            release.wait(2.0)
        return {"litestream": "active"}

    c = checks.Checks({"serving": serving, "services": services}, max_age=0.5)
    settings = {"enabled": True, "seconds": 0.5, "units": ["cloudflared-wirebot"], "fenced_file":
                str(tmp_path / "fenced.json"), "nft": "nft", "systemctl": "/nonexistent"}
    keeper = lease.Keeper(settings, lambda: 1, nft=lambda _b, _s: (True, ""))
    keeper.checks = c

    def post(target, path, key, binding, payload, sequence, timeout):
        sent.append((time.monotonic(), payload))
        return 200, {"ok": True, "state": "STANDBY", "epoch": 1, "lease": {"granted": True}}

    def collect():
        return c.read_each("services", ["litestream"]), {}, {}

    sender = heartbeat.Sender("primary", httpapi.Target.peer("https://standby:8300"), KEY, HB,
                              heartbeat.StateStore(str(tmp_path / "s.json")), collect, post=post)
    sender.lease = keeper
    c.refresh()
    stop = threading.Event()
    threads = [threading.Thread(target=c.run, args=(stop, 0.05), daemon=True),
               threading.Thread(target=sender.run, args=(stop, 0.2, 0.05), daemon=True)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    blocking["on"] = True
    blocked_at = time.monotonic()
    time.sleep(1.6)  # the checks thread is stuck in its 2 s check
    blocking["on"] = False
    release.set()
    time.sleep(0.4)
    stop.set()
    for t in threads:
        t.join(5)
    during = [(at, body) for at, body in sent if blocked_at + 0.7 < at < blocked_at + 1.5]
    gaps = [b[0] - a[0] for a, b in zip(sent, sent[1:]) if blocked_at < a[0] < blocked_at + 1.6]
    assert gaps and max(gaps) < 1.0  # no beat waited for the 2 s check (period 0.05 s; slack for a loaded CI)
    assert during and all(body["serving"] == checks.STALE and body["serving_age"] > 0.5 for _at, body in during)
    full = [body for _at, body in during if body.get("kind") != "lease"]
    assert full and all(body["services"] == {"litestream": checks.STALE} for body in full)
    before = [body for at, body in sent if at < blocked_at]
    after = [body for at, body in sent if at > blocked_at + 1.8]  # released at 1.6 s
    assert before and all(body["serving"] is True and body["serving_age"] <= 0.5 for body in before)
    assert after and after[-1]["serving"] is True  # the check ran again: current again
    assert [b for b in after if b.get("kind") != "lease"][-1]["services"] == {"litestream": "active"}

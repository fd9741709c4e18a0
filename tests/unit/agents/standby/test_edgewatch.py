"""wirebot.standby.edgewatch: the edge detector's verdicts (probe results in, decisions out), its API backoff and the
agent thread's wiring."""

from wirebot.standby import edgewatch as e


def public(status, error=None):
    return {"status": status, "serving": status is not None and 200 <= status < 300,
            "error": error if status is None else None}


def api(others=(), ok=True, configured=True, status=None, retry_after=None):
    return {"configured": configured, "ok": ok and configured, "origins": list(others), "other_origins": list(others),
            "error": None if ok else f"HTTP {status}", "status": status, "retry_after": retry_after}


class Api:
    """Counts the calls; answers from a list (the last one repeats)."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.answers[min(self.calls, len(self.answers)) - 1]


def test_classification_unknown_is_never_down():
    assert e.classify_public(public(200)) == e.UP and e.classify_public(public(404)) == e.UP
    assert e.classify_public(public(530)) == e.DOWN and e.classify_public(public(502)) == e.DOWN
    assert e.classify_public(public(None, "timed out")) == e.UNKNOWN  # our own network, maybe
    assert e.classify_public(public(429)) == e.UNKNOWN  # rate limited: says nothing about the primary
    assert e.classify_api(api()) == e.GONE and e.classify_api(api(["10.0.0.2"])) == e.PRESENT
    assert e.classify_api(api(ok=False, status=500)) == e.UNKNOWN
    assert e.classify_api(api(configured=False)) == e.UNCONFIGURED


def serving(interval=1.0, failures=3):
    """A detector that has seen the primary serve (the edge can only lose what it had)."""
    d = e.Detector(interval=interval, failures=failures)
    d.step(-1.0, public(200), Api(api()))
    return d


def test_a_primary_never_seen_serving_is_never_down():
    """A fresh install, or a recovery still starting the primary's connector: nothing to lose yet."""
    d = e.Detector(interval=1.0, failures=2)
    assert not any(d.step(float(t), public(530), Api(api()))["down"] for t in range(5))
    d = e.Detector(interval=1.0, failures=2)
    d.step(0.0, public(502), Api(api(["10.0.0.2"])))  # listed: it was there
    assert not d.step(1.0, public(530), Api(api()))["down"]  # gone on one probe: not yet
    assert d.step(2.0, public(530), Api(api()))["down"]


def test_down_needs_consecutive_failures_and_the_connector_gone():
    d = serving()
    a = Api(api())
    verdicts = [d.step(float(t), public(530), a) for t in range(3)]
    assert [v["down"] for v in verdicts] == [False, False, True]
    assert verdicts[-1]["failures"] == 3 and verdicts[-1]["api"] == e.GONE


def test_a_listed_connector_keeps_it_up_however_long_the_public_fails():
    d = e.Detector(interval=1.0, failures=2)
    a = Api(api(["10.0.0.2"]))  # the edge still lists the crashed or frozen connector
    assert not any(d.step(float(t), public(502), a)["down"] for t in range(5))
    a.answers = [api()]  # expired: it must stay gone for k probes (the window), the failures before do not count
    assert not d.step(5.0, public(530), a)["down"]
    v = d.step(6.0, public(530), a)
    assert v["down"] and v["down_since"] == 6.0 and v["interval"] == 1.0
    assert d.step(7.0, public(530), a)["down_since"] == 6.0  # held since the verdict started


def test_a_connector_that_drops_out_and_re_registers_is_never_down():
    """Loss on the primary's path to the edge: keepalives lost, the edge expires the connector, it registers
    again a probe later. Gone on some probes but never on k in a row: not down (the soak's false activation)."""
    d = serving(failures=3)
    answers = [api(), api(), api(["10.0.0.2"]), api(), api(), api(["10.0.0.2"]), api()]
    verdicts = [d.step(float(t), public(530), Api(answer)) for t, answer in enumerate(answers)]
    assert not any(v["down"] for v in verdicts) and all(v["down_since"] is None for v in verdicts)
    assert d.streak == 7  # the public endpoint failed all along; the connector came back in between


def test_unknown_and_success_break_the_streak():
    d = serving(failures=2)
    a = Api(api())
    assert not d.step(0.0, public(530), a)["down"]
    assert not d.step(1.0, public(None, "connection refused"), a)["down"]  # standby's own network
    assert not d.step(2.0, public(530), a)["down"]  # streak starts again
    assert d.step(3.0, public(530), a)["down"]
    assert not d.step(4.0, public(200), a)["down"]  # the primary (or anyone) serves again
    assert d.streak == 0


def test_the_api_is_asked_only_while_the_public_endpoint_fails():
    d = e.Detector(interval=1.0, failures=2)
    a = Api(api())
    for t in range(10):
        d.step(float(t), public(200), a)
    assert a.calls == 0
    d.step(10.0, public(530), a)
    assert a.calls == 1


def test_api_refusals_back_off_doubling_and_honour_retry_after():
    d = e.Detector(interval=1.0, failures=2, max_backoff=8.0)
    a = Api(api(ok=False, status=429, retry_after=5))
    calls = []
    for t in range(20):
        v = d.step(float(t), public(530), a)
        calls.append(a.calls)
        assert not v["down"] and v["api"] in (e.UNKNOWN,)  # refused or backing off: never "gone"
    asked_at = [t for t in range(20) if calls[t] != (calls[t - 1] if t else 0)]
    assert asked_at[:4] == [0, 5, 10, 15]  # Retry-After 5 s beats the 1, 2, 4 s backoff
    a.answers = [api(ok=False, status=503)]
    d2 = e.Detector(interval=1.0, failures=2, max_backoff=8.0)
    d2.seen_up = True
    a2 = Api(api(ok=False, status=503))
    asked = []
    for t in range(40):
        before = a2.calls
        d2.step(float(t), public(530), a2)
        if a2.calls != before:
            asked.append(t)
    assert asked[:6] == [0, 1, 3, 7, 15, 23]  # 1, 2, 4, 8, then the 8 s cap
    a2.answers = [api()]
    d2.step(float(asked[-1] + 8), public(530), a2)  # success: the backoff resets
    assert d2.api_backoff == 0.0 and d2.step(float(asked[-1] + 9), public(530), a2)["down"]


def test_a_rate_limited_public_endpoint_is_not_probed_until_its_interval_passed():
    d = e.Detector(interval=2.0, failures=2)
    d.step(0.0, public(429), Api(api()))
    assert not d.wants_public(1.0) and d.wants_public(2.0)


def test_the_watch_records_verdicts_and_logs_only_changes(capsys):
    settings = {"edge": {"probe_interval_seconds": 0.5, "probe_failures": 2},
                "witness": {"timeout_seconds": 5.0, "public_url": "http://x/health"}}
    recorded = []
    answers = iter([public(200), public(530), public(530), public(200)])
    watch = e.Watch(settings, lambda: "t", lambda: True, recorded.append, clock=iter(range(100)).__next__,
                    public_fn=lambda: next(answers), api_fn=Api(api()))
    for _ in range(4):
        watch.probe_once()
    assert [v["down"] for v in recorded] == [False, False, True, False]
    assert watch.timeout == 0.5  # a probe does not outlast its interval
    assert capsys.readouterr().out.count('"edge-verdict"') == 2

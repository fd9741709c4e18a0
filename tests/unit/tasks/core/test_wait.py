"""tasks/core/wait.py: the one polling helper (a fake clock: no test here sleeps)."""

import pytest

from tasks.core.wait import WaitTimeout, wait_for


class Clock:
    def __init__(self):
        self.now, self.sleeps = 100.0, []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


def test_returns_the_first_truthy_value_and_polls_at_the_interval():
    clock, values = Clock(), iter([None, 0, {}, {"state": "ACTIVE"}])
    assert wait_for(lambda: next(values), timeout=10, interval=0.5, clock=clock, sleep=clock.sleep) == \
        {"state": "ACTIVE"}
    assert clock.sleeps == [0.5, 0.5, 0.5]


def test_timeout_names_what_was_awaited_and_the_last_value():
    clock, calls = Clock(), []

    def state():
        calls.append(clock.now)
        return ""

    with pytest.raises(WaitTimeout, match=r"timed out after 2 s waiting for the standby ACTIVE "
                                          r"\(last value: ''\)") as caught:
        wait_for(state, timeout=2, interval=0.5, what="the standby ACTIVE", clock=clock, sleep=clock.sleep)
    assert caught.value.last == "" and caught.value.error is None
    assert isinstance(caught.value, TimeoutError)
    assert calls == [100.0, 100.5, 101.0, 101.5, 102.0]  # every interval, the last one at the deadline


def test_one_last_check_at_the_deadline_and_no_sleep_past_it():
    clock = Clock()
    ready_at = 103.0
    assert wait_for(lambda: clock.now >= ready_at, timeout=3, interval=2, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [2, 1]  # the second sleep is cut to end at the deadline, then the last check holds


def test_zero_timeout_is_a_single_check():
    clock, calls = Clock(), []
    with pytest.raises(WaitTimeout):
        wait_for(lambda: calls.append(1), timeout=0, clock=clock, sleep=clock.sleep)
    assert calls == [1] and clock.sleeps == []


def test_ignored_exceptions_count_as_not_yet_and_are_named():
    clock = Clock()
    with pytest.raises(WaitTimeout, match="last error: ConnectionRefusedError: refused") as caught:
        wait_for(lambda: (_ for _ in ()).throw(ConnectionRefusedError("refused")), timeout=1, interval=0.25,
                 what="port 22", ignore=(OSError,), clock=clock, sleep=clock.sleep)
    assert isinstance(caught.value.error, ConnectionRefusedError)
    answers = iter([OSError("not yet"), OSError("not yet"), "open"])

    def connect():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert wait_for(connect, timeout=5, ignore=(OSError,), clock=clock, sleep=clock.sleep) == "open"


def test_other_exceptions_propagate_at_once():
    clock, calls = Clock(), []

    def died():
        calls.append(1)
        raise RuntimeError("host stopped while booting")

    with pytest.raises(RuntimeError, match="host stopped"):
        wait_for(died, timeout=60, ignore=(OSError,), clock=clock, sleep=clock.sleep)
    assert calls == [1]


@pytest.mark.parametrize("timeout, interval", [(-1, 0.5), (5, 0), (5, -0.1)])
def test_bad_arguments_are_refused_before_any_call(timeout, interval):
    with pytest.raises(ValueError, match="wait_for\\('x'\\)"):
        wait_for(lambda: pytest.fail("called"), timeout=timeout, interval=interval, what="x")

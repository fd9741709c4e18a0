"""The one polling helper: call a predicate until it holds or a deadline passes.

Everything on the control side that waits for a condition (the lab's boot and reset, lab tests, benches,
the drill's surface) uses `wait_for`, so a timeout always says what was awaited, for how long, and the
last thing the predicate saw. Standard library only (it also runs under pyinfra's gevent: `sleep` is
time.sleep, which gevent patches).
"""

import time


class WaitTimeout(TimeoutError):
    """`wait_for` gave up: the message names what it waited for, the timeout and the last value or error.
    `last` holds the predicate's last value (falsy), `error` the last ignored exception (or None)."""

    def __init__(self, message: str, last=None, error: BaseException = None):
        super().__init__(message)
        self.last, self.error = last, error


def wait_for(predicate, timeout: float, interval: float = 0.25, what: str = "a condition", *,
             ignore: tuple = (), clock=None, sleep=None):
    """Call `predicate()` until it returns a truthy value and return that value.

    timeout:  seconds from the first call; after it, one last call is made, then WaitTimeout is raised
              (a timeout of 0 is a single check).
    interval: seconds between calls (the last sleep is shortened to end at the deadline).
    what:     what is awaited, in words ("the standby ACTIVE"), for the error message.
    ignore:   exception types a call may raise that count as "not yet" (e.g. OSError while a port opens);
              the last one is named in the error. Any other exception propagates at once: that is how a
              predicate says the condition can no longer come true (a process died, a host stopped).
    clock, sleep: injectable for tests; by default time.monotonic and time.sleep as they are at the call
              (so gevent's or a test's patch of the time module applies).
    """
    clock, sleep = clock or time.monotonic, sleep or time.sleep
    if timeout < 0 or interval <= 0:
        raise ValueError(f"wait_for({what!r}): timeout must be >= 0 and interval > 0, not {timeout}, {interval}")
    deadline = clock() + timeout
    while True:
        last_call = clock() >= deadline
        error = None
        try:
            value = predicate()
        except ignore as exc:
            value, error = None, exc
        if value:
            return value
        if last_call:
            seen = f"last error: {type(error).__name__}: {error}" if error else f"last value: {value!r}"
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what} ({seen})", value, error)
        sleep(max(0.0, min(interval, deadline - clock())))

"""The edge detector: the standby's own view of whether the primary still serves (docs/fencing.md,
"Edge detection").

Every ``edge.probe_interval_seconds`` the standby (while it watches: STANDBY, SUSPECT, FENCE_BLOCKED) GETs
the public URL (wirebot.standby.witness.check_public) and, only while that probe fails, Cloudflare's
tunnel-connections list (wirebot.standby.witness.check_api), so the API sees at most one call per probe interval
and none while the public endpoint answers. A verdict is "down" only for a primary the detector has seen
serving since it started watching (public up or its connector listed: the edge can only lose what it had; a
fresh install, or a recovery still starting the primary, is not "down"), and when

* the public endpoint failed on ``edge.probe_failures`` consecutive probes (an HTTP 5xx from the edge:
  Cloudflare's 530 "no connector", 502 "origin unreachable", or the origin's own 5xx), and
* the API, asked at **each** of them, listed no connection from another origin (the primary's connector
  stayed gone from the edge for the whole window: a connector that drops out and re-registers - lost
  keepalives on a lossy path - breaks the streak).

Each verdict also says since when the "down" verdict has held (``down_since``) and the probe interval (its
freshness). While a fresh verdict says "down" the standby no longer believes the primary's own "my connector
is ready" (``serving: true``: a connector cut from the edge notices late) nor grants it a lease
(wirebot.standby.machine.note_serving, grant_lease).

A probe that gets no HTTP answer at all (refused, timed out, DNS) or a 429 is "unknown": it may be the
standby's own network or a rate limit, so it is never counted as "down" and it breaks the streak. An API
call refused with 429 or 5xx (or that fails) backs off: doubling from the probe interval up to
``MAX_BACKOFF`` seconds, never sooner than the answer's Retry-After; while backing off the API is "unknown".
Without an API configured (no token, account or tunnel id) the edge detector never says "down": the
heartbeat threshold is then the only detector. A "down" verdict starts a suspicion only when no beat has
shown the primary alive for its ``window`` (k x P seconds; wirebot.standby.machine.edge_down): a primary
whose beats say its connector is ready, or not meant to run (a recovery starting it), is never suspected
from the edge.

``Detector`` is pure (results in, verdict out); ``Watch`` runs it in the standby agent's thread.
"""

import threading
import time

from wirebot.common.log import log
from wirebot.standby import witness

UP, DOWN, UNKNOWN = "up", "down", "unknown"
GONE, PRESENT, UNCONFIGURED, NOT_ASKED = "gone", "present", "unconfigured", "not asked"
MAX_BACKOFF = 300.0  # seconds: the longest pause of API calls after refusals


def classify_public(result):
    """up (an origin answered: 1xx-4xx but 429), down (5xx), unknown (no HTTP answer, or 429)."""
    status = result.get("status")
    if status is None or status == 429:
        return UNKNOWN
    return DOWN if status >= 500 else UP


def classify_api(result):
    """gone (no other origin's connection), present (the primary's connector is listed), unconfigured,
    or unknown (the call failed)."""
    if not result.get("configured"):
        return UNCONFIGURED
    if not result.get("ok"):
        return UNKNOWN
    return PRESENT if result.get("other_origins") else GONE


class Detector:
    """Consecutive public failures, the API asked only while they last, with backoff. Pure: no I/O."""

    def __init__(self, interval, failures, max_backoff=MAX_BACKOFF):
        self.interval = float(interval)
        self.failures = int(failures)
        self.max_backoff = float(max_backoff)
        self.streak = 0  # consecutive "down" public probes
        self.gone_streak = 0  # consecutive probes with the public endpoint down AND the API saying gone
        self.down_since = None  # when the current "down" verdict started
        self.seen_up = False  # the primary was seen serving (public up, or its connector listed) since watching
        self.public_next_at = 0.0
        self.api_next_at = 0.0
        self.api_backoff = 0.0

    def wants_public(self, now):
        return now >= self.public_next_at

    def step(self, now, public, api_fn):
        """One probe round: ``public`` is a check_public result (None: not probed, backing off);
        ``api_fn()`` returns a check_api result and is called only when needed. Returns the verdict record
        {"at", "down", "public", "public_status", "api", "failures", "summary"}."""
        if public is None:
            verdict, status = UNKNOWN, None
        else:
            verdict, status = classify_public(public), public.get("status")
            if status == 429:
                self.public_next_at = now + max(self.interval, witness.retry_after(public.get("retry_after")) or 0)
        self.streak = self.streak + 1 if verdict == DOWN else 0
        self.seen_up = self.seen_up or verdict == UP
        api = NOT_ASKED
        if self.streak and now >= self.api_next_at:
            result = api_fn()
            api = classify_api(result)
            if api == UNKNOWN:
                self.api_backoff = min(self.max_backoff, max(self.interval, 2 * self.api_backoff))
                self.api_next_at = now + max(self.api_backoff, result.get("retry_after") or 0)
            else:
                self.api_backoff, self.api_next_at = 0.0, 0.0
        elif self.streak:
            api = UNKNOWN  # backing off after a refusal: no news is not "gone"
        self.seen_up = self.seen_up or api == PRESENT
        self.gone_streak = self.gone_streak + 1 if (verdict == DOWN and api == GONE) else 0
        # the edge can only lose a primary it had: a fresh install or a recovery still starting the primary's
        # connector is not "down" (the heartbeat detector covers a primary that never comes up)
        down = self.gone_streak >= self.failures and self.seen_up
        if not down:
            self.down_since = None
        elif self.down_since is None:
            self.down_since = now
        summary = "public {} ({}), {} failure(s) in a row; API: {}".format(
            verdict, status if status is not None else (public or {}).get("error") or "not probed",
            self.streak, api)
        return {"at": now, "down": down, "public": verdict, "public_status": status, "api": api,
                "failures": self.streak, "window": self.failures * self.interval, "seen_up": self.seen_up,
                "interval": self.interval, "down_since": self.down_since, "summary": summary}


class Watch:
    """The agent's edge-detector thread: probe every interval while ``watching()``; hand each verdict to
    ``record(verdict)``; log when the verdict's down flag changes."""

    def __init__(self, settings, token_fn, watching, record, clock=time.time, public_fn=None, api_fn=None):
        edge = settings["edge"]
        self.w = settings["witness"]
        self.interval = edge["probe_interval_seconds"]
        self.detector = Detector(self.interval, edge["probe_failures"])
        # a probe must not outlast its interval much: a hung one is "unknown" anyway
        self.timeout = max(0.5, min(self.w["timeout_seconds"], self.interval))
        self.token_fn = token_fn
        self.watching = watching
        self.record = record
        self.clock = clock
        self.public_fn = public_fn or (lambda: witness.check_public(
            self.w["public_url"], self.w.get("public_host_header"), self.timeout))
        self.api_fn = api_fn or (lambda: witness.check_api(self.w, self.token_fn(), self.timeout))
        self.last_down = False

    def probe_once(self):
        now = self.clock()
        public = self.public_fn() if self.detector.wants_public(now) else None
        verdict = self.detector.step(self.clock(), public, self.api_fn)
        if verdict["down"] != self.last_down:
            self.last_down = verdict["down"]
            log("standby", "edge-verdict", level="warning" if verdict["down"] else "info",
                down=verdict["down"], summary=verdict["summary"])
        self.record(verdict)
        return verdict

    def run(self, stop):
        while not stop.is_set():
            started = time.monotonic()
            if self.watching():
                try:
                    self.probe_once()
                except Exception as exc:  # noqa: BLE001 - the detector must keep probing
                    log("standby", "edge-probe-error", level="error", error=f"{type(exc).__name__}: {exc}")
            else:  # ACTIVATING/ACTIVE: the public endpoint is ours; after a deactivation, see the primary first
                self.detector.streak, self.detector.seen_up, self.last_down = 0, False, False
                self.detector.gone_streak, self.detector.down_since = 0, None
            stop.wait(max(0.05, self.interval - (time.monotonic() - started)))

    def start(self, stop):
        thread = threading.Thread(target=self.run, args=(stop,), name="edgewatch", daemon=True)
        thread.start()
        return thread

"""Alerts: always a JSON journal line (event="alert"); also a Discord webhook when configured.

The webhook POST runs in a background thread, so a slow or dead Discord never blocks the agent's
tick loop. Nothing here raises, and the webhook URL (a secret) is never logged.

Messages carry ``allowed_mentions: {"parse": []}``: text such as ``@everyone`` or ``<@id>`` in an
alert (it may quote a path or an error) never pings anyone. A 429 answer is retried after Discord's
``retry_after`` (JSON body, else the Retry-After header), at most ``RETRIES_429`` times and never
waiting longer than ``MAX_RETRY_AFTER`` seconds at once; all in the background thread.
"""

import json
import threading
import time
import urllib.error
import urllib.request

from wirebot.common.log import log

_MAX_CONTENT = 1900  # Discord limit is 2000 characters per message
RETRIES_429 = 3  # rate-limited answers retried per message
MAX_RETRY_AFTER = 60.0  # seconds; a longer retry_after gives the message up (logged)
NO_MENTIONS = {"parse": []}


def retry_after(error):
    """Seconds Discord asks to wait in a 429 ``error`` (body ``retry_after``, else Retry-After), or None."""
    try:
        value = json.loads(error.read() or b"{}").get("retry_after")
    except (ValueError, AttributeError, OSError):
        value = None
    if value is None and error.headers is not None:
        value = error.headers.get("Retry-After")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


class Alerter:
    """Send operator alerts for ``component``; ``webhook_url`` None -> journal only."""

    def __init__(self, component, webhook_url, timeout=5, sleep=time.sleep):
        self.component = component
        self.webhook_url = webhook_url
        self.timeout = timeout
        self.sleep = sleep

    def send(self, kind, message, **fields):
        """Log the alert and (when configured) post it to Discord in the background. Never raises."""
        try:
            log(self.component, "alert", level="warning", kind=kind, message=message, **fields)
            if not self.webhook_url:
                return None
            details = ", ".join(f"{k}={v}" for k, v in sorted(fields.items()))
            content = f"[wirebot {self.component}] {kind}: {message}"
            if details:
                content += f" ({details})"
            thread = threading.Thread(target=self._post, args=(kind, content[:_MAX_CONTENT]),
                                      name="alert-webhook", daemon=True)
            thread.start()
            return thread
        except Exception as exc:  # noqa: BLE001 - alerts must never take the agent down
            log(self.component, "alert-failed", level="error", kind=kind, error=type(exc).__name__)
            return None

    def _post(self, kind, content):
        body = json.dumps({"content": content, "allowed_mentions": NO_MENTIONS}).encode("utf-8")
        for attempt in range(RETRIES_429 + 1):
            request = urllib.request.Request(
                self.webhook_url, data=body, method="POST",
                headers={"Content-Type": "application/json", "User-Agent": "wirebot-agent"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    status = response.status
            except urllib.error.HTTPError as exc:
                wait = retry_after(exc) if exc.code == 429 else None
                if wait is not None and wait <= MAX_RETRY_AFTER and attempt < RETRIES_429:
                    log(self.component, "alert-webhook-rate-limited", kind=kind, retry_after=wait,
                        attempt=attempt + 1)
                    self.sleep(wait)
                    continue
                log(self.component, "alert-webhook-failed", level="warning", kind=kind, error=str(exc.code),
                    retry_after=wait)
                return
            except Exception as exc:  # noqa: BLE001 - URLError, timeouts, anything else
                log(self.component, "alert-webhook-failed", level="warning", kind=kind,
                    error=type(exc).__name__)
                return
            log(self.component, "alert-webhook-sent", kind=kind, status=status, attempts=attempt + 1)
            return

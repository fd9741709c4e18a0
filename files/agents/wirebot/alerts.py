"""Alerts: always a JSON journal line (event="alert"); also a Discord webhook when configured.

The webhook POST runs in a background thread, so a slow or dead Discord never blocks the agent's
tick loop. Nothing here raises, and the webhook URL (a secret) is never logged.
"""

import json
import threading
import urllib.request

from .log import log

_MAX_CONTENT = 1900  # Discord limit is 2000 characters per message


class Alerter:
    """Send operator alerts for ``component``; ``webhook_url`` None -> journal only."""

    def __init__(self, component, webhook_url, timeout=5):
        self.component = component
        self.webhook_url = webhook_url
        self.timeout = timeout

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
        body = json.dumps({"content": content}).encode("utf-8")
        request = urllib.request.Request(
            self.webhook_url, data=body, method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "wirebot-agent"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status = response.status
        except Exception as exc:  # noqa: BLE001 - includes HTTPError, URLError, timeouts
            log(self.component, "alert-webhook-failed", level="warning", kind=kind,
                error="{}".format(getattr(exc, "code", type(exc).__name__)))
            return
        log(self.component, "alert-webhook-sent", kind=kind, status=status)

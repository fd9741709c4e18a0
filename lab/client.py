"""A plain HTTP client for the lab's test equipment (tests, benchmarks, scenarios): one request, the
status and the parsed JSON (or the text) back, never an exception for an HTTP or network error."""

import json
import urllib.error
import urllib.request


def request(url, method="GET", body=None, headers=None, timeout=5):
    """(status, parsed JSON or text); status 0 with the error text when nothing answered."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except OSError as error:
        return 0, str(error)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")

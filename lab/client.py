"""The lab's HTTP client for its test equipment (tests, benchmarks, scenarios): one request, the status and
the parsed JSON (or the text) back, never an exception for an HTTP or network error; and the requests
to the lab's edge (its control port and its public port) built on it."""

import json
import urllib.error
import urllib.request

from lab import settings
from lab.shell import LabError


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


# --- The edge (the Cloudflare stand-in): its control/API port and its public port ---

def edge(path, method="GET", body=None, headers=None, timeout=5):
    """Call the edge's control/API port (its /lab/* views, the tunnel API); (status, JSON or text)."""
    return request(f"{settings.EDGE_URL}{path}", method, body, headers, timeout)


def public(hostname, path, method="GET", body=None, timeout=5):
    """A request from 'the internet': to the edge's public port with the public hostname."""
    return request(f"{settings.EDGE_PUBLIC_URL}{path}", method, body, {"Host": hostname}, timeout)


def connector_origins():
    """The origin IPs of the connectors registered at the edge right now (None when it does not answer)."""
    status, connectors = edge("/lab/connectors")
    return {c["origin_ip"] for c in connectors} if status == 200 else None


def webhooks(since):
    """The webhook POSTs (the agents' Discord alerts) the edge received since `since`: [{ts, name, body}]."""
    status, hooks = edge(f"/lab/webhooks?since={since}")
    if status != 200:
        raise LabError(f"the edge's /lab/webhooks answered {status}: {hooks}")
    return hooks

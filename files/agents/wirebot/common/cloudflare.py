"""The one client of Cloudflare's tunnel-connections API, for the agents and the control side alike.

``GET {api_base}/accounts/{account_id}/cfd_tunnel/{tunnel_id}/connections`` with a Bearer token answers the
envelope ``{"success": true, "result": [{"id", "conns": [{"origin_ip", "opened_at", ...}]}]}``: which
origins (hosts) have a connector attached to the tunnel. The standby's witness and edge detector
(wirebot.standby.witness, wirebot.standby.edgewatch), the primary's start gate (wirebot.hosttools.gate) and
the playbooks' verification (tasks/playbooks/remote.py) all call ``tunnel_origins``.

Failure handling, the same for every caller: nothing raises; every call is bounded by ``timeout``; a
refusal gives its HTTP ``status`` and, for a rate limit (429) or an outage (503), Cloudflare's
``Retry-After`` in seconds as ``retry_after`` (the caller waits at least that long before the next call:
the edge detector backs off by it); an envelope that is not ``success: true`` with a list ``result`` is an
error, never an empty list (an unreadable answer must not read as "no connector"). The token is sent only
in the Authorization header and never appears in a result or an error.

Standard library only; Python 3.9+ (the hosts' system Python).
"""

import json
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_API_BASE = "https://api.cloudflare.com/client/v4"
DEFAULT_TIMEOUT = 5.0   # seconds per call
MAX_BODY = 1 << 20      # bytes read of an answer (a tunnel has a handful of connections)
MAX_RETRY_AFTER = 86400.0  # a Retry-After beyond a day is ignored (garbage)


def connections_url(api_base, account_id, tunnel_id):
    """The connections list's URL (account and tunnel quoted as one path segment each)."""
    return "{}/accounts/{}/cfd_tunnel/{}/connections".format(
        api_base.rstrip("/"), urllib.parse.quote(account_id, safe=""), urllib.parse.quote(tunnel_id, safe=""))


def parse_origins(envelope):
    """The sorted distinct origin IPs of a connections envelope; ValueError when it is not a successful one."""
    if not isinstance(envelope, dict) or envelope.get("success") is not True:
        errors = envelope.get("errors") if isinstance(envelope, dict) else None
        raise ValueError(f"API call not successful: {json.dumps(errors)[:300]}")
    result = envelope.get("result")
    if not isinstance(result, list):
        raise ValueError("API result is not a list")
    origins = set()
    for connector in result:
        conns = connector.get("conns") if isinstance(connector, dict) else None
        for conn in conns if isinstance(conns, list) else []:
            if isinstance(conn, dict) and conn.get("origin_ip"):
                origins.add(str(conn["origin_ip"]))
    return sorted(origins)


def retry_after(value):
    """Seconds of a Retry-After header given in seconds (an HTTP date, garbage or absent: None)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if 0 <= seconds < MAX_RETRY_AFTER else None


def tunnel_origins(api_base, account_id, tunnel_id, token, timeout=DEFAULT_TIMEOUT, user_agent="wirebot"):
    """{"configured", "ok", "origins", "error", "status", "retry_after"} of one call (see the module's doc).

    ``configured`` is False (and nothing is sent) without a token, account and tunnel."""
    result = {"configured": bool(token and account_id and tunnel_id), "ok": False, "origins": [], "error": None,
              "status": None, "retry_after": None}
    if not result["configured"]:
        return result
    request = urllib.request.Request(connections_url(api_base, account_id, tunnel_id), method="GET", headers={
        "Authorization": "Bearer " + token, "Accept": "application/json", "User-Agent": user_agent})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            result["status"] = response.status
            envelope = json.loads(response.read(MAX_BODY).decode("utf-8"))
        result["origins"] = parse_origins(envelope)
        result["ok"] = True
    except urllib.error.HTTPError as exc:
        result["error"], result["status"] = f"HTTP {exc.code}", exc.code
        result["retry_after"] = retry_after(exc.headers.get("Retry-After") if exc.headers else None)
    except (urllib.error.URLError, OSError, ValueError) as exc:  # ValueError: JSON, UnicodeDecodeError, URL
        result["error"] = str(getattr(exc, "reason", exc))[:300]
    return result

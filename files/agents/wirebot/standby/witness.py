"""The witness: evidence about who serves the public that does not depend on the primary.

Two independent checks:

* **public** - ``GET witness.public_url`` through Cloudflare (optional ``Host`` header). Any 2xx
  means somebody's connector is serving the public; when our own connector is down that is the
  primary. Anything else (5xx such as Cloudflare's 530/1033, or no answer) means "not served".
* **api** - Cloudflare's tunnel-connections list (wirebot.common.cloudflare, the one client of that API).
  Every connection whose ``origin_ip`` differs from ``self_origin_ip`` is "another origin"
  (the primary). Only consulted when a token, account_id and tunnel_id are configured.

Config keys (section ``witness:``, same keys in standby.yml and the primary's optional
``witness:`` section of replicator.yml):

* ``public_url`` (str, required when the section exists) - e.g. https://wins.wirebot.chat/health
* ``public_host_header`` (str, optional) - Host header to send (the lab's edge routes by Host)
* ``cloudflare_api_base`` (str, default https://api.cloudflare.com/client/v4)
* ``account_id``, ``tunnel_id`` (str, optional; both needed for the API check)
* ``self_origin_ip`` (str, required) - this host's connector origin IP, never counted as "other"
* ``timeout_seconds`` (number, default 5)
"""

import time
import urllib.error
import urllib.request

from wirebot.common import cloudflare, config

DEFAULT_API_BASE = cloudflare.DEFAULT_API_BASE


def load_settings(cfg, path, section="witness", required=True, require_public=True):
    """Read the ``witness:`` section; None when absent and not required. ConfigError names key+file.

    ``require_public=False`` (the primary's start gate, which only asks the API) makes public_url
    optional.
    """
    if cfg.get(section) is None and not required:
        return None
    config.get(cfg, section, dict, path)
    key = section + "."
    public_default = config.REQUIRED if require_public else None
    return {
        "public_url": config.get(cfg, key + "public_url", str, path, default=public_default),
        "public_host_header": config.get(cfg, key + "public_host_header", str, path, default=None),
        "cloudflare_api_base": config.get(cfg, key + "cloudflare_api_base", str, path,
                                          default=DEFAULT_API_BASE).rstrip("/"),
        "account_id": config.get(cfg, key + "account_id", str, path, default=None),
        "tunnel_id": config.get(cfg, key + "tunnel_id", str, path, default=None),
        "self_origin_ip": config.get(cfg, key + "self_origin_ip", str, path),
        "timeout_seconds": config.get(cfg, key + "timeout_seconds", float, path, default=5.0),
    }


def check_public(url, host_header, timeout):
    """{"status": int|None, "serving": bool, "error": str|None} for one GET of the public URL."""
    headers = {"User-Agent": "wirebot-witness", "Cache-Control": "no-cache"}
    if host_header:
        headers["Host"] = host_header
    request = urllib.request.Request(url, headers=headers, method="GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(65536)
            status = response.status
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "serving": False, "error": None}
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return {"status": None, "serving": False, "error": str(getattr(exc, "reason", exc))}
    return {"status": status, "serving": 200 <= status < 300, "error": None}


def check_api(settings, token, timeout=None):
    """{"configured", "ok", "origins", "other_origins", "error", "status", "retry_after"}: Cloudflare's
    connections list (wirebot.common.cloudflare.tunnel_origins; ``status``: the HTTP status of a refusal,
    ``retry_after``: its Retry-After seconds) and the origins in it other than ``self_origin_ip``."""
    result = cloudflare.tunnel_origins(settings["cloudflare_api_base"], settings.get("account_id"),
                                       settings.get("tunnel_id"), token, timeout or settings["timeout_seconds"],
                                       user_agent="wirebot-witness")
    result["other_origins"] = [ip for ip in result["origins"] if ip != settings["self_origin_ip"]]
    return result


retry_after = cloudflare.retry_after  # the edge detector's public-probe backoff reads Retry-After the same way


def check(settings, token, now=None):
    """Run both checks; return the witness result used by the state machine and the gate.

    Keys: at, public{...}, api{...}, primary_serving (public 2xx), other_connector (API ok and another
    origin attached), api_clear (API ok and no other origin), summary (one line for logs/alerts).
    """
    if settings.get("public_url"):
        public = check_public(settings["public_url"], settings.get("public_host_header"),
                              settings["timeout_seconds"])
    else:  # not asked (the standby knows the primary's lease ran out)
        public = {"status": None, "serving": False, "error": "not probed"}
    api = check_api(settings, token)
    result = {
        "at": time.time() if now is None else now,
        "public": public,
        "api": api,
        "primary_serving": bool(public["serving"]),
        "other_connector": bool(api["ok"] and api["other_origins"]),
        "api_clear": bool(api["ok"] and not api["other_origins"]),
    }
    result["summary"] = summarize(result)
    return result


def summarize(result):
    """One human line: what the public endpoint and the API said."""
    public = result["public"]
    if public.get("status") is not None:
        text = "public answered {}".format(public["status"])
    else:
        text = "public unreachable ({})".format(public.get("error"))
    api = result["api"]
    if not api.get("configured"):
        text += "; API check not configured"
    elif not api.get("ok"):
        text += "; API check failed ({})".format(api.get("error"))
    elif api.get("other_origins"):
        text += "; API shows connections from {}".format(", ".join(api["other_origins"]))
    else:
        text += "; API shows no connection from another origin"
    return text

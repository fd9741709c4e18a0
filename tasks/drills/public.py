"""Requests to the public hostnames from the control machine, as a user on the internet would make them
(real: https://<hostname>; the lab: the edge's address with the hostname as Host header)."""

import json
import urllib.error
import urllib.request


def request(url: str, host_header: str = "", method: str = "GET", body=None, headers=None,
            timeout: float = 10.0, seen: dict = None, origin_header: str = "") -> tuple:
    """(HTTP status or 0 when there was no answer, parsed JSON or text); `seen` gets the answer's
    `origin_header` (setting edge_origin_header: an edge that names the origin that served the request;
    empty: nothing is seen)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if host_header:
        req.add_header("Host", host_header)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            status, raw, answer_headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        status, raw, answer_headers = error.code, error.read(), error.headers
    except (OSError, ValueError) as error:
        return 0, str(error)
    if seen is not None and origin_header and answer_headers.get(origin_header):
        seen["origin"] = answer_headers.get(origin_header)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")[:300]


def health(prefix: str, host_header: str, timeout: float = 10.0, origin_header: str = "") -> tuple:
    """(ok, detail) for GET /health on one public hostname (`origin_header`: as request())."""
    seen = {}
    status, body = request(f"{prefix}/health", host_header, timeout=timeout, seen=seen, origin_header=origin_header)
    who = seen.get("origin") or (body.get("host") if isinstance(body, dict) else None)
    return status == 200, f"HTTP {status}" + (f" from {who}" if who else "") + ("" if status else f": {body}")


def chat(prefix: str, host_header: str, model: str, text: str, token: str = "", timeout: float = 60.0,
         seen: dict = None, origin_header: str = "") -> tuple:
    """(ok, answer or what went wrong) for one OpenAI-style chat completion (`seen`, `origin_header`: as
    request())."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"model": model, "messages": [{"role": "user", "content": text}], "stream": False}
    status, reply = request(f"{prefix}/v1/chat/completions", host_header, "POST", body, headers, timeout, seen,
                            origin_header)
    try:
        answer = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return False, f"HTTP {status}: no answer in {str(reply)[:200]!r}"
    if status != 200 or not isinstance(answer, str) or not answer.strip():
        return False, f"HTTP {status}: empty answer"
    return True, answer.strip()

#!/usr/bin/python3
"""OpenClaw gateway stand-in for the Wirebot lab: a health check and an OpenAI-compatible chat endpoint.

Endpoints:
  GET  /health                -> 200 {"ok": true, "service": "openclaw-gateway", "host": NAME}
  POST /v1/chat/completions   {"model": ..., "messages": [{"role": ..., "content": ...}, ...]}
                              -> 200 chat.completion whose answer deterministically echoes the last
                                 user message and names the host; malformed requests -> 400 JSON error
Standard library only; runs as a single file on the lab hosts.
"""

import argparse
import hashlib
import json
import signal
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

MAX_BODY = 1 << 20


def error(message: str, kind: str = "invalid_request_error") -> dict:
    """An OpenAI-style error body."""
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def completion(request, host: str) -> tuple:
    """(status, body) for a chat-completion request body (already parsed JSON)."""
    if not isinstance(request, dict):
        return 400, error("request body must be a JSON object")
    model, messages = request.get("model"), request.get("messages")
    if not isinstance(model, str) or not model:
        return 400, error("'model' must be a non-empty string")
    if not isinstance(messages, list) or not messages:
        return 400, error("'messages' must be a non-empty list")
    for m in messages:
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            return 400, error("each message needs string 'role' and 'content'")
    user = [m["content"] for m in messages if m["role"] == "user"]
    answer = f"[{host}] Wirebot (lab) heard: {user[-1] if user else ''}"
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:24]
    prompt_tokens = sum(len(m["content"].split()) for m in messages)
    return 200, {
        "id": f"chatcmpl-{digest}", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(answer.split()),
                  "total_tokens": prompt_tokens + len(answer.split())},
        "system_fingerprint": f"lab-{host}",
    }


class Handler(BaseHTTPRequestHandler):
    """Routes to /health and /v1/chat/completions; `self.server.name` is the host name reported."""

    server_version = "openclaw-gateway-lab"

    def log_message(self, fmt, *args) -> None:
        sys.stderr.write(f"gateway: {self.address_string()} {fmt % args}\n")

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/health":
            return self.reply(200, {"ok": True, "service": "openclaw-gateway", "host": self.server.name})
        self.reply(404, error(f"no route for GET {self.path}", "not_found"))

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/v1/chat/completions":
            return self.reply(404, error(f"no route for POST {self.path}", "not_found"))
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return self.reply(400, error("bad Content-Length"))
        if length > MAX_BODY:
            self.close_connection = True
            return self.reply(413, error("request body too large"))
        try:
            request = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            return self.reply(400, error("request body is not valid JSON"))
        self.reply(*completion(request, self.server.name))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bind", metavar="ADDR", default="0.0.0.0",
                        help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", metavar="PORT", type=int, default=18789,
                        help="port to listen on (default: %(default)s)")
    parser.add_argument("--name", metavar="NAME", default=socket.gethostname(),
                        help="host name to report in /health and answers (default: this host's name)")
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.bind, args.port), Handler)
    server.daemon_threads = True
    server.name = args.name
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.stderr.write(f"gateway: {args.name} listening on {args.bind}:{server.server_address[1]}\n")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

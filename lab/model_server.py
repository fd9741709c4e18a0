"""The lab's model provider: an OpenAI-compatible chat server that answers deterministically.

The real gateways on the lab hosts are configured (lab/inventory.py, `gateway_config`) with this server
as their model provider, so a chat through the edge exercises the whole path (edge -> connector ->
gateway -> model) without a real model or the internet. It runs in the edge's namespace
(lab/edge_service.py) and names the lab host whose gateway asked (by source address), which is how the
drill and the tests prove which gateway answered.

  GET  /v1/models              -> the one model, MODEL_ID
  POST /v1/chat/completions    -> "Wirebot lab model, via the <host> gateway: <last user text>" as a
                                  chat.completion, or as server-sent chunks when "stream" is true;
                                  malformed requests -> 400 with an OpenAI-style error
  GET  /health                 -> 200

Every answered request is appended to --log as one JSON line (time, host, model, stream).
Standard library only.
"""

import argparse
import hashlib
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

MODEL_ID = "wirebot-lab-model"
GATEWAY_CONTEXT = re.compile(r"<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>.*?<<<END_OPENCLAW_INTERNAL_CONTEXT>>>", re.S)
MAX_BODY = 8 << 20


def error(message: str, kind: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _text(content) -> str:
    """The text of a message's content: a string, or a list of {"type": "text", "text": ...} parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def answer_for(request, host: str) -> tuple:
    """(status, body or error, answer text) for a parsed chat-completions request from `host`'s gateway."""
    if not isinstance(request, dict):
        return 400, error("request body must be a JSON object"), ""
    messages = request.get("messages")
    if not isinstance(request.get("model"), str) or not request["model"]:
        return 400, error("'model' must be a non-empty string"), ""
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        return 400, error("'messages' must be a non-empty list of messages with a 'role'"), ""
    users = [" ".join(GATEWAY_CONTEXT.sub(" ", _text(m.get("content"))).split())  # without the gateway's context
             for m in messages if m["role"] == "user"]
    last = next((text for text in reversed(users) if text), "")[:160]
    text = f"Wirebot lab model, via the {host} gateway: {last}"
    return 200, None, text


def completion_id(request: dict) -> str:
    return "chatcmpl-" + hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:24]


class Handler(BaseHTTPRequestHandler):
    server_version = "wirebot-lab-model"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args) -> None:
        sys.stderr.write(f"model: {self.address_string()} {fmt % args}\n")

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        if path == "/health":
            return self.reply(200, {"ok": True})
        if path in ("/v1/models", "/models"):
            return self.reply(200, {"object": "list", "data": [
                {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "wirebot-lab"}]})
        self.reply(404, error(f"no route for GET {self.path}", "not_found"))

    def do_POST(self) -> None:
        if urlsplit(self.path).path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
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
        host = self.server.names.get(self.client_address[0], self.client_address[0])
        status, problem, text = answer_for(request, host)
        if status != 200:
            return self.reply(status, problem)
        self.server.record({"at": time.time(), "host": host, "model": request["model"],
                            "stream": bool(request.get("stream"))})
        ident, created = completion_id(request), int(time.time())
        usage = {"prompt_tokens": 1, "completion_tokens": len(text.split()),
                 "total_tokens": 1 + len(text.split())}
        if not request.get("stream"):
            return self.reply(200, {
                "id": ident, "object": "chat.completion", "created": created, "model": request["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop"}], "usage": usage})
        chunk = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": request["model"]}
        events = [dict(chunk, choices=[{"index": 0, "delta": {"role": "assistant", "content": text},
                                        "finish_reason": None}]),
                  dict(chunk, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}], usage=usage)]
        data = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Content-Length", str(len(data.encode())))
        self.end_headers()
        self.wfile.write(data.encode())


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, names: dict, log_path: str = ""):
        super().__init__(address, Handler)
        self.names, self.log_path, self.lock = names, log_path, threading.Lock()

    def record(self, entry: dict) -> None:
        if self.log_path:
            with self.lock, open(self.log_path, "a") as handle:
                handle.write(json.dumps(entry) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.model_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8400, help="port to listen on")
    parser.add_argument("--name", action="append", default=[], metavar="ADDRESS=HOST",
                        help="name the gateway at ADDRESS in answers (repeatable)")
    parser.add_argument("--log", default="", help="append one JSON line per answer to this file")
    args = parser.parse_args(argv)
    names = dict(item.split("=", 1) for item in args.name)
    server = Server((args.listen, args.port), names, args.log)
    sys.stderr.write(f"model: listening on {args.listen}:{server.server_address[1]}\n")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

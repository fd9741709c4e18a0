"""Test equipment for the channel attacks (lab/channel_attacker.py runs it): run inside a lab host's
network namespace (`ip netns exec`), so its connections come from that host's address. Standard library
only; reads a JSON spec on stdin and prints one JSON line.

  {"mode": "send", "probes": [{"target": "10.213.1.3:8300", "tls": null | {"cert_file", "key_file",
   "peer_cert_file"} | {"no_client_cert": true, "peer_cert_file"}, "payload": base64, "wait": seconds,
   "answer_bytes": how much of the answer to return (default 600)}]}
      -> {"results": [{"connected", "tls", "answer": first bytes of the answer (text), "status", "error",
      "seconds": connect to close}]}
      `payload` goes out as is: over TLS when `tls` is given, raw otherwise (a replayed capture is raw).

  {"mode": "halfopen", "target": "10.213.1.3:8300", "count": 500, "hold": seconds}
      -> {"opened", "closed_by_server", "closed_within_2s", "first_closed_after", "last_closed_after"}:
      N TCP connections that
      never send a byte, held `hold` seconds; how many the server closed, and when.

  {"mode": "sniff", "interface": "wb1-standby", "port": 8300, "seconds": 5}
      -> {"flows": [{"src", "dst", "client": base64 of the client's bytes in order, "server": base64}]}
      every TCP flow to `port` seen on `interface` (AF_PACKET; run as root in the root namespace).
"""

import base64
import json
import select
import socket
import ssl
import struct
import sys
import time


def _context(spec):
    if not spec:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(spec["peer_cert_file"])
    if not spec.get("no_client_cert"):
        ctx.load_cert_chain(spec["cert_file"], spec["key_file"])
    return ctx


def _send(probe):
    host, port = probe["target"].rsplit(":", 1)
    result = {"connected": False, "tls": False, "answer": "", "status": 0, "error": None}
    started = time.monotonic()
    try:
        sock = socket.create_connection((host, int(port)), timeout=5)
    except OSError as exc:
        result["error"] = f"connect: {exc}"
        return result
    result["connected"] = True
    data = b""
    try:
        ctx = _context(probe.get("tls"))
        if ctx is not None:
            sock = ctx.wrap_socket(sock)
            result["tls"] = True
        sock.sendall(base64.b64decode(probe["payload"]))
        sock.settimeout(float(probe.get("wait", 3)))
        while len(data) < 65536:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (OSError, ssl.SSLError) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        sock.close()
    result["seconds"] = round(time.monotonic() - started, 4)
    result["answer"] = data[:int(probe.get("answer_bytes", 600))].decode("latin-1")
    if data.startswith(b"HTTP/1."):
        result["status"] = int(data.split(b" ", 2)[1])
    return result


def _halfopen(spec):
    host, port = spec["target"].rsplit(":", 1)
    socks = []
    for _ in range(int(spec["count"])):
        try:
            sock = socket.create_connection((host, int(port)), timeout=5)
        except OSError:
            break
        sock.setblocking(False)
        socks.append(sock)
    started = time.monotonic()
    open_ = {s.fileno(): s for s in socks}
    closed = []
    while open_ and time.monotonic() - started < float(spec["hold"]):
        readable, _, _ = select.select(list(open_.values())[:1000], [], [], 0.2)
        for sock in readable:
            try:
                chunk = sock.recv(4096)
            except OSError:
                chunk = b""
            if not chunk:
                closed.append(time.monotonic() - started)
                del open_[sock.fileno()]
                sock.close()
    for sock in open_.values():
        sock.close()
    return {"opened": len(socks), "closed_by_server": len(closed),
            "closed_within_2s": len([c for c in closed if c < 2.0]),
            "first_closed_after": round(min(closed), 2) if closed else None,
            "last_closed_after": round(max(closed), 2) if closed else None}


def _sniff(spec):
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
    sock.bind((spec["interface"], 0))
    sock.settimeout(0.2)
    flows = {}
    deadline = time.monotonic() + float(spec["seconds"])
    port = int(spec["port"])
    while time.monotonic() < deadline:
        try:
            frame = sock.recv(65600)
        except socket.timeout:
            continue
        if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
            continue
        ihl = (frame[14] & 0x0F) * 4
        total = struct.unpack("!H", frame[16:18])[0]
        src, dst = socket.inet_ntoa(frame[26:30]), socket.inet_ntoa(frame[30:34])
        tcp = frame[14 + ihl:14 + total]
        sport, dport, seq = struct.unpack("!HHI", tcp[:8])
        payload = tcp[(tcp[12] >> 4) * 4:]
        if port not in (sport, dport) or not payload:
            continue
        client = (src, sport) if dport == port else (dst, dport)
        key = f"{client[0]}:{client[1]}"
        flow = flows.setdefault(key, {"src": client[0], "dst": dst if dport == port else src,
                                      "client": {}, "server": {}})
        flow["client" if dport == port else "server"][seq] = payload  # retransmits overwrite
    out = []
    for flow in flows.values():
        out.append({"src": flow["src"], "dst": flow["dst"],
                    "client": base64.b64encode(b"".join(p for _, p in sorted(flow["client"].items()))).decode(),
                    "server": base64.b64encode(b"".join(p for _, p in sorted(flow["server"].items()))).decode()})
    return {"flows": out}


def main():
    spec = json.loads(sys.stdin.read())
    if spec["mode"] == "send":
        print(json.dumps({"results": [_send(p) for p in spec["probes"]]}))
    elif spec["mode"] == "halfopen":
        print(json.dumps(_halfopen(spec)))
    else:
        print(json.dumps(_sniff(spec)))


if __name__ == "__main__":
    main()

"""Runtime agents on the lab (issue: runtime agents): hostile and broken requests to the agents.

Forged (bad signature, tampered body), stale (timestamp outside the clock window), replayed (same
sequence) and unsigned heartbeats sent from the primary (the one allowed source, over mutual TLS with its
own certificate) with the agent's own signing code on that host are refused with the right status; a
correctly signed heartbeat from this machine (not an allowed source) never gets an answer; malformed
JSON and oversized bodies get 4xx on both agents, which stay up and keep accepting the real heartbeats.
(The channel's own attacks are in test_channel_attacks.py.)

Not destructive; starts from a clean lab (reset when it is not).
"""

import base64
import json
import time

import pytest
from wirebot.common import signing  # the agents' own signing code

from lab import settings
from lab.agents import agent, journal, standby_status
from lab.baseline import ensure_clean_lab
from lab.channel_attacker import identity, probe
from lab.machines import ssh
from tasks.core.wait import wait_for

PRIMARY, STANDBY = settings.address("primary"), settings.address("standby")
MAX_BODY = 65536  # the standby agent's max_body_bytes (default) and the replicator's

# Runs on the primary with the deployed agents' code and the host's HMAC key. argv[1]: the standby's URL.
# Prints {case: [status, body]}; a status 0 means the connection failed before an HTTP answer.
HOSTILE = r'''
import json, os, socket, sys, time, urllib.error, urllib.parse, urllib.request
from wirebot.common import signing, tls

URL = sys.argv[1] + "/heartbeat"
KEY = signing.load_key("/run/wirebot/agent-hmac.key")
HB = signing.Binding("heartbeat", "primary", "standby")
TLS = tls.client_context({"cert_file": "/etc/wirebot/agent-keys/agent.crt",
                          "key_file": "/etc/wirebot/agent-keys/agent.key",
                          "peer_cert_file": "/etc/wirebot/agent-keys/peer.crt"})


def sign(key, body, seq, now):
    return signing.signed_headers(key, HB, "POST", "/heartbeat", body, seq, now)


def post(body, headers):
    request = urllib.request.Request(URL, data=body, method="POST",
                                     headers=dict(headers, **{"Content-Type": "application/json"}))
    try:
        with urllib.request.urlopen(request, timeout=10, context=TLS) as response:
            return [response.status, response.read().decode()]
    except urllib.error.HTTPError as exc:
        return [exc.code, exc.read().decode()]
    except OSError as exc:
        return [0, str(exc)]


def raw(head, body=b""):
    """Send `head` (and `body`) on a bare socket; the HTTP status of the answer, 0 if none."""
    target = urllib.parse.urlsplit(URL)
    sock = TLS.wrap_socket(socket.create_connection((target.hostname, target.port), timeout=10))
    data = b""
    try:
        sock.sendall(head + body)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    finally:
        sock.close()
    return [int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0, data.decode(errors="replace")[:300]]


def beat(sequence, now, node="hostile-test"):
    return json.dumps({"node": node, "sent_at": round(now, 3), "sequence": sequence, "epoch": 1,
                       "services": {}, "litestream": {}, "file_sync": {}}, sort_keys=True).encode()


out = {}
now = time.time()
seq = signing.next_sequence(0, now)
body = beat(seq, now)
good = sign(KEY, body, seq, now)
out["forged"] = post(body, sign(os.urandom(32), body, seq, now))
out["tampered"] = post(body.replace(b'"epoch": 1', b'"epoch": 7'), good)
old = beat(seq, now - 600)
out["stale"] = post(old, sign(KEY, old, seq, now - 600))
ahead = beat(seq, now + 600)
out["future"] = post(ahead, sign(KEY, ahead, seq, now + 600))
out["unsigned"] = post(body, {})
out["valid"] = post(body, good)
out["replayed"] = post(body, good)
lower = beat(seq - 1000, time.time())
out["older-sequence"] = post(lower, sign(KEY, lower, seq - 1000, time.time()))
broken = b'{"node": "hostile-test", "sent_at": '
out["malformed-signed"] = post(broken, sign(KEY, broken, seq + 1, time.time()))
out["malformed-unsigned"] = post(b"{not json", {})
wrong = json.dumps({"node": 1, "sequence": seq + 2}).encode()
out["wrong-fields"] = post(wrong, sign(KEY, wrong, seq + 2, time.time()))
big = beat(seq + 3, time.time(), node="x" * (65536 + 1))
host = urllib.parse.urlsplit(URL).netloc.encode()
head = (b"POST /heartbeat HTTP/1.1\r\nHost: " + host + b"\r\nContent-Type: application/json\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in sign(KEY, big, seq + 3, time.time()).items()).encode())
out["oversized"] = raw(head + f"Content-Length: {len(big)}\r\n\r\n".encode(), big)
out["oversized-declared"] = raw(head + b"Content-Length: 100000000\r\n\r\n")
out["bad-length"] = raw(head + b"Content-Length: lots\r\n\r\n")
print(json.dumps(out))
'''

EXPECTED = {  # case: (HTTP status, the reason the agent gives and counts the refusal under)
    "forged": (401, "bad-signature"),
    "tampered": (401, "bad-signature"),
    "stale": (401, "stale"),
    "future": (401, "stale"),
    "unsigned": (401, "missing"),
    "valid": (200, None),
    "replayed": (409, "replayed"),
    "older-sequence": (409, "replayed"),
    "malformed-signed": (400, "malformed-body"),
    "malformed-unsigned": (401, "missing"),
    "wrong-fields": (400, "malformed-body"),
    "oversized": (413, None),
    "oversized-declared": (413, None),
    "bad-length": (400, None),
}


def signed_post(url: str, body: bytes, key: bytes, sequence: int) -> tuple:
    """POST `body` signed with `key` from this machine (no client certificate); (status, text), status 0
    when there is no HTTP answer."""
    import urllib.error
    import urllib.request

    headers = signing.signed_headers(key, signing.Binding("heartbeat", "primary", "standby"), "POST",
                                     "/heartbeat", body, sequence)
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers=dict(headers, **{"Content-Type": "application/json"}))
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


@pytest.fixture(scope="module")
def attack():
    """A clean lab; the hostile heartbeats sent from the primary. Returns the agent's counters before and
    after, and the answers."""
    ensure_clean_lab()
    before = standby_status()
    started = time.time()
    result = ssh("primary", f"PYTHONPATH=/opt/wirebot/agents python3 - https://{STANDBY}:8300 <<'EOF'\n{HOSTILE}\nEOF",
                 timeout=120)
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    return {"before": before, "started": started, "answers": answers}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_a_hostile_heartbeat_from_the_primary_gets_the_right_status(attack, case):
    status, body = attack["answers"][case]
    expected, reason = EXPECTED[case]
    print(f"\n{case}: {status} {body.strip().splitlines()[0][:120]}")
    assert status == expected
    if reason:
        assert json.loads(body)["error"].startswith(f"{reason}: ")


def test_the_refusals_are_counted_and_logged_with_their_reason(attack):
    after = standby_status()
    counted = {}
    for reason, count in after["heartbeats"]["rejected"].items():
        counted[reason] = count - attack["before"]["heartbeats"]["rejected"].get(reason, 0)
    wanted = {}
    for _, reason in EXPECTED.values():
        if reason:
            wanted[reason] = wanted.get(reason, 0) + 1
    assert {r: n for r, n in counted.items() if n} == wanted
    logged = [e["reason"] for e in journal("standby", "wirebot-standby", attack["started"])
              if e["event"] == "heartbeat-rejected"]
    assert sorted(logged) == sorted(r for _, r in EXPECTED.values() if r)
    sizes = [e for e in journal("standby", "wirebot-standby", attack["started"])
             if e["event"] == "request-refused" and e["reason"] == "body too large"]
    assert len(sizes) == 2


def test_a_correctly_signed_heartbeat_from_this_machine_is_refused_by_source(attack):
    refused_before = standby_status()["connections"]["peer"]["refused_source"]
    key = signing.load_key(str(settings.SECRETS_DIR / "agent-hmac.key"))
    now = time.time()
    sequence = signing.next_sequence(0, now)
    body = json.dumps({"node": "primary", "sent_at": now, "sequence": sequence, "epoch": 1}).encode()
    for scheme in ("http", "https"):
        status, text = signed_post(f"{scheme}://{STANDBY}:8300/heartbeat", body, key, sequence)
        assert status == 0, (scheme, status, text)  # closed at accept, before TLS or HTTP
    assert standby_status()["connections"]["peer"]["refused_source"] == refused_before + 2
    status, _ = agent("standby", "/heartbeat", "POST", {"node": "primary"})
    assert status == 404  # the local control socket takes no heartbeats


def test_unsigned_control_requests_are_refused_and_change_nothing(attack):
    for path, body in (("/activate", {"force": True, "reason": "hostile"}), ("/deactivate", {"epoch": 9})):
        status, reply = agent("standby", path, "POST", body)
        assert status == 401 and reply["error"].startswith("missing: "), (path, reply)
    for path in ("/trigger-sync", "/drill"):
        status, reply = agent("primary", path, "POST", {})
        assert status == 401 and reply["error"] == "signature refused: missing", (path, reply)
    status = standby_status()
    assert (status["state"], status["epoch"], status["manual_request"]) == ("STANDBY", 1, None)


@pytest.mark.parametrize("name", ["standby", "primary"])
def test_malformed_and_oversized_bodies_get_4xx_and_the_agent_stays_up(attack, name):
    """Sent by the agent's peer (its certificate, from its address) over mutual TLS: :8300 admits no other."""
    peer = "primary" if name == "standby" else "standby"
    path = "/heartbeat" if name == "standby" else "/status"
    cases = {}
    for case, extra, body in (
            ("malformed", b"Content-Length: 9\r\n", b"{not json"),
            ("oversized", f"Content-Length: {MAX_BODY + 1}\r\n".encode(), b""),
            ("bad-length", b"Content-Length: -5\r\n", b"")):
        head = b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n"
        cases[case] = base64.b64encode(head + body).decode()
    probes = [{"target": f"{settings.address(name)}:8300", "tls": identity(peer), "payload": payload, "wait": 5}
              for payload in cases.values()]
    results = probe(peer, {"mode": "send", "probes": probes})["results"]
    answers = {case: result["status"] for case, result in zip(cases, results)}
    print(f"\n{name}: {answers}")
    assert all(400 <= status < 500 for status in answers.values()), answers
    assert agent(name, "/health")[0] == 200


def test_the_standby_stays_up_and_keeps_accepting_the_real_heartbeats(attack):
    status = standby_status()
    assert agent("standby", "/health") == (200, {"ok": True})
    assert (status["state"], status["epoch"]) == ("STANDBY", 1)
    accepted = status["heartbeats"]["accepted"]
    later = wait_for(lambda: (s := standby_status())["heartbeats"]["accepted"] >= accepted + 2 and s,
                     timeout=15, what="real heartbeats after the attack")
    assert later["last_heartbeat"]["node"] == "primary" and later["state"] == "STANDBY"
    restarts = ssh("standby", "systemctl show -p NRestarts --value wirebot-standby").stdout.strip()
    assert restarts == "0"

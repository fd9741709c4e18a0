"""wirebot.primary.heartbeat: payload shape, signature, persisted sequence, loopback delivery."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from wirebot.common import httpapi, signing, statefile
from wirebot.primary import heartbeat

KEY = bytes(range(32))
HB = signing.Binding("heartbeat", "primary", "standby")


class Receiver:
    """A loopback standby stand-in that verifies every heartbeat it gets."""

    def __init__(self, status=200):
        self.received = []
        self.status = status
        self.verifier = signing.Verifier(KEY, 60, HB)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    seq = receiver.verifier.verify("POST", self.path, dict(self.headers.items()), body)
                    receiver.received.append((self.path, seq, json.loads(body)))
                    code, answer = receiver.status, {"ok": receiver.status == 200, "state": "STANDBY"}
                except signing.SignatureError as exc:
                    code, answer = 401, {"error": exc.reason}
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = httpapi.Target.peer(f"http://127.0.0.1:{self.server.server_address[1]}")

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _collect():
    return ({"litestream": "active", "openclaw-gateway": "failed"},
            {"/d/events.db": {"txid": 9, "replicated_txid": 8, "lag_txids": 1, "lag_seconds": 2.5,
                              "last_sync_at": 100.0, "stalled": False, "error": None, "sync_status": "x"}},
            {"/data/wirebot/bin": {"state": "clean", "lag_seconds": 0.0, "last_success_at": 99.0,
                                   "consecutive_failures": 0, "last_error": None}})


def test_payload_shape():
    services, dbs, paths = _collect()
    payload = heartbeat.build_payload("primary", 42, 3, services, dbs, paths, now=1234.56789)
    assert payload == {
        "node": "primary", "sent_at": 1234.568, "sequence": 42, "epoch": 3,
        "services": {"litestream": "active", "openclaw-gateway": "failed"},
        "litestream": {"/d/events.db": {"txid": 9, "replicated_txid": 8, "lag_txids": 1, "lag_seconds": 2.5,
                                        "last_sync_at": 100.0, "stalled": False, "error": None}},
        "file_sync": {"/data/wirebot/bin": {"lag_seconds": 0.0, "last_success_at": 99.0,
                                            "consecutive_failures": 0, "last_error": None}},
    }
    json.dumps(payload)


def test_sends_signed_heartbeats_with_increasing_sequence_across_restarts(tmp_path, receiver):
    state = str(tmp_path / "state.json")
    statefile.save(state, {"epoch": 4, "sequence": 0, "other": "kept"})
    first = heartbeat.Sender("primary", receiver.url, KEY, HB, heartbeat.StateStore(state), _collect, timeout=5)
    r1 = first.send_once()
    r2 = first.send_once()
    assert r1["ok"] and r2["ok"] and r2["sequence"] > r1["sequence"]
    # a "restart": a new sender over the same state file, with the clock stepped back
    again = heartbeat.Sender("primary", receiver.url, KEY, HB, heartbeat.StateStore(state), _collect, timeout=5)
    r3 = again.send_once(now=1.0)
    assert r3["ok"] and r3["sequence"] == r2["sequence"] + 1
    assert [path for path, _, _ in receiver.received] == ["/heartbeat"] * 3
    assert [seq for _, seq, _ in receiver.received] == [r1["sequence"], r2["sequence"], r3["sequence"]]
    body = receiver.received[-1][2]
    assert body["epoch"] == 4 and body["node"] == "primary" and body["sequence"] == r3["sequence"]
    assert body["services"]["litestream"] == "active"
    saved = statefile.load(state, {})
    assert saved["sequence"] == r3["sequence"] and saved["epoch"] == 4 and saved["other"] == "kept"
    assert again.status()["sent_total"] == 1 and again.status()["consecutive_failures"] == 0


def test_signature_verifies_with_verifier(tmp_path):
    captured = {}

    def post(target, path, key, binding, payload, sequence, timeout):
        body = json.dumps(payload, sort_keys=True).encode()
        captured.update(headers=signing.signed_headers(key, binding, "POST", path, body, sequence), body=body,
                        url=f"{target}{path}")
        return 200, {"ok": True}

    sender = heartbeat.Sender("primary", httpapi.Target.peer("https://standby:8300"), KEY, HB,
                              heartbeat.StateStore(str(tmp_path / "s.json")), _collect, post=post)
    result = sender.send_once()
    assert captured["url"] == "https://standby:8300/heartbeat"
    assert signing.Verifier(KEY, 60, HB).verify("POST", "/heartbeat", captured["headers"],
                                                captured["body"]) == result["sequence"]
    with pytest.raises(signing.SignatureError):
        signing.Verifier(b"\1" * 32, 60, HB).verify("POST", "/heartbeat", captured["headers"], captured["body"])
    with pytest.raises(signing.SignatureError):  # a heartbeat is no control request, even to the same path
        signing.Verifier(KEY, 60, signing.Binding("control", "operator", "standby")).verify(
            "POST", "/heartbeat", captured["headers"], captured["body"])


def test_standby_ahead_is_warned_once_per_change_not_per_heartbeat(tmp_path, capsys):
    answers = iter([{"state": "STANDBY", "epoch": 1}] + [{"state": "ACTIVE", "epoch": 2}] * 4
                   + [{"state": "ACTIVE", "epoch": 3}] + [{"state": "STANDBY", "epoch": 1}] * 2)
    sender = heartbeat.Sender("primary", httpapi.Target.peer("https://standby:8300"), KEY, HB,
                              heartbeat.StateStore(str(tmp_path / "s.json")), _collect,
                              post=lambda *a: (200, next(answers)))
    for _ in range(8):
        sender.send_once()
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    noted = [(e["event"], e["standby_epoch"]) for e in events if e["event"] != "sent"]
    assert noted == [("standby-ahead", 2), ("standby-ahead", 3), ("standby-caught-up", 1)]
    assert [e["level"] for e in events if e["event"] == "standby-ahead"] == ["warning", "warning"]


def test_failed_send_is_logged_and_not_fatal(tmp_path, capsys):
    refusing = Receiver(status=409)
    try:
        sender = heartbeat.Sender("primary", refusing.url, KEY, HB,
                                  heartbeat.StateStore(str(tmp_path / "s.json")), _collect, timeout=5)
        result = sender.send_once()
        assert not result["ok"] and result["status"] == 409 and result["reason"].startswith("HTTP 409")
    finally:
        refusing.close()
    dead = heartbeat.Sender("primary", refusing.url, KEY, HB,
                            heartbeat.StateStore(str(tmp_path / "s.json")), _collect, timeout=2)
    result = dead.send_once()
    assert not result["ok"] and result["status"] == 0 and result["reason"].startswith("unreachable")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert any(rec["event"] == "send-failed" and "unreachable" in rec["reason"] for rec in lines)
    assert dead.status()["failures_total"] == 1


def test_run_loop_stops(tmp_path, receiver):
    sender = heartbeat.Sender("primary", receiver.url, KEY, HB, heartbeat.StateStore(str(tmp_path / "s.json")),
                              _collect, timeout=5)
    stop = threading.Event()
    thread = threading.Thread(target=sender.run, args=(stop, 0.05), daemon=True)
    thread.start()
    deadline = threading.Event()
    for _ in range(200):
        if len(receiver.received) >= 3:
            break
        deadline.wait(0.05)
    stop.set()
    thread.join(5)
    assert not thread.is_alive() and len(receiver.received) >= 3


def test_unit_state_reports_unknown_without_systemctl():
    assert heartbeat.unit_state("litestream", systemctl="/nonexistent/systemctl") == "unknown"
    assert heartbeat.service_states(["a", "b"], probe=lambda u: u + "-active") == {
        "a": "a-active", "b": "b-active"}


def test_unit_states_asks_systemctl_once_for_all_units(tmp_path):
    calls = tmp_path / "calls"
    fake = tmp_path / "systemctl"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\nshift\nfor unit in \"$@\"; do\n"
                    "  case $unit in *-down) echo inactive;; *) echo active;; esac\ndone\nexit 3\n")
    fake.chmod(0o755)
    assert heartbeat.unit_states(["a", "b-down", "c"], systemctl=str(fake)) == {
        "a": "active", "b-down": "inactive", "c": "active"}
    assert calls.read_text().splitlines() == ["is-active a b-down c"]
    assert heartbeat.service_states(["a"], systemctl=str(fake)) == {"a": "active"}
    assert heartbeat.unit_states([], systemctl=str(fake)) == {}
    assert heartbeat.unit_states(["a", "b"], systemctl="/nonexistent/systemctl") == {"a": "unknown",
                                                                                     "b": "unknown"}
    short = tmp_path / "short"
    short.write_text("#!/bin/sh\necho active\n")
    short.chmod(0o755)
    assert heartbeat.unit_states(["a", "b"], systemctl=str(short)) == {"a": "unknown", "b": "unknown"}


def run_sender(tmp_path, receiver, interval, renew, beats):
    """Run a Sender's loop until the receiver has ``beats`` beats (or 10 s); return what it received."""
    sender = heartbeat.Sender("primary", receiver.url, KEY, HB, heartbeat.StateStore(str(tmp_path / "s.json")),
                              _collect, timeout=5)
    stop = threading.Event()
    thread = threading.Thread(target=sender.run, args=(stop, interval, renew), daemon=True)
    thread.start()
    for _ in range(200):
        if len(receiver.received) >= beats:
            break
        stop.wait(0.05)
    stop.set()
    thread.join(5)
    return receiver.received


def test_lease_beats_between_heartbeats_are_small_signed_and_in_sequence(tmp_path, receiver):
    """With a renew period shorter than the interval, lease beats (no status) come between full heartbeats,
    from the same sender, so every sequence is above the last (the standby refuses a replay)."""
    received = run_sender(tmp_path, receiver, 0.4, 0.05, 12)
    bodies = [body for _path, _seq, body in received]
    sequences = [seq for _path, seq, _body in received]
    assert sequences == sorted(set(sequences))
    full = [b for b in bodies if b.get("kind") != "lease"]
    light = [b for b in bodies if b.get("kind") == "lease"]
    assert bodies[0] in full and len(light) >= 2 * len(full) >= 2  # ~7 lease beats per heartbeat here
    assert all(set(b) == {"node", "sent_at", "sequence", "epoch", "kind"} for b in light)
    assert all("services" in b and "litestream" in b for b in full)


def test_without_a_shorter_renew_period_every_beat_is_a_heartbeat(tmp_path, receiver):
    received = run_sender(tmp_path, receiver, 0.05, 0.5, 3)
    assert len(received) >= 3 and all(body.get("kind") != "lease" for _p, _s, body in received)


def test_with_lease_beats_no_beat_waits_longer_than_a_lease_beat(tmp_path):
    """A full heartbeat that hangs (a TLS handshake on a starved host) must not hold the lease beats behind
    it for the sender's whole timeout: every beat is bounded by max(1, 2 x renew)."""
    timeouts = []

    def post(target, path, key, binding, payload, sequence, timeout):
        timeouts.append((payload.get("kind"), timeout))
        return 200, {"ok": True}

    sender = heartbeat.Sender("primary", httpapi.Target.peer("https://standby:8300"), KEY, HB,
                              heartbeat.StateStore(str(tmp_path / "s.json")), _collect, timeout=10, post=post)
    stop = threading.Event()
    thread = threading.Thread(target=sender.run, args=(stop, 0.2, 0.05), daemon=True)
    thread.start()
    time.sleep(0.5)
    stop.set()
    thread.join(5)
    full = [t for kind, t in timeouts if kind != "lease"]
    light = [t for kind, t in timeouts if kind == "lease"]
    assert full and light and set(full) == set(light) == {1.0}
    timeouts.clear()  # no lease beats: a heartbeat keeps the sender's own timeout
    stop = threading.Event()
    thread = threading.Thread(target=sender.run, args=(stop, 0.05, None), daemon=True)
    thread.start()
    time.sleep(0.2)
    stop.set()
    thread.join(5)
    assert timeouts and {t for _kind, t in timeouts} == {10}


def test_raise_epoch_holds_against_the_heartbeat_thread_and_never_lowers(tmp_path):
    """The state file's one writer: the epoch raised through the store (the replicator's POST /epoch) holds
    while another thread allocates sequences through the same store; a lower epoch changes nothing."""
    import threading

    store = heartbeat.StateStore(str(tmp_path / "state.json"))
    store.update(epoch=2, sequence=5)
    stop = threading.Event()

    def beats():
        while not stop.is_set():
            store.next_sequence()

    thread = threading.Thread(target=beats)
    thread.start()
    try:
        assert store.raise_epoch(4) == (2, 4)
        assert store.raise_epoch(3) == (4, 4)
    finally:
        stop.set()
        thread.join()
    data = statefile.load(str(tmp_path / "state.json"), {})
    assert data["epoch"] == 4 and data["sequence"] > 5


def test_the_status_counts_the_sessions_connections(tmp_path, receiver):
    store = heartbeat.StateStore(str(tmp_path / "s.json"))
    plain = heartbeat.Sender("primary", receiver.url, KEY, HB, store, _collect, timeout=5)
    plain.send_once()
    assert plain.status()["connections_opened"] is None
    session = httpapi.Session(receiver.url)
    kept = heartbeat.Sender("primary", session, KEY, HB, store, _collect, timeout=5)
    assert kept.send_once()["ok"] and kept.send_once()["ok"]
    # this receiver answers HTTP/1.0 and closes: every beat opened its own connection, and the status says so
    assert kept.status()["connections_opened"] == session.opened_total == 2

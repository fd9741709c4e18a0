"""lab/model_server.py (the lab's model provider for the real gateways) in-process on loopback."""

import json
import threading

import pytest
import requests


@pytest.fixture
def model_server(tmp_path):
    """lab/model_server.py in-process on loopback; 127.0.0.1 is named "standby"."""
    from lab.model_server import Server

    log = tmp_path / "model.jsonl"
    server = Server(("127.0.0.1", 0), {"127.0.0.1": "standby"}, str(log))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", log
    server.shutdown()
    server.server_close()


def test_model_server_answers_deterministically_and_names_the_gateway(model_server):
    url, log = model_server
    request = {"model": "wirebot-lab-model", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>> x "
                                      "<<<END_OPENCLAW_INTERNAL_CONTEXT>>> are you up?"}]}]}
    first = requests.post(f"{url}/v1/chat/completions", json=request, timeout=5)
    second = requests.post(f"{url}/v1/chat/completions", json=request, timeout=5).json()
    body = first.json()
    assert first.status_code == 200 and body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    (choice,) = body["choices"]
    assert choice["message"] == {"role": "assistant",
                                 "content": "Wirebot lab model, via the standby gateway: are you up?"}
    assert second["choices"] == body["choices"] and second["id"] == body["id"]
    assert [json.loads(line)["host"] for line in log.read_text().splitlines()] == ["standby", "standby"]
    models = requests.get(f"{url}/v1/models", timeout=5).json()
    assert [m["id"] for m in models["data"]] == ["wirebot-lab-model"]


def test_model_server_streams_server_sent_events(model_server):
    url, _ = model_server
    request = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hello"}]}
    resp = requests.post(f"{url}/v1/chat/completions", json=request, timeout=5)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "text/event-stream"
    events = [line[len("data: "):] for line in resp.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "Wirebot lab model, via the standby gateway: hello"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("body", [b"{oops", b"{}", json.dumps({"model": "m", "messages": []}).encode(),
                                  json.dumps({"model": "m", "messages": [{"content": "x"}]}).encode()])
def test_model_server_rejects_malformed_chat(model_server, body):
    url, _ = model_server
    resp = requests.post(f"{url}/v1/chat/completions", data=body, timeout=5)
    assert resp.status_code == 400 and resp.json()["error"]["message"]

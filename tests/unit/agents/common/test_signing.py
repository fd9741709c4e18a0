"""wirebot.common.signing: signature ok / bad / stale / replayed / missing / malformed; bound to purpose,
direction, method and path; key loading."""

import pytest
from wirebot.common import signing
from wirebot.common.config import ConfigError

KEY = bytes(range(32))
BODY = b'{"node": "primary"}'
HB = signing.Binding("heartbeat", "primary", "standby")


def _headers(sequence=5, now=1000.0, body=BODY, key=KEY, binding=HB, method="POST", path="/heartbeat"):
    return signing.signed_headers(key, binding, method, path, body, sequence, now=now)


def _verifier(last_sequence=0, binding=HB):
    return signing.Verifier(KEY, 60, binding, last_sequence=last_sequence)


def test_valid_signature_returns_sequence_and_advances():
    verifier = _verifier()
    assert verifier.verify("POST", "/heartbeat", _headers(5), BODY, now=1000.0) == 5
    assert verifier.last_sequence == 5


def test_header_names_are_case_insensitive():
    headers = {k.lower(): v for k, v in _headers().items()}
    assert _verifier().verify("POST", "/heartbeat", headers, BODY, now=1000.0) == 5


def test_sign_matches_documented_construction():
    import hashlib
    import hmac
    head = b"wirebot/2\nheartbeat\nprimary\nstandby\nPOST\n/heartbeat\n12.5\n7\n"
    expected = hmac.new(KEY, head + BODY, hashlib.sha256).hexdigest()
    assert signing.sign(KEY, HB, "POST", "/heartbeat", BODY, "12.5", 7) == expected


@pytest.mark.parametrize("mutate", ["body", "key", "sequence", "timestamp"])
def test_bad_signature(mutate):
    headers = _headers()
    body = BODY
    if mutate == "body":
        body = BODY + b" "
    elif mutate == "key":
        headers = _headers(key=bytes(32))
    elif mutate == "sequence":
        headers[signing.HDR_SEQUENCE] = "6"
    else:
        headers[signing.HDR_TIMESTAMP] = "1000.5"
    verifier = _verifier()
    with pytest.raises(signing.SignatureError) as info:
        verifier.verify("POST", "/heartbeat", headers, body, now=1000.0)
    assert info.value.reason == "bad-signature"
    assert verifier.last_sequence == 0


@pytest.mark.parametrize("offset", [-61, 61, 3600])
def test_stale(offset):
    with pytest.raises(signing.SignatureError) as info:
        _verifier().verify("POST", "/heartbeat", _headers(now=1000.0), BODY, now=1000.0 + offset)
    assert info.value.reason == "stale"


def test_within_window_accepted_both_directions():
    verifier = _verifier()
    assert verifier.verify("POST", "/heartbeat", _headers(1, now=1000.0), BODY, now=1059.0) == 1
    assert verifier.verify("POST", "/heartbeat", _headers(2, now=1000.0), BODY, now=941.0) == 2


def test_replayed_same_and_lower_sequence():
    verifier = _verifier(10)
    for seq in (10, 3):
        with pytest.raises(signing.SignatureError) as info:
            verifier.verify("POST", "/heartbeat", _headers(seq), BODY, now=1000.0)
        assert info.value.reason == "replayed"
    assert verifier.verify("POST", "/heartbeat", _headers(11), BODY, now=1000.0) == 11


@pytest.mark.parametrize("drop", [signing.HDR_TIMESTAMP, signing.HDR_SEQUENCE, signing.HDR_SIGNATURE])
def test_missing_headers(drop):
    headers = _headers()
    del headers[drop]
    with pytest.raises(signing.SignatureError) as info:
        _verifier().verify("POST", "/heartbeat", headers, BODY, now=1000.0)
    assert info.value.reason == "missing"


@pytest.mark.parametrize("field,value", [(signing.HDR_SEQUENCE, "x"), (signing.HDR_TIMESTAMP, "abc"),
                                         (signing.HDR_SEQUENCE, "-1")])
def test_malformed(field, value):
    headers = _headers()
    headers[field] = value
    with pytest.raises(signing.SignatureError) as info:
        _verifier().verify("POST", "/heartbeat", headers, BODY, now=1000.0)
    assert info.value.reason == "malformed"


def test_next_sequence_increases_across_restarts():
    assert signing.next_sequence(0, now=1000.0) == 1000000
    assert signing.next_sequence(2000000, now=1000.0) == 2000001
    first = signing.next_sequence(0, now=1000.0)
    assert signing.next_sequence(0, now=1000.5) > first


def test_load_key(tmp_path):
    path = tmp_path / "k"
    path.write_text(KEY.hex() + "\n")
    assert signing.load_key(str(path)) == KEY


@pytest.mark.parametrize("content,needle", [(None, "not found"), ("zz", "hex"), ("00" * 16, "at least")])
def test_load_key_errors(tmp_path, content, needle):
    path = tmp_path / "k"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as info:
        signing.load_key(str(path))
    assert str(path) in str(info.value) and needle in str(info.value)


@pytest.mark.parametrize("binding,method,path", [
    (signing.Binding("control", "primary", "standby"), "POST", "/heartbeat"),   # another purpose
    (signing.Binding("heartbeat", "standby", "primary"), "POST", "/heartbeat"),  # the other direction
    (signing.Binding("heartbeat", "primary", "standby2"), "POST", "/heartbeat"),  # another receiver
    (HB, "POST", "/activate"),                                                  # another endpoint
    (HB, "GET", "/heartbeat"),                                                  # another method
])
def test_a_message_made_for_one_purpose_direction_and_endpoint_verifies_nowhere_else(binding, method, path):
    """The same key, body, timestamp and sequence: only the exact (purpose, sender, receiver, method, path)
    the message was made for verifies it."""
    headers = _headers(binding=binding, method=method, path=path)
    verifier = _verifier()
    with pytest.raises(signing.SignatureError) as info:
        verifier.verify("POST", "/heartbeat", headers, BODY, now=1000.0)
    assert info.value.reason == "bad-signature" and verifier.last_sequence == 0
    assert signing.Verifier(KEY, 60, binding).verify(method, path, headers, BODY, now=1000.0) == 5


def test_bindings_are_checked():
    with pytest.raises(ValueError):
        signing.Verifier(KEY, 60, signing.Binding("anything", "a", "b"))
    with pytest.raises(ValueError):
        signing.sign(KEY, signing.Binding("control", "", "b"), "POST", "/x", b"", "1", 1)

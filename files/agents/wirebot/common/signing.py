"""HMAC-SHA256 signing of the agents' messages, bound to their purpose, direction and endpoint.

Headers: X-Wirebot-Timestamp (unix seconds as a decimal string), X-Wirebot-Sequence (int),
X-Wirebot-Signature (hex HMAC-SHA256). The signed text is

    "wirebot/2\\n{purpose}\\n{sender}\\n{receiver}\\n{METHOD}\\n{path}\\n{timestamp}\\n{sequence}\\n" + body

so a message made for one purpose (``heartbeat``, ``control``), one direction (sender -> receiver node
names) and one endpoint (method + path) verifies nowhere else, even under the same key. Each purpose has
its own key: the heartbeat key is shared by the pair (the operator's ``agent-hmac.key``); the control key
is made on each host and never leaves it (see docs/security.md, "The agents' channel").
A receiver refuses a message outside its clock window ("stale") or with a sequence not greater than
the last accepted one ("replayed").
"""

import binascii
import collections
import hashlib
import hmac
import time

from wirebot.common.config import ConfigError

HDR_TIMESTAMP = "X-Wirebot-Timestamp"
HDR_SEQUENCE = "X-Wirebot-Sequence"
HDR_SIGNATURE = "X-Wirebot-Signature"
MIN_KEY_BYTES = 32
VERSION = "wirebot/2"
HEARTBEAT, CONTROL = "heartbeat", "control"
PURPOSES = (HEARTBEAT, CONTROL)

# What a message is for: its purpose and its direction (node names). Method and path come with each message.
Binding = collections.namedtuple("Binding", "purpose sender receiver")


class SignatureError(Exception):
    """A signed message was refused; ``reason`` is one of
    "missing", "malformed", "bad-signature", "stale", "replayed"."""

    def __init__(self, reason, message=""):
        super().__init__(message or reason)
        self.reason = reason


def _check_binding(binding):
    if binding.purpose not in PURPOSES or not binding.sender or not binding.receiver:
        raise ValueError(f"a binding needs a purpose in {PURPOSES}, a sender and a receiver: {binding!r}")


def sign(key, binding, method, path, body, timestamp, sequence):
    """Hex HMAC-SHA256 of ``key`` over the signed text above."""
    _check_binding(binding)
    head = "\n".join([VERSION, binding.purpose, binding.sender, binding.receiver, method.upper(), path,
                      str(timestamp), str(int(sequence))]) + "\n"
    return hmac.new(key, head.encode("utf-8") + bytes(body), hashlib.sha256).hexdigest()


def signed_headers(key, binding, method, path, body, sequence, now=None):
    """The three X-Wirebot-* headers for ``body`` sent to ``method path`` at ``now`` (default: now)."""
    timestamp = f"{time.time() if now is None else now:.3f}"
    return {
        HDR_TIMESTAMP: timestamp,
        HDR_SEQUENCE: str(int(sequence)),
        HDR_SIGNATURE: sign(key, binding, method, path, body, timestamp, sequence),
    }


def next_sequence(last, now=None):
    """Next sender sequence: max(last + 1, milliseconds since the epoch), so it keeps increasing
    across sender restarts without persisting anything."""
    now = time.time() if now is None else now
    return max(int(last) + 1, int(now * 1000))


def _header(headers, name):
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        for key in headers.keys():
            if key.lower() == lowered:
                return headers[key]
    return value


class Verifier:
    """Verifies messages of one ``binding`` (purpose, sender, receiver): signature over the request's
    method and path, clock window and strictly increasing sequence.

    ``last_sequence`` is the last accepted sequence; persist it so a restart refuses replays.
    """

    def __init__(self, key, window_seconds, binding, last_sequence=0):
        _check_binding(binding)
        self.key = key
        self.binding = binding
        self.window_seconds = float(window_seconds)
        self.last_sequence = int(last_sequence or 0)

    def verify(self, method, path, headers, body, now=None):
        """Return the message's sequence, or raise SignatureError. Updates last_sequence on success."""
        timestamp = _header(headers, HDR_TIMESTAMP)
        sequence_text = _header(headers, HDR_SEQUENCE)
        signature = _header(headers, HDR_SIGNATURE)
        if not timestamp or not sequence_text or not signature:
            raise SignatureError("missing", "missing X-Wirebot-* signature headers")
        try:
            sent_at = float(timestamp)
            sequence = int(sequence_text)
        except ValueError:
            raise SignatureError("malformed", "timestamp or sequence is not a number") from None
        if sent_at != sent_at or sequence < 0:  # NaN or negative
            raise SignatureError("malformed", "timestamp or sequence out of range")
        expected = sign(self.key, self.binding, method, path, body, timestamp, sequence)
        if not hmac.compare_digest(expected.encode(), str(signature).strip().lower().encode()):
            raise SignatureError("bad-signature", f"signature does not match a {self.binding.purpose} message "
                                                  f"{self.binding.sender} -> {self.binding.receiver} "
                                                  f"for {method.upper()} {path}")
        now = time.time() if now is None else now
        if abs(now - sent_at) > self.window_seconds:
            raise SignatureError("stale", f"timestamp {now - sent_at:.0f}s from local clock "
                                          f"(window {self.window_seconds:.0f}s)")
        if sequence <= self.last_sequence:
            raise SignatureError("replayed", f"sequence {sequence} <= last accepted {self.last_sequence}")
        self.last_sequence = sequence
        return sequence


def load_key(path):
    """Read an HMAC key (hex text) from ``path``; ConfigError if missing, not hex or short."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read().strip()
    except FileNotFoundError:
        raise ConfigError(f"{path}: HMAC key file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read HMAC key file: {exc.strerror or exc}") from None
    try:
        key = binascii.unhexlify(text)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{path}: HMAC key file must contain hex text") from None
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"{path}: HMAC key is {len(key)} bytes, need at least {MIN_KEY_BYTES}")
    return key

"""HMAC-SHA256 signing of the agents' control channel (heartbeats and every POST).

Headers: X-Wirebot-Timestamp (unix seconds as a decimal string), X-Wirebot-Sequence (int),
X-Wirebot-Signature (hex HMAC-SHA256 over ``f"{timestamp}\\n{sequence}\\n".encode() + body``).
A receiver refuses a message outside its clock window ("stale") or with a sequence not greater than
the last accepted one ("replayed").
"""

import binascii
import hashlib
import hmac
import time

from .config import ConfigError

HDR_TIMESTAMP = "X-Wirebot-Timestamp"
HDR_SEQUENCE = "X-Wirebot-Sequence"
HDR_SIGNATURE = "X-Wirebot-Signature"
MIN_KEY_BYTES = 32


class SignatureError(Exception):
    """A signed message was refused; ``reason`` is one of
    "missing", "malformed", "bad-signature", "stale", "replayed"."""

    def __init__(self, reason, message=""):
        super().__init__(message or reason)
        self.reason = reason


def sign(key, body, timestamp, sequence):
    """Hex HMAC-SHA256 of ``key`` over "{timestamp}\\n{sequence}\\n" + body."""
    message = f"{timestamp}\n{int(sequence)}\n".encode() + bytes(body)
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def signed_headers(key, body, sequence, now=None):
    """The three X-Wirebot-* headers for ``body`` sent at ``now`` (default: time.time())."""
    timestamp = f"{time.time() if now is None else now:.3f}"
    return {
        HDR_TIMESTAMP: timestamp,
        HDR_SEQUENCE: str(int(sequence)),
        HDR_SIGNATURE: sign(key, body, timestamp, sequence),
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
    """Verifies signed messages: signature, clock window and strictly increasing sequence.

    ``last_sequence`` is the last accepted sequence; persist it so a restart refuses replays.
    """

    def __init__(self, key, window_seconds, last_sequence=0):
        self.key = key
        self.window_seconds = float(window_seconds)
        self.last_sequence = int(last_sequence or 0)

    def verify(self, headers, body, now=None):
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
        expected = sign(self.key, body, timestamp, sequence)
        if not hmac.compare_digest(expected.encode(), str(signature).strip().lower().encode()):
            raise SignatureError("bad-signature", "signature does not match")
        now = time.time() if now is None else now
        if abs(now - sent_at) > self.window_seconds:
            raise SignatureError("stale", f"timestamp {now - sent_at:.0f}s from local clock "
                                          f"(window {self.window_seconds:.0f}s)")
        if sequence <= self.last_sequence:
            raise SignatureError("replayed", f"sequence {sequence} <= last accepted {self.last_sequence}")
        self.last_sequence = sequence
        return sequence


def load_key(path):
    """Read the shared HMAC key (hex text) from ``path``; ConfigError if missing, not hex or short."""
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

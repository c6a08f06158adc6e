"""Telnyx webhook signatures: Ed25519 over `"{telnyx-timestamp}|{raw body}"`.

Verified with `cryptography` (no PyNaCl). Order and messages follow the plugin: the
signature first ("Invalid signature"), then the 300 s window ("Timestamp too old"), so a
forged old request never learns that its timestamp was the problem
(docs/carriers.md, "Telnyx: signatures").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from providers.base import VerifyResult, WebhookRequest

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"
# The SDK's window: |now − ts| ≤ 300 s, past or future (telnyx/lib/webhook_verification.py).
TOLERANCE_SECONDS = 300
MISSING_KEY = "Missing telnyx.publicKey (configure to verify webhooks)"
_TIMESTAMP = re.compile(r"[0-9]{1,15}")


def load_public_key(text: str) -> Ed25519PublicKey:
    """The portal's base64 of the raw 32-byte key, base64 DER SPKI, or PEM; ValueError if not."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = load_pem_public_key(text.encode())
        else:
            raw = base64.b64decode("".join(text.split()), validate=True)
            key = (
                Ed25519PublicKey.from_public_bytes(raw)
                if len(raw) == 32
                else load_der_public_key(raw)
            )
    except (binascii.Error, ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"not an Ed25519 public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def canonical_signature(value: str) -> tuple[bytes, str] | None:
    """(raw 64 bytes, padded standard base64) from Base64 or Base64URL; None if malformed."""
    text = value.strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 64:
        return None
    return raw, base64.b64encode(raw).decode("ascii")


def verify(request: WebhookRequest, key: Ed25519PublicKey | None, *, now: float) -> VerifyResult:
    if key is None:
        return VerifyResult(False, MISSING_KEY)  # fail closed, as the plugin does
    signature = request.header(SIGNATURE_HEADER)
    timestamp = request.header(TIMESTAMP_HEADER)
    if not signature or not timestamp:
        return VerifyResult(False, "Missing signature or timestamp header")
    if not _TIMESTAMP.fullmatch(timestamp.strip()):
        return VerifyResult(False, "Invalid timestamp header")
    decoded = canonical_signature(signature)
    if decoded is None or not _valid(key, decoded[0], timestamp, request.body):
        return VerifyResult(False, "Invalid signature")
    if abs(now - int(timestamp.strip())) > TOLERANCE_SECONDS:
        return VerifyResult(False, "Timestamp too old")
    return VerifyResult(True, request_key=request_key(timestamp, decoded[1], request.body))


def _valid(key: Ed25519PublicKey, signature: bytes, timestamp: str, body: bytes) -> bool:
    # The header value is signed verbatim, then "|", then the exact raw body bytes.
    try:
        key.verify(signature, timestamp.encode() + b"|" + body)
    except InvalidSignature:
        return False
    return True


def request_key(timestamp: str, signature_b64: str, body: bytes) -> str:
    """Replay identity; the canonical signature makes Base64 and Base64URL one request."""
    digest = hashlib.sha256(f"{timestamp}\n{signature_b64}\n".encode() + body).hexdigest()
    return f"telnyx:{digest}"

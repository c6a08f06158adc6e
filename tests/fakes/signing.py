"""Webhook signatures as each carrier computes them: the one signing helper of the suite.

Used by the carrier drivers (tests/fakes/carriers/) and by the adapter fakes
(tests/fakes/<carrier>/helpers.py) alike, so every test signs a request the same way:

* Twilio: X-Twilio-Signature, computed by the twilio SDK's own RequestValidator.
* Plivo: X-Plivo-Signature-V3 by the plivo SDK's signature_v3 functions, and the older
  X-Plivo-Signature-V2 (HMAC-SHA256 of the URL without its query, then the nonce).
* Telnyx: Ed25519 over `timestamp|body` with a key a test generates; its public key in the
  three encodings the config accepts (raw base64, DER base64, PEM).

No secret here is real; every token is passed in by the caller.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import parse_qs, urlsplit, urlunsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from plivo.utils import signature_v3
from twilio.request_validator import RequestValidator

# == Twilio ===================================================================================


class TwilioParams(dict[str, list[str]]):
    """Form fields in the shape RequestValidator reads (it calls getlist())."""

    def getlist(self, name: str) -> list[str]:
        return self[name]


def twilio_sign(url: str, body: bytes, token: str) -> str:
    """X-Twilio-Signature for a form body posted to `url`, as Twilio computes it."""
    params = TwilioParams(parse_qs(body.decode("utf-8"), keep_blank_values=True))
    return str(RequestValidator(token).compute_signature(url, params))


# == Plivo ====================================================================================

#: What plivo_sign_v3 answers for a body the SDK cannot sign: a signature that never matches.
UNSIGNABLE = "bm90IHNpZ25hYmxl"


def plivo_sign_v3(url: str, body: bytes, nonce: str, token: str, *, method: str = "POST") -> str:
    """X-Plivo-Signature-V3 of a request, computed with the plivo SDK's own V3 functions.

    The base URL is handed to get_signature_v3 as text, as the SDK's validate_v3_signature
    does (as bytes the SDK would read it as Latin-1, and non-ASCII words would not match).
    A body that is not UTF-8 (or a non-ASCII query the SDK cannot encode) gets UNSIGNABLE.
    """
    try:
        if method == "GET":
            base = signature_v3.construct_get_url(url, {})
        else:
            params = parse_qs(body.decode("utf-8"), keep_blank_values=True)
            base = signature_v3.construct_post_url(url, params)
        text = base.decode("utf-8")
    except UnicodeError:
        return UNSIGNABLE
    return signature_v3.get_signature_v3(token.encode(), text, nonce.encode()).decode()


def plivo_sign_v2(url: str, nonce: str, token: str) -> str:
    """X-Plivo-Signature-V2: HMAC-SHA256 of the URL without its query, then the nonce."""
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    digest = hmac.new(token.encode(), (base + nonce).encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def plivo_v3_headers(signature: str, nonce: str) -> dict[str, str]:
    return {"X-Plivo-Signature-V3": signature, "X-Plivo-Signature-V3-Nonce": nonce}


def plivo_v2_headers(signature: str, nonce: str) -> dict[str, str]:
    return {"X-Plivo-Signature-V2": signature, "X-Plivo-Signature-V2-Nonce": nonce}


# == Telnyx ===================================================================================


def telnyx_key() -> Ed25519PrivateKey:
    """A fresh signing key: the test plays Telnyx and configures its public half."""
    return Ed25519PrivateKey.generate()


def telnyx_sign(key: Ed25519PrivateKey, timestamp: str, body: bytes) -> str:
    """telnyx-signature-ed25519: base64 of the Ed25519 signature over `timestamp|body`."""
    return base64.b64encode(key.sign(timestamp.encode() + b"|" + body)).decode()


def telnyx_headers(
    key: Ed25519PrivateKey, body: bytes, timestamp: str | None = None
) -> dict[str, str]:
    """The two headers of a signed Telnyx webhook; the timestamp is now unless given."""
    stamp = timestamp if timestamp is not None else str(int(time.time()))
    return {"telnyx-signature-ed25519": telnyx_sign(key, stamp, body), "telnyx-timestamp": stamp}


def telnyx_public_key_b64(key: Ed25519PrivateKey) -> str:
    """The public key as the Telnyx portal shows it: 32 raw bytes, base64."""
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def telnyx_public_key_der_b64(key: Ed25519PrivateKey) -> str:
    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def telnyx_public_key_pem(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()

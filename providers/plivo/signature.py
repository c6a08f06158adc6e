"""Plivo webhook signatures: X-Plivo-Signature-V3 (preferred) and the legacy V2.

V3 is HMAC-SHA256(auth token, base + "." + nonce), base64, where the base is the called URL
with its query sorted, plus the POST parameters sorted and concatenated — the construction of
plivo 4.63's `plivo.utils.signature_v3` (docs/carriers.md, "Plivo: signatures"), re-done
here so that we can (a) derive a replay key from the very base string that was signed and
(b) compare in constant time. Tests check our result against the SDK's validator on
generated input.
V2 signs only `scheme://host/path` + nonce (`plivo.utils.validate_signature`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from providers.base import VerifyResult, WebhookRequest
from providers.webhook_security import (
    SecuritySettings,
    public_base_url,
    reconstruct_url,
    skip_key,
)

V3_HEADERS = ("x-plivo-signature-v3", "x-plivo-signature-v3-nonce")
V2_HEADERS = ("x-plivo-signature-v2", "x-plivo-signature-v2-nonce")
MISSING = "Missing Plivo signature headers (V3 or V2)"
INVALID_V3 = "Invalid Plivo V3 signature"
INVALID_V2 = "Invalid Plivo V2 signature"
UNSUPPORTED_METHOD = "Unsupported HTTP method for Plivo V3 signature: {method}"

Params = Mapping[str, list[str]]


def verify(request: WebhookRequest, settings: Mapping[str, Any], auth_token: str) -> VerifyResult:
    """V3 when its header pair is present, else V2; skip mode still yields a replay key."""
    security = SecuritySettings.from_settings(settings)
    if security.skip_signature_verification:
        return VerifyResult(ok=True, request_key=skip_key("plivo", request))
    url = signed_url(request, security)
    v3 = _header_pair(request, V3_HEADERS)
    if v3 is not None:
        return _verify_v3(request, url, auth_token, signatures=v3[0], nonce=v3[1])
    v2 = _header_pair(request, V2_HEADERS)
    if v2 is not None:
        return _verify_v2(url, auth_token, signature=v2[0], nonce=v2[1])
    return VerifyResult(ok=False, reason=MISSING)


def signed_url(request: WebhookRequest, security: SecuritySettings) -> str:
    """publicUrl's origin with the request path and query, else the reconstructed URL.

    docs/carriers.md, "Plivo: signatures".
    """
    if security.public_url:
        return public_base_url(request, security)
    return reconstruct_url(request, security)


def _header_pair(request: WebhookRequest, names: tuple[str, str]) -> tuple[str, str] | None:
    signature, nonce = (request.header(name) or "" for name in names)
    return (signature, nonce) if signature.strip() and nonce else None


# -- V3 ------------------------------------------------------------------------------------
def _verify_v3(
    request: WebhookRequest, url: str, auth_token: str, *, signatures: str, nonce: str
) -> VerifyResult:
    method = request.method.upper()
    if method not in ("GET", "POST"):
        return VerifyResult(ok=False, reason=UNSUPPORTED_METHOD.format(method=request.method))
    post_params = form_params(request.body) if method == "POST" else {}
    if post_params is None:  # a body that is not form data cannot match what Plivo signed
        return VerifyResult(ok=False, reason=INVALID_V3)
    base = v3_base(method, url, post_params)
    expected = v3_signature(auth_token, base, nonce).encode()
    # The header may carry several comma-separated signatures (key rotation); any match passes.
    if not any(
        hmac.compare_digest(candidate.strip().encode(), expected)
        for candidate in signatures.split(",")
    ):
        return VerifyResult(ok=False, reason=INVALID_V3)
    return VerifyResult(ok=True, request_key=f"plivo:v3:{_digest(base, nonce)}")


def v3_base(method: str, url: str, post_params: Params) -> str:
    """The string Plivo signs before the nonce (SDK construct_get_url / construct_post_url)."""
    base = url_without_query(url)
    query = _query_string(parse_qs(urlsplit(url).query, keep_blank_values=True))
    if method == "GET" or not post_params:
        return f"{base}?{query}" if query else base
    # With POST parameters the "?" is always there; "." only separates a non-empty query.
    separator = "." if query else ""
    return f"{base}?{query}{separator}{_post_string(post_params)}"


def v3_signature(auth_token: str, base: str, nonce: str) -> str:
    return _hmac_b64(auth_token, f"{base}.{nonce}")


def _query_string(params: Params) -> str:
    """`k=v` pairs joined by `&`, sorted by key, then value (code-point order, as the SDK)."""
    return "&".join(f"{key}={value}" for key in sorted(params) for value in sorted(params[key]))


def _post_string(params: Params) -> str:
    return "".join(f"{key}{value}" for key in sorted(params) for value in sorted(params[key]))


def form_params(body: bytes) -> dict[str, list[str]] | None:
    """A form-encoded body as lists per key (repeated keys keep every value); None if not form."""
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except ValueError:  # UnicodeDecodeError included
        return None


# -- V2 ------------------------------------------------------------------------------------
def _verify_v2(url: str, auth_token: str, *, signature: str, nonce: str) -> VerifyResult:
    base = url_without_query(url)
    expected = base64.b64decode(v2_signature(auth_token, url, nonce))
    # Both sides compared as decoded bytes: base64 spelling differences are not a mismatch.
    try:
        received = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        return VerifyResult(ok=False, reason=INVALID_V2)
    if not hmac.compare_digest(received, expected):
        return VerifyResult(ok=False, reason=INVALID_V2)
    # The query is not signed, so query-only variants of one request share this key.
    return VerifyResult(ok=True, request_key=f"plivo:v2:{_digest(base, nonce)}")


def v2_signature(auth_token: str, url: str, nonce: str) -> str:
    """No separator between URL and nonce, and no parameters (plivo.utils.validate_signature)."""
    return _hmac_b64(auth_token, url_without_query(url) + nonce)


# -- helpers -------------------------------------------------------------------------------
def url_without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _hmac_b64(key: str, message: str) -> str:
    digest = hmac.new(key.encode(), message.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _digest(base: str, nonce: str) -> str:
    return hashlib.sha256(f"{base}\n{nonce}".encode()).hexdigest()

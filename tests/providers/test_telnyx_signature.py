"""Telnyx Ed25519 webhook verification: fixed vectors, key formats, order, replay keys.

docs/carriers.md, "Telnyx: signatures" and "Test vectors".
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from providers.errors import ProviderNotConfigured
from providers.webhook_security import skip_key
from tests.fakes.signing import (
    telnyx_public_key_b64,
    telnyx_public_key_der_b64,
    telnyx_public_key_pem,
    telnyx_sign,
)
from tests.fakes.telnyx.helpers import NOW, provider, signed_webhook, webhook

FIXTURES = Path(__file__).resolve().parents[1] / "fakes" / "telnyx"
K1_BODY = (FIXTURES / "k1_call_initiated.json").read_bytes()
K1_KEY = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
K1_TS = "1751371200"
K1_SIG = "3P0FEsC6SxDnvm/i6WKsmJ9A7KfrTzkC8IXkH2kg5HOoDsK7HqxOmARlATMq/RL5wHUokDVnvdwVT5Qm66PsBw=="
K2_BODY = (FIXTURES / "k2_call_hangup.json").read_bytes()
K2_KEY = "IVL40Zt5HSRFMkLhXy6rbLfP+ntqXtMAl5YOBpiB2xI="
K2_TS = "1751371260"
K2_SIG = "mbauwZGtthc6RdYBKXXLhjgQFL/4HAyVooYqXmcu3FgEOD058Wds7ZXR7DAlIJGt9poHmUXQ34hMCBJ68e5TAw=="


def _urlsafe(signature: str) -> str:
    return base64.urlsafe_b64encode(base64.b64decode(signature)).decode().rstrip("=")


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


# -- the SDK-computed vectors (docs/carriers.md, "Test vectors") -------------------------------
@pytest.mark.parametrize(
    ("body", "public_key", "ts", "sig"),
    [(K1_BODY, K1_KEY, K1_TS, K1_SIG), (K2_BODY, K2_KEY, K2_TS, K2_SIG)],
    ids=["K1", "K2"],
)
def test_vectors_verify(body: bytes, public_key: str, ts: str, sig: str) -> None:
    result = provider(publicKey=public_key, now=int(ts) + 10).verify_webhook(
        webhook(body, signature=sig, timestamp=ts)
    )
    assert result.ok, result.reason
    digest = hashlib.sha256(f"{ts}\n{sig}\n".encode() + body).hexdigest()
    assert result.request_key == f"telnyx:{digest}"


def test_vector_keys_derive_from_their_seeds() -> None:
    seed = bytes(range(32))
    assert telnyx_public_key_b64(Ed25519PrivateKey.from_private_bytes(seed)) == K1_KEY
    assert telnyx_public_key_b64(Ed25519PrivateKey.from_private_bytes(b"\x42" * 32)) == K2_KEY


def test_vector_tampered_body_is_an_invalid_signature() -> None:
    body = K1_BODY.replace(b"+14155550100", b"+14155550101")
    result = provider(publicKey=K1_KEY).verify_webhook(
        webhook(body, signature=K1_SIG, timestamp=K1_TS)
    )
    assert (result.ok, result.reason) == (False, "Invalid signature")


def test_vector_tampered_timestamp_is_an_invalid_signature() -> None:
    result = provider(publicKey=K1_KEY).verify_webhook(
        webhook(K1_BODY, signature=K1_SIG, timestamp="1751371201")
    )
    assert (result.ok, result.reason) == (False, "Invalid signature")


def test_vector_signed_with_another_key_is_invalid() -> None:
    result = provider(publicKey=K2_KEY).verify_webhook(
        webhook(K1_BODY, signature=K1_SIG, timestamp=K1_TS)
    )
    assert (result.ok, result.reason) == (False, "Invalid signature")


@pytest.mark.parametrize(("offset", "ok"), [(300, True), (-300, True), (301, False), (-301, False)])
def test_window_is_300_seconds_either_way(offset: int, ok: bool) -> None:
    result = provider(publicKey=K1_KEY, now=int(K1_TS) + offset).verify_webhook(
        webhook(K1_BODY, signature=K1_SIG, timestamp=K1_TS)
    )
    assert result.ok is ok
    assert ok or result.reason == "Timestamp too old"


# -- key formats, signature encodings ------------------------------------------------------------
@pytest.mark.parametrize(
    "fmt",
    [telnyx_public_key_b64, telnyx_public_key_der_b64, telnyx_public_key_pem],
    ids=["raw-base64", "der-spki-base64", "pem"],
)
def test_public_key_formats(key: Ed25519PrivateKey, fmt: object) -> None:
    body = b'{"data":{"event_type":"call.answered"}}'
    ts = str(int(NOW))
    result = provider(publicKey=fmt(key)).verify_webhook(  # type: ignore[operator]
        signed_webhook(key, body, ts)
    )
    assert result.ok, result.reason


def test_invalid_public_key_fails_at_startup() -> None:
    with pytest.raises(ProviderNotConfigured, match="telnyx.publicKey is invalid"):
        provider(publicKey="bm90LWEta2V5")


def test_base64url_signature_is_accepted_with_the_same_request_key() -> None:
    standard = provider(publicKey=K1_KEY).verify_webhook(
        webhook(K1_BODY, signature=K1_SIG, timestamp=K1_TS)
    )
    urlsafe = provider(publicKey=K1_KEY).verify_webhook(
        webhook(K1_BODY, signature=_urlsafe(K1_SIG), timestamp=K1_TS)
    )
    assert "-" in _urlsafe(K1_SIG) or "_" in _urlsafe(K1_SIG)
    assert standard.ok and urlsafe.ok
    assert urlsafe.request_key == standard.request_key


@pytest.mark.parametrize("sig", ["not base64!", base64.b64encode(b"\x00" * 63).decode(), ""])
def test_malformed_signatures(sig: str) -> None:
    result = provider(publicKey=K1_KEY).verify_webhook(
        webhook(K1_BODY, signature=sig or None, timestamp=K1_TS)
    )
    assert not result.ok
    assert result.reason in ("Invalid signature", "Missing signature or timestamp header")


# -- order: signature first, then the window ----------------------------------------------------
def test_old_timestamp_with_valid_signature_is_too_old(key: Ed25519PrivateKey) -> None:
    ts = str(int(NOW) - 3600)
    body = b'{"data":{"event_type":"call.hangup"}}'
    result = provider(publicKey=telnyx_public_key_b64(key)).verify_webhook(
        signed_webhook(key, body, ts)
    )
    assert (result.ok, result.reason) == (False, "Timestamp too old")


def test_old_timestamp_with_invalid_signature_is_an_invalid_signature(
    key: Ed25519PrivateKey,
) -> None:
    ts = str(int(NOW) - 3600)
    body = b'{"data":{"event_type":"call.hangup"}}'
    forged = telnyx_sign(Ed25519PrivateKey.generate(), ts, body)
    result = provider(publicKey=telnyx_public_key_b64(key)).verify_webhook(
        webhook(body, signature=forged, timestamp=ts)
    )
    assert (result.ok, result.reason) == (False, "Invalid signature")


# -- headers, missing key, skip mode -----------------------------------------------------------
def test_missing_public_key_fails_closed() -> None:
    result = provider(publicKey=None).verify_webhook(
        webhook(K1_BODY, signature=K1_SIG, timestamp=K1_TS)
    )
    assert (result.ok, result.reason) == (
        False,
        "Missing telnyx.publicKey (configure to verify webhooks)",
    )
    assert result.request_key is None


@pytest.mark.parametrize(("sig", "ts"), [(None, K1_TS), (K1_SIG, None), (None, None)])
def test_missing_headers(sig: str | None, ts: str | None) -> None:
    result = provider(publicKey=K1_KEY).verify_webhook(
        webhook(K1_BODY, signature=sig, timestamp=ts)
    )
    assert (result.ok, result.reason) == (False, "Missing signature or timestamp header")


@pytest.mark.parametrize("ts", ["1751371200.5", "abc", "-1751371200", "+1751371200", "1_751"])
def test_non_integer_timestamp(ts: str) -> None:
    result = provider(publicKey=K1_KEY).verify_webhook(
        webhook(K1_BODY, signature=K1_SIG, timestamp=ts)
    )
    assert (result.ok, result.reason) == (False, "Invalid timestamp header")


def test_skip_mode_accepts_and_keys_the_request() -> None:
    adapter = provider(publicKey=None, skipSignatureVerification=True)
    request = webhook(K1_BODY)
    result = adapter.verify_webhook(request)
    assert result.ok and result.request_key == skip_key("telnyx", request)
    assert result.request_key.startswith("telnyx:skip:")


def test_skip_mode_ignores_an_unusable_key() -> None:
    adapter = provider(publicKey="garbage", skipSignatureVerification=True)
    assert adapter.verify_webhook(webhook(b"{}")).ok


def test_signature_headers_drive_the_pre_auth_gate() -> None:
    assert provider().signature_headers == (("telnyx-signature-ed25519", "telnyx-timestamp"),)


# -- the official SDK agrees (only when `telnyx[webhooks]` happens to be installed) -------------
def test_sdk_accepts_what_we_accept(
    key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    verification = pytest.importorskip("telnyx.lib.webhook_verification")
    pytest.importorskip("nacl")
    monkeypatch.setattr(verification.time, "time", lambda: NOW)
    ts = str(int(NOW) - 5)
    body = K1_BODY
    cases = [
        (K1_KEY, K1_TS, K1_SIG, K1_BODY),
        (telnyx_public_key_b64(key), ts, telnyx_sign(key, ts, body), body),
        (telnyx_public_key_b64(key), ts, telnyx_sign(key, ts, body), body + b" "),
        (
            telnyx_public_key_b64(key),
            str(int(NOW) - 400),
            telnyx_sign(key, str(int(NOW) - 400), body),
            body,
        ),
    ]
    for public_key, stamp, sig, payload in cases:
        ours = (
            provider(publicKey=public_key)
            .verify_webhook(webhook(payload, signature=sig, timestamp=stamp))
            .ok
        )
        headers = {"Telnyx-Signature-Ed25519": sig, "Telnyx-Timestamp": stamp}
        try:
            verification.verify_webhook_signature(payload, headers, public_key)
        except verification.WebhookVerificationError:
            theirs = False
        else:
            theirs = True
        assert ours is theirs, (stamp, payload[-10:])

"""Plivo V3/V2 webhook signatures: fixed vectors, the SDK as oracle, replay keys.

docs/carriers.md, "Plivo: signatures" and "Test vectors".
"""

from __future__ import annotations

import hashlib
import string
import xml.etree.ElementTree as ET
from urllib.parse import urlencode

from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from plivo.utils import validate_signature, validate_v3_signature
from plivo.utils.signature_v3 import construct_get_url, construct_post_url, get_signature_v3

from providers.base import ReplyContext, Speech
from providers.plivo.signature import v2_signature, v3_base, v3_signature
from providers.webhook_security import skip_key
from tests.fakes.plivo.helpers import NONCE, TOKEN, provider, signed_v2, signed_v3, webhook

P1_URL = "https://voice.example.com/plivo/answer/"
P1_PARAMS = {
    "CallUUID": "d8b7f2a6-0000-4000-8000-000000000001",
    "CallStatus": "in-progress",
    "Direction": "inbound",
    "Event": "StartApp",
    "From": "14155550100",
    "To": "14155550199",
}
P1_SIG = "0On3Mj9N08SaIz8mtDh6xx0U5O4BBUCsJ4jPVNR3vxA="
P2_URL = "https://voice.example.com/plivo/hangup/?tenant=acme&b=2"
P2_PARAMS = {
    "CallUUID": "d8b7f2a6-0000-4000-8000-000000000002",
    "CallStatus": "completed",
    "Direction": "outbound",
    "Event": "Hangup",
    "HangupCause": "NORMAL_CLEARING",
    "Duration": "42",
    "BillDuration": "60",
    "From": "14155550199",
    "To": "14155550100",
}
P2_SIG = "bfQo+DbGhk4OUHv69orPcNLf4k18NSOUjHvFLGqrWLY="
P3_URL = "https://voice.example.com/plivo/ring/?tenant=acme"
P3_PARAMS = {"CallUUID": "d8b7f2a6-0000-4000-8000-000000000003", "CallStatus": "ringing"}
P3_SIG = "rjPLNiHtx6pBAKHjMZq4Trg0s3jHCVSI5v5LdiLIB5g="
P4_URL = "https://voice.example.com/plivo/answer/?tenant=acme"
P4_SIG = "kLRSAD5ANMOexuwj2f59XB//CpjYrr0a4b489vHJ0S4="
V2_SIG = "6LxV/sjjQrJ3a3Ygg+tkMAAwQReN+Nd5JEolYlTD09s="


def _sdk_signature(method: str, url: str, params: dict[str, object], nonce: str = NONCE) -> str:
    base = construct_get_url(url, {}) if method == "GET" else construct_post_url(url, params)
    return get_signature_v3(TOKEN.encode(), base.decode(), nonce.encode()).decode()


# -- fixed vectors (docs/carriers.md, "Test vectors") ----------------------------------------
def test_p1_post_answer_callback() -> None:
    result = provider().verify_webhook(webhook(P1_URL, P1_PARAMS, headers=signed_v3(P1_SIG)))
    assert result.ok and result.request_key and result.request_key.startswith("plivo:v3:")


def test_p1_base_string_is_the_documented_message() -> None:
    base = v3_base("POST", P1_URL, {k: [v] for k, v in P1_PARAMS.items()})
    assert f"{base}.{NONCE}" == (
        "https://voice.example.com/plivo/answer/?CallStatusin-progressCallUUID"
        "d8b7f2a6-0000-4000-8000-000000000001DirectioninboundEventStartAppFrom14155550100"
        "To14155550199.05429567804466091622"
    )


def test_p2_post_with_query_string() -> None:
    assert provider().verify_webhook(webhook(P2_URL, P2_PARAMS, headers=signed_v3(P2_SIG))).ok


def test_p3_get_callback_signs_every_query_parameter() -> None:
    request = webhook(P3_URL, P3_PARAMS, method="GET", headers=signed_v3(P3_SIG))
    assert provider().verify_webhook(request).ok


def test_p4_post_with_empty_params() -> None:
    assert provider().verify_webhook(webhook(P4_URL, {}, headers=signed_v3(P4_SIG))).ok


def test_v2_legacy_vector() -> None:
    result = provider().verify_webhook(webhook(P4_URL, P1_PARAMS, headers=signed_v2(V2_SIG)))
    assert result.ok and result.request_key and result.request_key.startswith("plivo:v2:")


def test_changed_parameter_fails() -> None:
    tampered = {**P1_PARAMS, "CallStatus": "completed"}
    result = provider().verify_webhook(webhook(P1_URL, tampered, headers=signed_v3(P1_SIG)))
    assert (result.ok, result.reason) == (False, "Invalid Plivo V3 signature")


def test_wrong_nonce_fails() -> None:
    request = webhook(P1_URL, P1_PARAMS, headers=signed_v3(P1_SIG, nonce="1"))
    assert not provider().verify_webhook(request).ok


# -- header handling -------------------------------------------------------------------------
def test_any_of_several_comma_separated_signatures_passes() -> None:
    for header in (f"bogus,{P1_SIG}", f"{P1_SIG},bogus", f"bogus, {P1_SIG}"):
        assert provider().verify_webhook(webhook(P1_URL, P1_PARAMS, headers=signed_v3(header))).ok
    assert (
        not provider()
        .verify_webhook(webhook(P1_URL, P1_PARAMS, headers=signed_v3("bogus,other")))
        .ok
    )


def test_missing_headers() -> None:
    for headers in ({}, {"X-Plivo-Signature-V3": P1_SIG}, {"X-Plivo-Signature-V2-Nonce": NONCE}):
        result = provider().verify_webhook(webhook(P1_URL, P1_PARAMS, headers=headers))
        assert (result.ok, result.reason) == (False, "Missing Plivo signature headers (V3 or V2)")


def test_v2_is_the_fallback_when_v3_is_incomplete() -> None:
    headers = {**signed_v2(V2_SIG), "X-Plivo-Signature-V3": P1_SIG}  # no V3 nonce
    assert provider().verify_webhook(webhook(P4_URL, P1_PARAMS, headers=headers)).ok


def test_v3_is_preferred_a_bad_v3_does_not_fall_back_to_v2() -> None:
    headers = {**signed_v2(V2_SIG), **signed_v3("bogus")}
    result = provider().verify_webhook(webhook(P4_URL, P1_PARAMS, headers=headers))
    assert (result.ok, result.reason) == (False, "Invalid Plivo V3 signature")


def test_invalid_v2_signature() -> None:
    for bad in ("not base64!", "AAAA", V2_SIG[:-2]):
        result = provider().verify_webhook(webhook(P4_URL, {}, headers=signed_v2(bad)))
        assert (result.ok, result.reason) == (False, "Invalid Plivo V2 signature")


def test_get_and_post_sign_differently() -> None:
    # P3 signed as GET; the same parameters posted as a form are another message.
    request = webhook(P3_URL, P3_PARAMS, method="POST", headers=signed_v3(P3_SIG))
    assert not provider().verify_webhook(request).ok


def test_unsupported_method() -> None:
    request = webhook(P1_URL, P1_PARAMS, method="PUT", headers=signed_v3(P1_SIG))
    result = provider().verify_webhook(request)
    assert (result.ok, result.reason) == (
        False,
        "Unsupported HTTP method for Plivo V3 signature: PUT",
    )


def test_body_that_is_not_form_data_fails_closed() -> None:
    request = webhook(P1_URL, headers=signed_v3(P1_SIG), body=b"\xff\xfe")
    assert not provider().verify_webhook(request).ok


# -- replay keys -----------------------------------------------------------------------------
def test_v3_replay_key_is_sha256_of_base_and_nonce() -> None:
    result = provider().verify_webhook(webhook(P1_URL, P1_PARAMS, headers=signed_v3(P1_SIG)))
    base = v3_base("POST", P1_URL, {k: [v] for k, v in P1_PARAMS.items()})
    assert (
        result.request_key == "plivo:v3:" + hashlib.sha256(f"{base}\n{NONCE}".encode()).hexdigest()
    )


def test_reordered_query_gives_the_same_replay_key() -> None:
    keys = set()
    for url in (
        "https://voice.example.com/voice/webhook?callId=c1&flow=answer",
        "https://voice.example.com/voice/webhook?flow=answer&callId=c1",
    ):
        signature = _sdk_signature("POST", url, dict(P1_PARAMS))
        result = provider().verify_webhook(webhook(url, P1_PARAMS, headers=signed_v3(signature)))
        assert result.ok
        keys.add(result.request_key)
    assert len(keys) == 1


def test_v2_replay_key_ignores_the_query() -> None:
    keys = {
        provider().verify_webhook(webhook(url, {}, headers=signed_v2(V2_SIG))).request_key
        for url in (P4_URL, "https://voice.example.com/plivo/answer/?other=1")
    }
    expected = hashlib.sha256(f"https://voice.example.com/plivo/answer/\n{NONCE}".encode())
    assert keys == {f"plivo:v2:{expected.hexdigest()}"}


def test_different_nonce_is_a_different_request() -> None:
    first = _sdk_signature("POST", P1_URL, dict(P1_PARAMS), nonce="111")
    second = _sdk_signature("POST", P1_URL, dict(P1_PARAMS), nonce="222")
    keys = {
        provider()
        .verify_webhook(webhook(P1_URL, P1_PARAMS, headers=signed_v3(sig, nonce)))
        .request_key
        for sig, nonce in ((first, "111"), (second, "222"))
    }
    assert len(keys) == 2


def test_skip_mode_accepts_unsigned_with_a_stable_key() -> None:
    request = webhook(P1_URL, P1_PARAMS)
    result = provider(skipSignatureVerification=True).verify_webhook(request)
    assert result.ok and result.request_key == skip_key("plivo", request)
    assert result.request_key.startswith("plivo:skip:")


# -- which URL is verified ---------------------------------------------------------------------
def test_public_url_base_is_used_whatever_the_host_header() -> None:
    request = webhook(P1_URL, P1_PARAMS, headers=signed_v3(P1_SIG), host="evil.example")
    assert not provider().verify_webhook(request).ok
    public = provider(publicUrl="https://voice.example.com/voice/webhook")
    assert public.verify_webhook(request).ok


def test_forwarded_host_is_ignored_unless_trusted() -> None:
    headers = {**signed_v3(P1_SIG), "X-Forwarded-Host": "voice.example.com"}
    request = webhook(P1_URL, P1_PARAMS, headers=headers, host="127.0.0.1:3334")
    assert not provider().verify_webhook(request).ok
    trusting = provider(webhookSecurity={"allowedHosts": ["voice.example.com"]})
    assert trusting.verify_webhook(request).ok


def test_spoofed_host_does_not_change_reply_urls_when_public_url_is_set() -> None:
    plivo = provider(publicUrl="https://voice.example.com/voice/webhook")
    url = "https://evil.example/voice/webhook?callId=c1&flow=answer"
    request = webhook(
        url, P1_PARAMS, host="evil.example", headers={"X-Forwarded-Host": "evil.example"}
    )
    context = ReplyContext(
        call_id="c1",
        known=True,
        state="answered",
        speech=Speech(text="Hi", listen=True, turn_token="t1"),
    )
    document = ET.fromstring(plivo.render_reply(request, context).body)
    action = document.find("GetInput").get("action")  # type: ignore[union-attr]
    assert action == (
        "https://voice.example.com/voice/webhook?callId=c1&flow=getinput&turnToken=t1"
    )


# -- the SDK as oracle -------------------------------------------------------------------------
_SAFE = string.ascii_letters + string.digits + "-_.~"
_segment = st.text(_SAFE, min_size=1, max_size=8)
_hosts = st.lists(
    st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=6), min_size=2, max_size=3
).map(".".join)
_paths = st.tuples(st.lists(_segment, max_size=3), st.booleans()).map(
    lambda p: "/" + "/".join(p[0]) + ("/" if p[1] and p[0] else "")
)
# Query values stay ASCII: the SDK decodes query bytes as Latin-1 (docs/carriers.md,
# "Test vectors").
_query = st.dictionaries(
    st.text(_SAFE, min_size=1, max_size=6), st.text(string.printable, max_size=10), max_size=4
)
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_post = st.dictionaries(
    st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8),
    st.one_of(_text, st.lists(_text, min_size=1, max_size=3)),
    max_size=5,
)
_nonces = st.text(string.digits, min_size=1, max_size=20)


@hsettings(max_examples=150, deadline=None)
@given(
    host=_hosts,
    path=_paths,
    query=_query,
    post=_post,
    nonce=_nonces,
    method=st.sampled_from(["GET", "POST"]),
)
def test_sdk_and_adapter_agree(
    host: str, path: str, query: dict[str, str], post: dict[str, object], nonce: str, method: str
) -> None:
    url = f"https://{host}{path}" + (f"?{urlencode(query)}" if query else "")
    params = post if method == "POST" else {}
    body = urlencode(params, doseq=True).encode() if method == "POST" else b""
    sdk_sig = _sdk_signature(method, url, dict(params), nonce)
    request = webhook(url, method=method, body=body, headers=signed_v3(sdk_sig, nonce))
    assert provider().verify_webhook(request).ok  # the SDK's signature passes here
    lists = {k: v if isinstance(v, list) else [v] for k, v in params.items()}
    ours = v3_signature(TOKEN, v3_base(method, url, lists), nonce)
    assert validate_v3_signature(method, url, nonce, TOKEN, ours, params=dict(params))
    assert not validate_v3_signature(method, url, nonce + "0", TOKEN, ours, params=dict(params))


@hsettings(max_examples=100, deadline=None)
@given(host=_hosts, path=_paths, query=_query, nonce=_nonces)
def test_sdk_v2_validator_agrees(host: str, path: str, query: dict[str, str], nonce: str) -> None:
    url = f"https://{host}{path}" + (f"?{urlencode(query)}" if query else "")
    ours = v2_signature(TOKEN, url, nonce)
    assert validate_signature(url, nonce, ours, TOKEN)
    assert provider().verify_webhook(webhook(url, {}, headers=signed_v2(ours, nonce))).ok

"""Twilio X-Twilio-Signature verification: fixed vectors, port variants, replay keys.

docs/carriers.md, "Twilio: signatures" and "Test vectors".
"""

from __future__ import annotations

import json
import string
from urllib.parse import urlencode

from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from providers.twilio import explain_signature
from providers.webhook_security import skip_key
from tests.fakes.twilio.helpers import ACCOUNT, TOKEN, provider, settings, sign, webhook

T1_URL = "https://voice.example.com/twilio/voice?tenant=acme&agent=42"
T1_PARAMS = {
    "AccountSid": ACCOUNT,
    "ApiVersion": "2010-04-01",
    "CallSid": "CA00000000000000000000000000000001",
    "CallStatus": "ringing",
    "Direction": "inbound",
    "From": "+14155550100",
    "To": "+14155550199",
}
T2_PARAMS = {
    "AccountSid": ACCOUNT,
    "CallSid": "CA00000000000000000000000000000002",
    "CallStatus": "completed",
    "CallDuration": "37",
    "Direction": "outbound-api",
    "From": "+14155550199",
    "To": "+14155550100",
    "SequenceNumber": "3",
    "Timestamp": "Tue, 01 Jul 2025 12:00:00 +0000",
    "CallbackSource": "call-progress-events",
}
T3_BODY = (
    b'{"CallSid":"CA00000000000000000000000000000003","CallStatus":"in-progress",'
    b'"AccountSid":"AC00000000000000000000000000000001"}'
)
T3_URL = (
    "https://voice.example.com/twilio/json-events?bodySHA256="
    "dfdf0053daa3670cb6a17eac77cc656db82204334da0d10b73db58c07d5f3f52"
)


def test_t1_form_post_with_query_string() -> None:
    result = provider().verify_webhook(
        webhook(T1_URL, T1_PARAMS, signature="CRvUxHIweMs/ltasHyijA1lA698=")
    )
    assert result.ok and result.request_key and result.request_key.startswith("twilio:req:")


def test_t1_tampered_param_fails_with_the_url_in_the_reason() -> None:
    tampered = {**T1_PARAMS, "CallStatus": "in-progress"}
    result = provider().verify_webhook(
        webhook(T1_URL, tampered, signature="CRvUxHIweMs/ltasHyijA1lA698=")
    )
    assert not result.ok
    assert result.reason == f"Invalid signature for URL: {T1_URL}"


def test_t2a_signed_with_default_port_verifies_without_it() -> None:
    request = webhook(
        "https://voice.example.com/twilio/status",
        T2_PARAMS,
        signature="3P48vSsKHhIS1dYSk9YumW9wzHk=",
    )
    assert provider().verify_webhook(request).ok


def test_t2a_prime_signed_without_port_verifies_with_default_port_url() -> None:
    request = webhook(
        "https://voice.example.com:443/twilio/status",
        T2_PARAMS,
        signature="9YIvHYrSNjFYrayjUwPeIYoyUd0=",
    )
    assert (
        provider(publicUrl="https://voice.example.com:443/voice/webhook").verify_webhook(request).ok
    )
    assert provider().verify_webhook(request).ok  # Host header carries :443


def test_t2b_non_default_port_verifies_through_public_url() -> None:
    request = webhook(
        "https://voice.example.com:8443/twilio/status",
        T2_PARAMS,
        signature="0Txh0cXnqlMv8cTPTaQ/XyEawwA=",
        headers={"host": "127.0.0.1"},
    )
    result = provider(publicUrl="https://voice.example.com:8443/voice/webhook").verify_webhook(
        request
    )
    assert result.ok


def test_t2b_non_default_port_verifies_through_host_header_port() -> None:
    request = webhook(
        "https://voice.example.com:8443/twilio/status",
        T2_PARAMS,
        signature="0Txh0cXnqlMv8cTPTaQ/XyEawwA=",
    )
    assert request.header("host") == "voice.example.com:8443"
    assert provider().verify_webhook(request).ok


def test_t2b_non_default_port_must_match() -> None:
    request = webhook(
        "https://voice.example.com/twilio/status",
        T2_PARAMS,
        signature="0Txh0cXnqlMv8cTPTaQ/XyEawwA=",
    )
    result = provider().verify_webhook(request)
    assert not result.ok
    assert result.reason == "Invalid signature for URL: https://voice.example.com/twilio/status"


def test_t3_json_body_with_body_sha256() -> None:
    headers = {"content-type": "application/json"}
    good = webhook(T3_URL, body=T3_BODY, signature="8j6kZxScQJSakYTgcV9dV+c2XBQ=", headers=headers)
    assert provider().verify_webhook(good).ok
    changed = webhook(
        T3_URL,
        body=T3_BODY.replace(b"in-progress", b"completed"),
        signature="8j6kZxScQJSakYTgcV9dV+c2XBQ=",
        headers=headers,
    )
    assert not provider().verify_webhook(changed).ok


def test_t4_shared_key_hmac_sha256_named_by_the_settings_header() -> None:
    request = webhook(
        T1_URL,
        T1_PARAMS,
        signature="gPhw3wYBpenUNGcUGZea3NTre9Ph3ngJKZdUE23HAB4=",
        headers={
            "x-twilio-webhooks-signature-settings": "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256"
        },
    )
    assert provider().verify_webhook(request).ok


def test_missing_header_is_refused_with_the_reference_reason() -> None:
    result = provider().verify_webhook(webhook(T1_URL, T1_PARAMS))
    assert (result.ok, result.reason, result.request_key) == (
        False,
        "Missing X-Twilio-Signature header",
        None,
    )


def test_first_of_repeated_signature_headers_is_used() -> None:
    request = webhook(T1_URL, T1_PARAMS, signature="CRvUxHIweMs/ltasHyijA1lA698=, bogus=")
    assert provider().verify_webhook(request).ok


def test_untrusted_forwarded_host_is_ignored() -> None:
    signature = sign("https://evil.example/twilio/voice?tenant=acme&agent=42", T1_PARAMS)
    request = webhook(
        T1_URL, T1_PARAMS, signature=signature, headers={"x-forwarded-host": "evil.example"}
    )
    assert not provider().verify_webhook(request).ok


def test_trusted_forwarded_host_rebuilds_the_public_url() -> None:
    request = webhook(
        "https://voice.example.com/twilio/voice?tenant=acme&agent=42",
        T1_PARAMS,
        signature="CRvUxHIweMs/ltasHyijA1lA698=",
        headers={"host": "127.0.0.1:3334", "x-forwarded-host": "voice.example.com"},
    )
    trusted = provider(webhookSecurity={"allowedHosts": ["voice.example.com"]})
    assert trusted.verify_webhook(request).ok


def test_same_request_gives_the_same_key_and_idempotency_token_is_ignored() -> None:
    first = webhook(
        T1_URL,
        T1_PARAMS,
        signature="CRvUxHIweMs/ltasHyijA1lA698=",
        headers={"i-twilio-idempotency-token": "retry-1"},
    )
    retry = webhook(
        T1_URL,
        T1_PARAMS,
        signature="CRvUxHIweMs/ltasHyijA1lA698=",
        headers={"i-twilio-idempotency-token": "retry-2"},
    )
    twilio = provider()
    assert twilio.verify_webhook(first).request_key == twilio.verify_webhook(retry).request_key


def test_different_requests_give_different_keys() -> None:
    other = {**T1_PARAMS, "CallStatus": "in-progress"}
    a = webhook(T1_URL, T1_PARAMS, signature=sign(T1_URL, T1_PARAMS))
    b = webhook(T1_URL, other, signature=sign(T1_URL, other))
    assert provider().verify_webhook(a).request_key != provider().verify_webhook(b).request_key


def test_skip_mode_accepts_and_keys_by_method_url_and_body() -> None:
    request = webhook(T1_URL, T1_PARAMS)
    result = provider(skipSignatureVerification=True).verify_webhook(request)
    assert result.ok and result.request_key == skip_key("twilio", request)
    assert result.request_key.startswith("twilio:skip:")


def test_non_utf8_body_is_refused_not_crashed() -> None:
    request = webhook(T1_URL, body=b"CallSid=\xff", signature="CRvUxHIweMs/ltasHyijA1lA698=")
    assert not provider().verify_webhook(request).ok


def test_explain_signature_shows_candidates_without_the_token() -> None:
    request = webhook(T1_URL, T1_PARAMS, signature="CRvUxHIweMs/ltasHyijA1lA698=")
    report = explain_signature(request, settings())
    assert report["reconstructedUrl"] == T1_URL
    assert report["provided"] == "CRvUxHIweMs/ltasHyijA1lA698="
    assert report["candidates"][0] == {
        "url": T1_URL,
        "matches": True,
        "expectedSignature": "CRvUxHIweMs/ltasHyijA1lA698=",
    }
    assert report["forwardingTrusted"] is False and report["reason"] == ""
    assert TOKEN not in json.dumps(report)


def test_explain_signature_reports_the_failure() -> None:
    report = explain_signature(webhook(T1_URL, T1_PARAMS, signature="nope"), settings())
    assert not any(c["matches"] for c in report["candidates"])
    assert report["reason"].startswith("Invalid signature for URL: ")


# -- properties ----------------------------------------------------------------------------
_SEGMENT = st.text(string.ascii_letters + string.digits + "-._~", min_size=1, max_size=12)
_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
_PARAMS = st.dictionaries(
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12),
    _TEXT,
    min_size=1,
    max_size=8,
)


@st.composite
def _urls(draw: st.DrawFn) -> str:
    path = "/" + "/".join(draw(st.lists(_SEGMENT, min_size=1, max_size=4)))
    # bodySHA256 in the query means a JSON-bodied delivery (URL-only signature): not a form.
    keys = _TEXT.filter(lambda key: key != "bodySHA256")
    query = urlencode(draw(st.lists(st.tuples(keys, _TEXT), max_size=4)))
    return f"https://voice.example.com{path}" + (f"?{query}" if query else "")


@hsettings(max_examples=60, deadline=None)
@given(url=_urls(), params=_PARAMS)
def test_any_sdk_signed_request_verifies(url: str, params: dict[str, str]) -> None:
    signature = RequestValidator(TOKEN).compute_signature(url, params)
    assert provider().verify_webhook(webhook(url, params, signature=signature)).ok


@hsettings(max_examples=60, deadline=None)
@given(url=_urls(), params=_PARAMS, data=st.data())
def test_one_character_change_in_a_value_fails(
    url: str, params: dict[str, str], data: st.DataObject
) -> None:
    signature = RequestValidator(TOKEN).compute_signature(url, params)
    name = data.draw(st.sampled_from(sorted(params)))
    value = params[name]
    if value:
        index = data.draw(st.integers(0, len(value) - 1))
        replacement = "b" if value[index] == "a" else "a"
        changed = value[:index] + replacement + value[index + 1 :]
    else:
        changed = "a"
    tampered = {**params, name: changed}
    assert not provider().verify_webhook(webhook(url, tampered, signature=signature)).ok

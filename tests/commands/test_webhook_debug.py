"""`voicecall webhook-debug` and the Twilio `voicecall setup` checks."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

pytestmark = pytest.mark.django_db

TOKEN = "12345678901234567890123456789012"
TWILIO = {
    "provider": "twilio",
    "fromNumber": "+15550001234",
    "twilio": {"accountSid": "AC00000000000000000000000000000001", "authToken": TOKEN},
    "publicUrl": "https://voice.example.com/voice/webhook",
}
# Vector T1 (docs/carriers.md, "Test vectors").
T1_URL = "https://voice.example.com/twilio/voice?tenant=acme&agent=42"
T1_BODY = (
    "AccountSid=AC00000000000000000000000000000001&ApiVersion=2010-04-01"
    "&CallSid=CA00000000000000000000000000000001&CallStatus=ringing&Direction=inbound"
    "&From=%2B14155550100&To=%2B14155550199"
)
T1_SIGNATURE = "CRvUxHIweMs/ltasHyijA1lA698="


def _debug(*args: str) -> dict[str, Any]:
    out = StringIO()
    call_command("voicecall", "webhook-debug", *args, stdout=out)
    return json.loads(out.getvalue())


def test_a_good_signature_is_reported_as_matching_its_url(configure: Any) -> None:
    configure(TWILIO)
    report = _debug(
        "--url", T1_URL, "--header", f"X-Twilio-Signature: {T1_SIGNATURE}", "--body", T1_BODY
    )
    assert report["ok"] is True
    assert [c["url"] for c in report["candidates"] if c["matches"]] == [T1_URL]
    assert TOKEN not in json.dumps(report)


def test_a_bad_signature_lists_the_candidates_tried_and_why(configure: Any) -> None:
    configure(TWILIO)
    report = _debug(
        "--url",
        T1_URL,
        "--header",
        "X-Twilio-Signature: AAAA",
        "--body",
        T1_BODY,
        "--header",
        "X-Forwarded-Host: proxy.example.com",
    )
    assert report["ok"] is False
    assert report["reason"].startswith("Invalid signature for URL: ")
    assert len(report["candidates"]) >= 2
    assert all(not c["matches"] for c in report["candidates"])
    assert T1_SIGNATURE in [c["expectedSignature"] for c in report["candidates"]]
    assert any("proxy.example.com" in hint and "allowedHosts" in hint for hint in report["hints"])


def test_a_capture_file_is_read(configure: Any, tmp_path: Any) -> None:
    configure(TWILIO)
    capture = tmp_path / "capture.json"
    capture.write_text(
        json.dumps(
            {"url": T1_URL, "body": T1_BODY, "headers": {"X-Twilio-Signature": T1_SIGNATURE}}
        )
    )
    assert _debug("--capture", str(capture))["ok"] is True


def test_missing_url_is_a_one_line_error(configure: Any) -> None:
    configure(TWILIO)
    with pytest.raises(CommandError, match="needs --url"):
        _debug("--body", "x=1")


def test_a_malformed_header_flag_is_a_one_line_error(configure: Any) -> None:
    configure(TWILIO)
    with pytest.raises(CommandError, match="Name: value"):
        _debug("--url", T1_URL, "--header", "no-colon")


def test_setup_reports_the_twilio_checks(configure: Any) -> None:
    configure(TWILIO)
    out = StringIO()
    call_command("voicecall", "setup", "--json", stdout=out)
    checks = {c["id"]: c for c in json.loads(out.getvalue())["checks"]}
    assert checks["twilio-account"]["ok"] and checks["twilio-signatures"]["ok"]
    assert checks["twilio-webhook-url"]["ok"]


def test_setup_fails_twilio_with_a_bad_account_sid_and_a_plain_http_url(configure: Any) -> None:
    configure(
        {
            **TWILIO,
            "twilio": {"accountSid": "XX1", "authToken": TOKEN},
            "publicUrl": "http://voice.example.com/voice/webhook",
        }
    )
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("voicecall", "setup", "--json", stdout=out)
    checks = {c["id"]: c for c in json.loads(out.getvalue())["checks"]}
    assert not checks["twilio-account"]["ok"]
    assert not checks["twilio-webhook-url"]["ok"]


def _checks(configure: Any, raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    configure(raw)
    out = StringIO()
    try:
        call_command("voicecall", "setup", "--json", stdout=out)
    except CommandError:
        pass
    return {c["id"]: c for c in json.loads(out.getvalue())["checks"]}


def test_setup_reports_the_telnyx_checks_and_fails_closed_without_a_public_key(
    configure: Any,
) -> None:
    base = {
        "provider": "telnyx",
        "fromNumber": "+15550001234",
        "telnyx": {"apiKey": "KEY", "connectionId": "conn-1"},
        "publicUrl": "https://voice.example.com/voice/webhook",
    }
    with_key = _checks(
        configure, {**base, "telnyx": {**base["telnyx"], "publicKey": "A" * 43 + "="}}
    )
    assert with_key["telnyx-signatures"]["ok"], with_key
    skipped = _checks(configure, {**base, "skipSignatureVerification": True})
    assert not skipped["telnyx-signatures"]["ok"]


def test_setup_reports_the_plivo_checks(configure: Any) -> None:
    checks = _checks(
        configure,
        {
            "provider": "plivo",
            "fromNumber": "+15550001234",
            "plivo": {"authId": "MA1", "authToken": "t"},
            "publicUrl": "http://voice.example.com/voice/webhook",
        },
    )
    assert checks["plivo-signatures"]["ok"]
    assert not checks["plivo-webhook-url"]["ok"]

"""Twilio REST through the SDK over httpx.MockTransport: exact form fields, TwiML, errors."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace
from typing import Any

import httpx
import pytest

from providers.base import CallTarget, PlaceCall, StreamPlan
from providers.errors import ProviderError, ProviderNotConfigured, ProviderUnavailable
from providers.registry import build_provider
from providers.twilio import TwilioProvider
from tests.fakes.twilio.helpers import ACCOUNT, CALL_SID, Carrier, provider, settings

HOOK = "https://voice.example.com/voice/webhook?callId=call-1"
CALLS = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
CALL = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL_SID}.json"
TARGET = CallTarget(
    call_id="call-1", provider_call_id=CALL_SID, webhook_url=HOOK, turn_token="turn-9"
)


def _dial(**fields: Any) -> PlaceCall:
    base: dict[str, Any] = {
        "call_id": "call-1",
        "to_number": "+14155550100",
        "from_number": "+14155550199",
        "webhook_url": HOOK,
        "mode": "conversation",
    }
    return PlaceCall(**{**base, **fields})


def _error(status: int, code: int, message: str) -> httpx.Response:
    return httpx.Response(
        status,
        json={
            "code": code,
            "message": message,
            "status": status,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
        },
    )


def _twiml(carrier: Carrier, index: int = -1) -> ET.Element:
    return ET.fromstring(carrier.form(index)["Twiml"][0])


# -- construction ----------------------------------------------------------------------------
def test_missing_credentials_name_both_keys() -> None:
    with pytest.raises(ProviderNotConfigured) as info:
        TwilioProvider(settings=settings(accountSid=None, authToken=""))
    assert "twilio.accountSid" in str(info.value) and "twilio.authToken" in str(info.value)


def test_registry_builds_the_adapter() -> None:
    built = build_provider("twilio", settings=settings())
    assert isinstance(built, TwilioProvider)
    assert (built.name, built.supports_preconnect_dtmf, built.rejects_in_reply) == (
        "twilio",
        True,
        True,
    )
    assert built.signature_headers == (("x-twilio-signature",),)
    built.close()


# -- place_call ------------------------------------------------------------------------------
def test_conversation_call_fetches_twiml_from_the_webhook() -> None:
    carrier = Carrier()
    result = provider(carrier).place_call(_dial(ring_timeout_s=25))
    request = carrier.requests[0]
    assert (request.method, str(request.url)) == ("POST", CALLS)
    assert request.headers["authorization"].startswith("Basic ")
    assert carrier.form() == {
        "To": ["+14155550100"],
        "From": ["+14155550199"],
        "StatusCallback": [f"{HOOK}&type=status"],
        "StatusCallbackMethod": ["POST"],
        "StatusCallbackEvent": ["initiated", "ringing", "answered", "completed"],
        "Timeout": ["25"],
        "Url": [HOOK],
        "Method": ["POST"],
    }
    assert (result.provider_call_id, result.status, result.message_delivered) == (
        CALL_SID,
        "queued",
        False,
    )


def test_status_other_than_queued_reports_initiated() -> None:
    carrier = Carrier(httpx.Response(201, json={"sid": CALL_SID, "status": "ringing"}))
    assert provider(carrier).place_call(_dial()).status == "initiated"


def test_notify_call_carries_the_message_inline_and_escaped() -> None:
    carrier = Carrier()
    message = 'Tom & Jerry <3 "quoted"'
    result = provider(carrier).place_call(_dial(mode="notify", message=message))
    form = carrier.form()
    assert "Url" not in form and form["StatusCallback"] == [f"{HOOK}&type=status"]
    raw = form["Twiml"][0]
    assert "Tom &amp; Jerry &lt;3" in raw
    root = ET.fromstring(raw)
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert root[0].text == message and root[0].get("voice") == "Polly.Joanna"
    assert result.message_delivered is True


def test_a_notify_message_to_report_redirects_after_the_words_instead_of_hanging_up() -> None:
    carrier = Carrier()
    provider(carrier).place_call(_dial(mode="notify", message="hi", message_utterance_id="u-1"))
    root = _twiml(carrier)
    # Twilio fetches the <Redirect> once the <Say> finished: our reply pauses, then hangs up.
    assert [child.tag for child in root] == ["Say", "Redirect"]
    assert (root[1].get("method"), root[1].text) == (
        "POST",
        f"{HOOK}&flow=spoken&utteranceId=u-1",
    )


@pytest.mark.parametrize(
    ("tts", "voice"),
    [
        ({"provider": "openai", "providers": {"openai": {"voice": "nova"}}}, "Polly.Salli"),
        ({"provider": "openai", "providers": {"openai": {"voice": "SHIMMER"}}}, "Polly.Kimberly"),
        (
            {
                "provider": "openai",
                "providers": {"openai": {"speakerVoice": "echo", "voice": "nova"}},
            },
            "Polly.Matthew",
        ),
        (
            {"provider": "elevenlabs", "providers": {"elevenlabs": {"voiceId": "21m00Tcm4TlvDq8"}}},
            "Polly.Joanna",
        ),
        (
            {"provider": "x", "providers": {"x": {"voice": "Polly.Brian-Neural"}}},
            "Polly.Brian-Neural",
        ),
        (
            {"provider": "x", "providers": {"x": {"voice": "Google.en-US-Neural2-F"}}},
            "Google.en-US-Neural2-F",
        ),
        ({}, "Polly.Joanna"),
    ],
)
def test_notify_voice_follows_the_tts_config(tts: dict[str, Any], voice: str) -> None:
    carrier = Carrier()
    provider(carrier, tts=tts).place_call(_dial(mode="notify", message="hi"))
    assert _twiml(carrier)[0].get("voice") == voice


def test_preconnect_dtmf_plays_digits_then_redirects_to_the_webhook() -> None:
    carrier = Carrier()
    result = provider(carrier).place_call(_dial(dtmf_sequence="1234w#"))
    root = _twiml(carrier)
    assert "Url" not in carrier.form()
    assert [child.tag for child in root] == ["Play", "Redirect"]
    assert root[0].get("digits") == "1234w#"
    assert (root[1].get("method"), root[1].text) == ("POST", HOOK)
    assert result.message_delivered is False


def test_notify_too_long_for_inline_twiml_falls_back_to_the_webhook() -> None:
    carrier = Carrier()
    result = provider(carrier).place_call(_dial(mode="notify", message="x" * 5000))
    assert carrier.form()["Url"] == [HOOK] and "Twiml" not in carrier.form()
    assert result.message_delivered is False


# -- hang_up ---------------------------------------------------------------------------------
def test_hang_up_completes_the_call() -> None:
    carrier = Carrier()
    provider(carrier).hang_up(TARGET)
    assert str(carrier.requests[0].url) == CALL
    assert carrier.form() == {"Status": ["completed"]}


def test_hang_up_of_a_vanished_call_is_fine() -> None:
    carrier = Carrier(_error(404, 20404, "The requested resource was not found"))
    provider(carrier).hang_up(TARGET)


def test_hang_up_server_error_is_retryable() -> None:
    carrier = Carrier(_error(503, 20500, "Service unavailable"))
    with pytest.raises(ProviderError) as info:
        provider(carrier).hang_up(TARGET)
    assert info.value.retryable


# -- live TwiML updates ----------------------------------------------------------------------
def test_play_text_then_listen_escapes_text_and_carries_the_turn_token() -> None:
    carrier = Carrier()
    provider(carrier).play_text(TARGET, '1 < 2 & "ok"', listen_after=True)
    root = _twiml(carrier)
    assert [child.tag for child in root] == ["Say", "Gather"]
    say, gather = root
    assert say.text == '1 < 2 & "ok"'
    assert (say.get("voice"), say.get("language")) == ("Polly.Joanna", "en-US")
    assert gather.attrib == {
        "input": "speech",
        "speechTimeout": "auto",
        "language": "en-US",
        "method": "POST",
        "actionOnEmptyResult": "true",
        "action": f"{HOOK}&flow=gather&turnToken=turn-9",
    }
    assert "&amp;flow=gather" in carrier.form()["Twiml"][0]


def test_play_text_without_listening_still_keeps_the_call_open() -> None:
    carrier = Carrier()
    target = CallTarget(call_id="call-1", provider_call_id=CALL_SID, webhook_url=HOOK)
    provider(carrier).play_text(target, "Goodbye soon", listen_after=False)
    root = _twiml(carrier)
    assert [child.tag for child in root] == ["Say", "Gather"]
    assert root[1].get("action") == f"{HOOK}&flow=gather"


@pytest.mark.parametrize("listen_after", [True, False])
def test_play_text_of_an_utterance_reports_the_words_said_then_listens(
    listen_after: bool,
) -> None:
    carrier = Carrier()
    target = replace(TARGET, utterance_id="u-7", extra={"language": "fr-FR"})
    provider(carrier).play_text(target, "Bonjour", listen_after=listen_after)
    root = _twiml(carrier)
    assert [child.tag for child in root] == ["Say", "Redirect"]
    assert root[0].text == "Bonjour" and root[0].get("language") == "fr-FR"
    # The reply to the report listens for the turn, as the <Gather> it replaces did.
    assert root[1].text == (
        f"{HOOK}&flow=spoken&utteranceId=u-7&listen=1&turnToken=turn-9&lang=fr-FR"
    )


def test_play_text_for_a_call_without_stored_url_uses_the_public_url() -> None:
    carrier = Carrier()
    target = CallTarget(call_id="call-7", provider_call_id=CALL_SID, turn_token="t")
    provider(carrier, publicUrl="https://pub.example/voice/webhook").play_text(
        target, "hi", listen_after=True
    )
    assert _twiml(carrier)[1].get("action") == (
        "https://pub.example/voice/webhook?callId=call-7&flow=gather&turnToken=t"
    )


def test_play_text_without_any_webhook_url_is_refused() -> None:
    target = CallTarget(call_id="call-7", provider_call_id=CALL_SID)
    with pytest.raises(ProviderError, match="Missing webhook URL"):
        provider().play_text(target, "hi", listen_after=True)


def test_start_listening_is_a_lone_gather() -> None:
    carrier = Carrier()
    provider(carrier).start_listening(TARGET)
    root = _twiml(carrier)
    assert [child.tag for child in root] == ["Gather"]
    assert root[0].get("action") == f"{HOOK}&flow=gather&turnToken=turn-9"
    assert root[0].get("language") == "en-US"


def test_stop_listening_sends_nothing() -> None:
    carrier = Carrier()
    provider(carrier).stop_listening(TARGET)
    assert carrier.requests == []


def test_send_dtmf_plays_then_redirects() -> None:
    carrier = Carrier()
    provider(carrier).send_dtmf(TARGET, "9#")
    root = _twiml(carrier)
    assert str(carrier.requests[0].url) == CALL
    assert [(c.tag, c.get("digits"), c.text) for c in root] == [
        ("Play", "9#", None),
        ("Redirect", None, HOOK),
    ]


def test_send_dtmf_on_a_streaming_call_plays_then_connects_the_next_stream() -> None:
    # New TwiML ends the live <Connect><Stream>: the call goes straight to a new stream,
    # with the token planned for it.
    carrier = Carrier()
    plan = StreamPlan(url="wss://voice.example.com/voice/stream", token="ab" * 16)
    provider(carrier).send_dtmf(replace(TARGET, stream=plan), "9#")
    root = _twiml(carrier)
    assert [(c.tag, c.get("digits")) for c in root] == [("Play", "9#"), ("Connect", None)]
    stream = root.find("Connect/Stream")
    assert stream is not None and stream.get("url") == plan.url
    assert [(p.get("name"), p.get("value")) for p in stream.iter("Parameter")] == [
        ("token", plan.token)
    ]


def test_call_state_race_21220_is_retried_after_250_then_750_ms() -> None:
    race = _error(400, 21220, "Call is not in-progress. Cannot redirect.")
    carrier = Carrier(race, race, httpx.Response(200, json={"sid": CALL_SID}))
    sleeps: list[float] = []
    provider(carrier, sleeps=sleeps).play_text(TARGET, "hi", listen_after=True)
    assert len(carrier.requests) == 3 and sleeps == [0.25, 0.75]


def test_call_state_race_gives_up_after_two_retries() -> None:
    carrier = Carrier(_error(400, 21220, "Call is not in-progress. Cannot redirect."))
    sleeps: list[float] = []
    with pytest.raises(ProviderError) as info:
        provider(carrier, sleeps=sleeps).start_listening(TARGET)
    assert len(carrier.requests) == 3 and info.value.provider_code == "21220"


def test_other_client_errors_are_not_retried() -> None:
    carrier = Carrier(_error(400, 21211, "Invalid 'To' Phone Number"))
    sleeps: list[float] = []
    with pytest.raises(ProviderError):
        provider(carrier, sleeps=sleeps).send_dtmf(TARGET, "1")
    assert len(carrier.requests) == 1 and sleeps == []


# -- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "retryable"), [(400, False), (401, False), (429, True), (500, True), (503, True)]
)
def test_api_errors_carry_status_message_and_code(status: int, retryable: bool) -> None:
    carrier = Carrier(_error(status, 21211, "Invalid 'To' Phone Number"))
    with pytest.raises(ProviderError) as info:
        provider(carrier).place_call(_dial())
    assert str(info.value) == f"Twilio API error: {status} Invalid 'To' Phone Number"
    assert (info.value.retryable, info.value.provider_code) == (retryable, "21211")


def test_non_json_error_body_still_maps() -> None:
    carrier = Carrier(httpx.Response(502, text="Bad gateway"))
    with pytest.raises(ProviderError) as info:
        provider(carrier).place_call(_dial())
    assert str(info.value) == "Twilio API error: 502 Bad gateway" and info.value.retryable


def test_transport_failure_is_provider_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ProviderUnavailable) as info:
        provider(Carrier(refuse)).place_call(_dial())
    assert info.value.retryable


# -- hosts -----------------------------------------------------------------------------------
def test_api_base_url_replaces_the_origin_and_keeps_the_path() -> None:
    carrier = Carrier()
    provider(carrier, apiBaseUrl="http://127.0.0.1:8099/").place_call(_dial())
    assert str(carrier.requests[0].url) == (
        f"http://127.0.0.1:8099/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
    )


def test_region_is_honoured_on_the_default_base() -> None:
    carrier = Carrier()
    provider(carrier, region="ie1").place_call(_dial())
    assert carrier.requests[0].url.host == "api.ie1.twilio.com"


def test_api_base_url_wins_over_region() -> None:
    carrier = Carrier()
    provider(carrier, region="au1", apiBaseUrl="http://127.0.0.1:8099").place_call(_dial())
    assert carrier.requests[0].url.host == "127.0.0.1"


# -- status ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "terminal", "reason"),
    [
        ("queued", False, None),
        ("ringing", False, None),
        ("in-progress", False, None),
        ("completed", True, "completed"),
        ("busy", True, "busy"),
        ("failed", True, "failed"),
        ("no-answer", True, "no-answer"),
        ("canceled", True, "hangup-bot"),
    ],
)
def test_call_status_maps_twilio_statuses(status: str, terminal: bool, reason: str | None) -> None:
    carrier = Carrier(httpx.Response(200, json={"sid": CALL_SID, "status": status}))
    result = provider(carrier).get_call_status(CALL_SID)
    assert carrier.requests[0].method == "GET" and str(carrier.requests[0].url) == CALL
    assert (result.status, result.is_terminal, result.end_reason, result.is_unknown) == (
        status,
        terminal,
        reason,
        False,
    )


def test_call_status_not_found_is_terminal() -> None:
    carrier = Carrier(_error(404, 20404, "The requested resource was not found"))
    result = provider(carrier).get_call_status(CALL_SID)
    assert (result.status, result.is_terminal, result.end_reason) == (
        "not-found",
        True,
        "completed",
    )


def test_call_status_server_error_is_unknown_not_raised() -> None:
    result = provider(Carrier(_error(500, 20500, "Internal"))).get_call_status(CALL_SID)
    assert (result.is_unknown, result.is_terminal) == (True, False)


def test_call_status_network_error_is_unknown_not_raised() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    result = provider(Carrier(refuse)).get_call_status(CALL_SID)
    assert (result.is_unknown, result.is_terminal) == (True, False)


def test_close_leaves_an_injected_client_open() -> None:
    http = httpx.Client(transport=httpx.MockTransport(Carrier()))
    TwilioProvider(settings=settings(), http=http).close()
    assert not http.is_closed

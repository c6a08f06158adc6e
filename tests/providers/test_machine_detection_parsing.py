"""Each carrier's answering-machine verdicts -> our four values, value by value, as the
carriers document them (docs/carriers.md, "Answering-machine detection")."""

from __future__ import annotations

from typing import Any

import pytest

from providers.base import EventType, MachineDetection, PlaceCall, Speech
from providers.errors import WebhookInvalid
from providers.plivo import webhooks as plivo_webhooks
from providers.plivo import xml as plivo_xml
from providers.twilio import webhooks as twilio_webhooks
from tests.fakes.plivo import helpers as plivo
from tests.fakes.telnyx import helpers as telnyx
from tests.fakes.twilio import helpers as twilio

HOOK = "https://voice.example.com/voice/webhook"


def _twilio(answered_by: str | None, **extra: str) -> Any:
    params = {"AccountSid": twilio.ACCOUNT, "CallSid": twilio.CALL_SID, **extra}
    if answered_by is not None:
        params["AnsweredBy"] = answered_by
    request = twilio.webhook(f"{HOOK}?callId=call-1&type=amd", params)
    return twilio.provider().parse_webhook(request)


@pytest.mark.parametrize(
    ("value", "ours", "greeting_ended"),
    [
        ("human", "human", False),
        ("machine_start", "machine", False),
        ("machine_end_beep", "machine", True),
        ("machine_end_silence", "machine", True),
        ("machine_end_other", "machine", True),
        ("fax", "fax", False),
        ("unknown", "unknown", False),
    ],
)
def test_twilio_answered_by_values(value: str, ours: str, greeting_ended: bool) -> None:
    [event] = _twilio(value, MachineDetectionDuration="3120")
    assert event.type == EventType.MACHINE_DETECTION
    assert (event.answered_by, event.greeting_ended, event.detection_ms) == (
        ours,
        greeting_ended,
        3120,
    )
    assert event.call_id == "call-1"
    assert event.provider_call_id == twilio.CALL_SID


@pytest.mark.parametrize("value", [None, "", "robot", "HUMAN"])
def test_twilio_refuses_a_verdict_it_does_not_document(value: str | None) -> None:
    with pytest.raises(WebhookInvalid):
        _twilio(value)


@pytest.mark.parametrize("duration", ["", "-5", "1e9", "99999999999999", "abc"])
def test_twilio_odd_detection_durations_are_dropped_not_fatal(duration: str) -> None:
    [event] = _twilio("human", MachineDetectionDuration=duration)
    assert event.detection_ms is None


def _telnyx(event_type: str, **payload: Any) -> Any:
    return telnyx.provider().parse_webhook(telnyx.webhook(telnyx.envelope(event_type, payload)))


@pytest.mark.parametrize(
    ("event_type", "result", "ours"),
    [
        ("call.machine.detection.ended", "human", "human"),
        ("call.machine.detection.ended", "machine", "machine"),
        ("call.machine.detection.ended", "not_sure", "unknown"),
        ("call.machine.premium.detection.ended", "human_residence", "human"),
        ("call.machine.premium.detection.ended", "human_business", "human"),
        ("call.machine.premium.detection.ended", "machine", "machine"),
        ("call.machine.premium.detection.ended", "silence", "unknown"),
        ("call.machine.premium.detection.ended", "fax_detected", "fax"),
        ("call.machine.premium.detection.ended", "not_sure", "unknown"),
    ],
)
def test_telnyx_detection_results(event_type: str, result: str, ours: str) -> None:
    [event] = _telnyx(event_type, result=result)
    assert (event.type, event.answered_by, event.greeting_ended) == (
        EventType.MACHINE_DETECTION,
        ours,
        False,
    )
    assert event.detection_ms is None  # Telnyx does not say; the services measure it
    assert event.dedupe_key == "telnyx:evt-1"


@pytest.mark.parametrize(
    ("event_type", "result"),
    [
        ("call.machine.greeting.ended", "beep_detected"),
        ("call.machine.greeting.ended", "ended"),
        ("call.machine.greeting.ended", "not_sure"),
        ("call.machine.premium.greeting.ended", "beep_detected"),
        ("call.machine.premium.greeting.ended", "no_beep_detected"),
    ],
)
def test_telnyx_greeting_ends_are_a_machine_whose_greeting_ended(
    event_type: str, result: str
) -> None:
    [event] = _telnyx(event_type, result=result)
    assert (event.answered_by, event.greeting_ended) == ("machine", True)


@pytest.mark.parametrize(
    ("event_type", "result"),
    [
        ("call.machine.detection.ended", None),
        ("call.machine.detection.ended", "beep_detected"),
        ("call.machine.premium.detection.ended", 7),
        ("call.machine.greeting.ended", "human"),
        ("call.machine.premium.greeting.ended", {"x": 1}),
    ],
)
def test_telnyx_refuses_results_it_does_not_document(event_type: str, result: Any) -> None:
    with pytest.raises(WebhookInvalid):
        _telnyx(event_type, result=result)


def _plivo(**params: str) -> Any:
    fields = {"CallUUID": "c-1", "Event": "MachineDetection", "CallStatus": "in-progress"}
    request = plivo.webhook(f"{HOOK}?callId=call-1&flow=machine", {**fields, **params})
    return plivo.provider().parse_webhook(request)


@pytest.mark.parametrize(("value", "ours"), [("true", "machine"), ("false", "human")])
def test_plivo_machine_values(value: str, ours: str) -> None:
    [event] = _plivo(Machine=value)
    assert (event.type, event.answered_by, event.greeting_ended) == (
        EventType.MACHINE_DETECTION,
        ours,
        False,
    )
    assert event.provider_call_id == "c-1"


@pytest.mark.parametrize("value", ["", "yes", "1", "machine"])
def test_plivo_refuses_an_odd_machine_value(value: str) -> None:
    with pytest.raises(WebhookInvalid):
        _plivo(Machine=value)


def test_plivo_refuses_a_verdict_without_machine() -> None:
    with pytest.raises(WebhookInvalid):
        _plivo()


def test_the_twilio_amd_callback_is_not_a_document_fetch() -> None:
    """Twilio ignores the reply to its AsyncAmdStatusCallback: nothing is spoken in it."""
    request = twilio.webhook(f"{HOOK}?callId=x&type=amd", {"CallSid": twilio.CALL_SID})
    assert not twilio_webhooks.is_twiml_fetch(request)


def test_plivo_machine_callback_is_not_a_document_fetch() -> None:
    request = plivo.webhook(f"{HOOK}?callId=call-1&flow=machine", {"Machine": "true"})
    assert not plivo_webhooks.is_document_fetch(request)


def test_plivo_left_message_waits_for_the_beep_and_escapes_its_words() -> None:
    document = plivo_xml.render(
        plivo_xml.speak("Fish & <chips>", spoken_url=f"{HOOK}?flow=spoken", after_beep=True)
    )
    assert document.startswith('<Response><Wait length="30" beep="true"/><Speak')
    assert "Fish &amp; &lt;chips&gt;" in document
    plain = plivo_xml.render(plivo_xml.speak("Hello", spoken_url=f"{HOOK}?flow=spoken"))
    assert "beep" not in plain


def test_speech_after_beep_defaults_off() -> None:
    assert Speech(text="x").after_beep is False


def _dial(mode: MachineDetection) -> PlaceCall:
    return PlaceCall(
        call_id="call-1",
        to_number="+15555550123",
        from_number="+15550100000",
        webhook_url=f"{HOOK}?callId=call-1",
        mode="notify",
        machine_detection=mode,
    )


def test_the_dial_without_detection_asks_nothing() -> None:
    assert plivo_webhooks.machine_detection_fields(_dial(MachineDetection.OFF)) == {}

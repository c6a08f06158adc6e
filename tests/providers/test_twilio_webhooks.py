"""Twilio webhook parsing and the TwiML reply policy (the plugin's, adapted).

docs/carriers.md, "Twilio: webhooks" and "Twilio: TwiML replies".
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from providers.base import EventType, Reply, ReplyContext, Speech, WebhookRequest
from providers.errors import WebhookInvalid
from tests.fakes.twilio.helpers import ACCOUNT, CALL_SID, provider, webhook

HOOK = "https://voice.example.com/voice/webhook"


def _params(**fields: str) -> dict[str, str]:
    base = {
        "AccountSid": ACCOUNT,
        "CallSid": CALL_SID,
        "ApiVersion": "2010-04-01",
        "From": "+14155550100",
        "To": "+14155550199",
        "Direction": "outbound-api",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def _parse(query: str = "callId=call-1", **fields: str) -> list[Any]:
    return provider().parse_webhook(webhook(f"{HOOK}?{query}", _params(**fields)))


def _one(query: str = "callId=call-1", **fields: str) -> Any:
    events = _parse(query, **fields)
    assert len(events) == 1
    return events[0]


# -- parsing ---------------------------------------------------------------------------------
def test_common_fields() -> None:
    event = _one("callId=call-1&turnToken=turn-3", CallStatus="ringing")
    assert (event.type, event.call_id, event.provider_call_id, event.turn_token) == (
        EventType.RINGING,
        "call-1",
        CALL_SID,
        "turn-3",
    )
    assert (event.direction, event.from_number, event.to_number) == (
        "outbound",
        "+14155550100",
        "+14155550199",
    )
    assert event.dedupe_key is None and event.id.startswith("twilio:evt:")


def test_call_id_is_absent_without_the_query_parameter() -> None:
    assert _one("", CallStatus="ringing").call_id is None


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("queued", EventType.INITIATED),
        ("initiated", EventType.INITIATED),
        ("ringing", EventType.RINGING),
        ("in-progress", EventType.ANSWERED),
    ],
)
def test_live_statuses(status: str, expected: EventType) -> None:
    assert _one(CallStatus=status).type == expected


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("completed", "completed"),
        ("failed", "failed"),
        ("busy", "busy"),
        ("no-answer", "no-answer"),
        ("canceled", "hangup-bot"),
    ],
)
def test_terminal_statuses_end_the_call(status: str, reason: str) -> None:
    event = _one("callId=call-1&type=status", CallStatus=status)
    assert (event.type, event.reason) == (EventType.ENDED, reason)


@pytest.mark.parametrize(
    ("direction", "expected"),
    [
        ("inbound", "inbound"),
        ("outbound-api", "outbound"),
        ("outbound-dial", "outbound"),
        ("trunking-terminating", None),
        (None, None),
    ],
)
def test_direction_map(direction: str | None, expected: str | None) -> None:
    assert _one(CallStatus="ringing", Direction=direction).direction == expected


def test_speech_wins_over_digits_and_status() -> None:
    event = _one(
        "callId=call-1&flow=gather&turnToken=t1",
        CallStatus="in-progress",
        SpeechResult=" book a table ",
        Confidence="0.42",
        Digits="5",
    )
    assert (event.type, event.transcript, event.confidence, event.is_final, event.turn_token) == (
        EventType.SPEECH,
        "book a table",
        0.42,
        True,
        "t1",
    )


@pytest.mark.parametrize("confidence", [None, "", "high", "nan", "inf"])
def test_confidence_falls_back_to_0_9(confidence: str | None) -> None:
    assert _one(SpeechResult="yes", Confidence=confidence).confidence == 0.9


def test_digits_win_over_status() -> None:
    event = _one("callId=call-1&flow=gather", CallStatus="in-progress", Digits="42#")
    assert (event.type, event.digits) == (EventType.DTMF, "42#")


def test_blank_speech_result_is_not_speech() -> None:
    assert (
        _one("callId=call-1&flow=gather", CallStatus="in-progress", SpeechResult="  ").type
        == EventType.SILENCE
    )


def test_empty_gather_result_is_silence() -> None:
    assert _one("callId=call-1&flow=gather&turnToken=t", CallStatus="in-progress").type == (
        EventType.SILENCE
    )


def test_bare_inbound_request_is_initiated() -> None:
    assert _one("", Direction="inbound").type == EventType.INITIATED


def test_request_without_anything_to_say_gives_no_events() -> None:
    assert _parse("", Direction="outbound-api") == []
    assert _parse("", CallStatus="something-new") == []


def test_timestamp_is_read_from_rfc_2822() -> None:
    event = _one(CallStatus="completed", Timestamp="Tue, 01 Jul 2025 12:00:00 +0000")
    assert event.timestamp == datetime(2025, 7, 1, 12, 0, tzinfo=UTC)


def test_malformed_timestamp_is_dropped_not_fatal() -> None:
    assert _one(CallStatus="completed", Timestamp="yesterday-ish").timestamp is None


def test_event_id_is_deterministic_and_tracks_the_delivery() -> None:
    first = _one(CallStatus="ringing", SequenceNumber="1")
    assert first.id == _one(CallStatus="ringing", SequenceNumber="1").id
    assert first.id != _one(CallStatus="ringing", SequenceNumber="2").id
    assert (
        first.id != _one("callId=call-1&turnToken=x", CallStatus="ringing", SequenceNumber="1").id
    )


def test_event_id_ignores_the_idempotency_header() -> None:
    url, params = f"{HOOK}?callId=call-1", _params(CallStatus="ringing")
    twilio = provider()
    a = twilio.parse_webhook(webhook(url, params, headers={"i-twilio-idempotency-token": "1"}))
    b = twilio.parse_webhook(webhook(url, params, headers={"i-twilio-idempotency-token": "2"}))
    assert a[0].id == b[0].id


def test_json_bodied_delivery_is_read() -> None:
    request = webhook(
        f"{HOOK}?bodySHA256=abc",
        body=b'{"CallSid":"CA9","CallStatus":"busy"}',
        headers={"content-type": "application/json"},
    )
    event = provider().parse_webhook(request)[0]
    assert (event.type, event.provider_call_id, event.reason) == (EventType.ENDED, "CA9", "busy")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"CallStatus=ringing", "application/x-www-form-urlencoded"),
        (b"CallSid=", "application/x-www-form-urlencoded"),
        (b"CallSid=CA1&From=\xff\xfe", "application/x-www-form-urlencoded"),
        (b"CallSid=%ff%fe", "application/x-www-form-urlencoded"),
        (b"", "application/x-www-form-urlencoded"),
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
    ],
)
def test_bad_bodies_are_webhook_invalid(body: bytes, content_type: str) -> None:
    request = webhook(HOOK, body=body, headers={"content-type": content_type})
    with pytest.raises(WebhookInvalid):
        provider().parse_webhook(request)


# -- replies ---------------------------------------------------------------------------------
def _reply(
    query: str, context: ReplyContext, *, params: dict[str, str] | None = None, **overrides: Any
) -> Reply:
    twilio = provider(**({"publicUrl": f"{HOOK}"} | overrides))
    request = webhook(f"{HOOK}?{query}", params or _params(CallStatus="in-progress"))
    return twilio.render_reply(request, context)


def _root(reply: Reply) -> ET.Element:
    assert (reply.status, reply.content_type) == (200, "application/xml")
    assert reply.body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    return ET.fromstring(reply.body)


def _tags(reply: Reply) -> list[str]:
    return [child.tag for child in _root(reply)]


def _action_query(element: ET.Element) -> dict[str, list[str]]:
    action = element.get("action") or ""
    assert action.startswith(f"{HOOK}?")
    return parse_qs(urlsplit(action).query)


LIVE = ReplyContext(call_id="call-1", known=True, state="listening")


def test_the_redirect_after_our_words_reports_them_said() -> None:
    event = _one("callId=call-1&flow=spoken&utteranceId=u-3", CallStatus="in-progress")
    assert (event.type, event.call_id, event.utterance_id) == (EventType.SPOKEN, "call-1", "u-3")
    assert event.provider_call_id == CALL_SID
    # Each utterance's report is its own event; without an utterance it reports nothing.
    other = _one("callId=call-1&flow=spoken&utteranceId=u-4", CallStatus="in-progress")
    assert other.id != event.id
    assert _parse("callId=call-1&flow=spoken", CallStatus="in-progress") == []


def test_a_notify_message_heard_pauses_the_delay_then_hangs_up() -> None:
    context = ReplyContext(call_id="call-1", known=True, state="speaking", hang_up_after=3)
    root = _root(_reply("callId=call-1&flow=spoken&utteranceId=u-1", context))
    assert [(c.tag, c.get("length")) for c in root] == [("Pause", "3"), ("Hangup", None)]
    zero = replace(context, hang_up_after=0)
    assert _tags(_reply("callId=call-1&flow=spoken&utteranceId=u-1", zero)) == ["Hangup"]


def test_words_said_then_the_turn_listens() -> None:
    query = "callId=call-1&flow=spoken&utteranceId=u-1&listen=1&turnToken=turn-5&lang=fr-FR"
    root = _root(_reply(query, LIVE))
    assert [c.tag for c in root] == ["Gather"]
    assert _action_query(root[0]) == {
        "callId": ["call-1"],
        "flow": ["gather"],
        "turnToken": ["turn-5"],
        "lang": ["fr-FR"],
    }
    assert root[0].get("language") == "fr-FR"


def test_words_said_without_listening_hold_the_line() -> None:
    root = _root(_reply("callId=call-1&flow=spoken&utteranceId=u-1", LIVE))
    assert [c.tag for c in root] == ["Pause", "Redirect"]


def test_speech_of_an_utterance_says_then_redirects_to_report_it() -> None:
    context = ReplyContext(
        call_id="call-1",
        known=True,
        state="speaking",
        speech=Speech(text="Hello", listen=True, turn_token="turn-5", utterance_id="u-9"),
    )
    root = _root(_reply("callId=call-1", context))
    assert [c.tag for c in root] == ["Say", "Redirect"]
    assert (
        root[1].text
        == f"{HOOK}?callId=call-1&flow=spoken&utteranceId=u-9&listen=1&turnToken=turn-5"
    )


def test_replay_gets_an_empty_response() -> None:
    assert _tags(_reply("callId=call-1", ReplyContext(replay=True))) == []


def test_status_callback_gets_an_empty_response_whatever_was_decided() -> None:
    context = ReplyContext(
        call_id="call-1", known=True, rejected=True, speech=Speech(text="hi", listen=True)
    )
    assert _tags(_reply("callId=call-1&type=status", context)) == []


def test_rejected_inbound_call_is_refused_in_the_reply() -> None:
    root = _root(_reply("", ReplyContext(known=True, rejected=True, state="hangup-bot")))
    assert [(c.tag, c.get("reason")) for c in root] == [("Reject", "rejected")]


def test_speech_with_listening_says_then_gathers_with_the_turn_token() -> None:
    context = ReplyContext(
        call_id="call-1",
        known=True,
        state="speaking",
        speech=Speech(text="Hello & <welcome>", listen=True, turn_token="turn-5"),
    )
    reply = _reply("callId=call-1", context)
    say, gather = _root(reply)
    assert (say.tag, say.text, say.get("voice")) == ("Say", "Hello & <welcome>", "Polly.Joanna")
    assert b"Hello &amp; &lt;welcome&gt;" in reply.body
    assert gather.tag == "Gather" and gather.get("input") == "speech"
    assert gather.get("actionOnEmptyResult") == "true" and gather.get("method") == "POST"
    assert _action_query(gather) == {
        "callId": ["call-1"],
        "flow": ["gather"],
        "turnToken": ["turn-5"],
    }


def test_speech_language_travels_with_the_gather() -> None:
    context = ReplyContext(
        call_id="call-1",
        known=True,
        speech=Speech(text="Hola", listen=True, turn_token="t", language="es-ES"),
    )
    say, gather = _root(_reply("callId=call-1", context))
    assert say.get("language") == gather.get("language") == "es-ES"
    assert _action_query(gather)["lang"] == ["es-ES"]


def test_speech_without_listening_holds_the_line() -> None:
    context = ReplyContext(call_id="call-1", known=True, speech=Speech(text="One moment"))
    root = _root(_reply("callId=call-1", context))
    assert [(c.tag, c.get("length")) for c in root] == [
        ("Say", None),
        ("Pause", "30"),
        ("Redirect", None),
    ]
    _assert_comes_back(root[-1])


def test_listening_without_text_is_a_lone_gather() -> None:
    context = ReplyContext(
        call_id="call-1", known=True, speech=Speech(text=None, listen=True, turn_token="t")
    )
    assert _tags(_reply("callId=call-1", context)) == ["Gather"]


def test_tts_voice_is_used_in_replies() -> None:
    context = ReplyContext(call_id="call-1", known=True, speech=Speech(text="hi"))
    tts = {"provider": "openai", "providers": {"openai": {"voice": "fable"}}}
    assert _root(_reply("callId=call-1", context, tts=tts))[0].get("voice") == "Polly.Amy"


def test_empty_gather_on_a_live_call_listens_again_in_the_same_turn() -> None:
    reply = _reply("callId=call-1&flow=gather&turnToken=turn-5", LIVE)
    (gather,) = _root(reply)
    assert gather.tag == "Gather"
    assert _action_query(gather) == {
        "callId": ["call-1"],
        "flow": ["gather"],
        "turnToken": ["turn-5"],
        "attempt": ["2"],
    }
    again = _reply("callId=call-1&flow=gather&turnToken=turn-5&attempt=2", LIVE)
    assert _action_query(_root(again)[0])["attempt"] == ["3"]


@pytest.mark.parametrize("heard", [{"SpeechResult": "hello"}, {"Digits": "1"}])
def test_gather_result_with_input_holds_for_the_next_turn(heard: dict[str, str]) -> None:
    params = _params(CallStatus="in-progress", **heard)
    reply = _reply("callId=call-1&flow=gather&turnToken=turn-5", LIVE, params=params)
    assert [(c.tag, c.get("length")) for c in _root(reply)] == [("Pause", "30"), ("Redirect", None)]


def _assert_comes_back(redirect: Any) -> None:
    """After the pause the call fetches us again (a lone <Pause> would end it after 30 s)."""
    assert redirect.get("method") == "POST"
    query = parse_qs(urlsplit(redirect.text).query)
    assert query == {"callId": ["call-1"], "flow": ["hold"]}


def test_known_live_call_is_held_for_the_next_rest_update() -> None:
    root = _root(_reply("callId=call-1", LIVE))
    assert [(c.tag, c.get("length")) for c in root] == [("Pause", "30"), ("Redirect", None)]
    _assert_comes_back(root[-1])
    # The hold fetch itself is held again: the loop lasts until a REST update replaces it.
    again = _root(_reply("callId=call-1&flow=hold", LIVE))
    assert [c.tag for c in again] == ["Pause", "Redirect"]


def test_live_call_known_only_by_id_is_held_too() -> None:
    assert _tags(_reply("callId=call-1", ReplyContext(call_id="call-1"))) == ["Pause", "Redirect"]


def test_unknown_call_gets_an_empty_response() -> None:
    assert _tags(_reply("", ReplyContext())) == []


def test_finished_call_is_hung_up() -> None:
    context = ReplyContext(call_id="call-1", known=True, state="completed")
    assert _tags(_reply("callId=call-1&flow=gather&turnToken=t", context)) == ["Hangup"]


def test_gather_action_uses_the_reconstructed_origin_without_public_url() -> None:
    context = ReplyContext(
        call_id="call-1", known=True, speech=Speech(text="hi", listen=True, turn_token="t")
    )
    twilio = provider(publicUrl=None, servePath="/voice/webhook")
    request: WebhookRequest = webhook(
        "https://hooks.example.net/voice/webhook?callId=call-1", _params(CallStatus="in-progress")
    )
    gather = ET.fromstring(twilio.render_reply(request, context).body)[1]
    assert gather.get("action") == (
        "https://hooks.example.net/voice/webhook?callId=call-1&flow=gather&turnToken=t"
    )


@pytest.mark.parametrize(
    ("public_url", "base"),
    [
        ("https://pub.example:8443/hook", "https://pub.example:8443/hook"),
        ("https://pub.example/hook?x=1", "https://pub.example/hook"),
        ("https://pub.example", "https://pub.example/voice/webhook"),
        ("https://pub.example/", "https://pub.example/voice/webhook"),
    ],
)
def test_gather_action_follows_the_public_url(public_url: str, base: str) -> None:
    context = ReplyContext(
        call_id="call-1", known=True, speech=Speech(text=None, listen=True, turn_token="t")
    )
    reply = _reply("callId=call-1", context, publicUrl=public_url)
    assert _root(reply)[0].get("action") == f"{base}?callId=call-1&flow=gather&turnToken=t"


def test_can_speak_in_reply_only_to_twiml_fetches() -> None:
    twilio = provider()
    assert twilio.can_speak_in_reply(webhook(f"{HOOK}?callId=c", _params()))
    assert twilio.can_speak_in_reply(webhook(f"{HOOK}?callId=c&flow=gather", _params()))
    assert not twilio.can_speak_in_reply(webhook(f"{HOOK}?callId=c&type=status", _params()))

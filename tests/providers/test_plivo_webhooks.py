"""Plivo callbacks -> normalized events, and the Plivo XML reply policy."""

from __future__ import annotations

import itertools
import json
import xml.etree.ElementTree as ET
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from django.test import Client

from calls.carrier import set_provider
from calls.models import Call, TranscriptEntry
from calls.services.actions import call_speak
from calls.services.dialling import call_initiate
from providers.base import EventType, NormalizedEvent, ReplyContext, Speech
from providers.errors import WebhookInvalid
from tests.fakes.plivo.helpers import (
    AUTH_ID,
    CALL_UUID,
    REQUEST_UUID,
    TOKEN,
    Carrier,
    provider,
    sign_v3,
    signed_v3,
    webhook,
)

HOOK = "https://voice.example.com/voice/webhook"
LIVE = {
    "CallUUID": CALL_UUID,
    "CallStatus": "in-progress",
    "Direction": "outbound",
    "From": "14155550199",
    "To": "14155550100",
}


def _events(
    flow: str | None = None,
    params: dict[str, str] | None = None,
    *,
    extra: str = "",
    method: str = "POST",
    **kwargs: Any,
) -> list[NormalizedEvent]:
    query = "&".join(filter(None, ["callId=c1", f"flow={flow}" if flow else "", extra]))
    return provider(**kwargs).parse_webhook(webhook(f"{HOOK}?{query}", params, method=method))


def _one(
    flow: str | None = None, params: dict[str, str] | None = None, **kwargs: Any
) -> NormalizedEvent:
    events = _events(flow, params, **kwargs)
    assert len(events) == 1
    return events[0]


def _reply(
    url: str, context: ReplyContext, params: dict[str, str] | None = None, **kwargs: Any
) -> tuple[str, ET.Element]:
    reply = provider(**kwargs).render_reply(webhook(url, params or LIVE), context)
    assert (reply.status, reply.content_type) == (200, "text/xml")
    body = reply.body.decode()
    return body, ET.fromstring(body)


def _tags(document: ET.Element) -> list[str]:
    return [child.tag for child in document]


def call_of(call: Call) -> Call:
    call.refresh_from_db()
    return call


# -- events ----------------------------------------------------------------------------------
def test_digits_are_dtmf() -> None:
    event = _one("getinput", {**LIVE, "Digits": "42#", "Speech": "ignored"})
    assert (event.type, event.digits, event.call_id, event.provider_call_id) == (
        EventType.DTMF,
        "42#",
        "c1",
        CALL_UUID,
    )


@pytest.mark.parametrize(
    "field",
    ["Speech", "Transcription", "TranscriptionText", "SpeechResult", "RecognizedSpeech", "Text"],
)
def test_each_speech_field_is_final_speech(field: str) -> None:
    event = _one("getinput", {**LIVE, field: " hello there "}, extra="turnToken=t9")
    assert (event.type, event.transcript, event.is_final, event.turn_token) == (
        EventType.SPEECH,
        "hello there",
        True,
        "t9",
    )


def test_first_non_empty_speech_field_wins() -> None:
    params = {
        **LIVE,
        "Speech": "  ",
        "Transcription": "",
        "TranscriptionText": "second",
        "Text": "last",
    }
    assert _one("getinput", params).transcript == "second"
    assert _one("getinput", {**LIVE, "Speech": "first", "Text": "last"}).transcript == "first"


def test_speech_confidence() -> None:
    event = _one("getinput", {**LIVE, "Speech": "yes", "SpeechConfidenceScore": "0.82"})
    assert event.confidence == pytest.approx(0.82)
    for bad in ("nan", "7", "x"):
        params = {**LIVE, "Speech": "yes", "SpeechConfidenceScore": bad}
        assert _one("getinput", params).confidence is None


@pytest.mark.parametrize(
    ("status", "type_", "reason"),
    [
        ("ringing", EventType.RINGING, "completed"),
        ("in-progress", EventType.ANSWERED, "completed"),
        ("completed", EventType.ENDED, "completed"),
        ("busy", EventType.ENDED, "busy"),
        ("no-answer", EventType.ENDED, "no-answer"),
        ("failed", EventType.ENDED, "failed"),
        ("timeout", EventType.ENDED, "no-answer"),
        ("cancel", EventType.ENDED, "hangup-bot"),
    ],
)
def test_call_status(status: str, type_: EventType, reason: str) -> None:
    event = _one("hangup", {**LIVE, "CallStatus": status})
    assert (event.type, event.reason) == (type_, reason)


def test_start_app_answers_an_inbound_call_still_ringing() -> None:
    params = {
        "CallUUID": CALL_UUID,
        "CallStatus": "ringing",
        "Event": "StartApp",
        "Direction": "inbound",
        "From": "918031791051",
        "To": "14155550100",
    }
    event = provider().parse_webhook(webhook(HOOK, params))[0]
    assert (event.type, event.call_id, event.provider_call_id, event.direction) == (
        EventType.ANSWERED,
        None,
        CALL_UUID,
        "inbound",
    )
    assert (event.from_number, event.to_number) == ("+918031791051", "+14155550100")


def test_start_app_without_call_uuid_is_not_an_answer() -> None:
    params = {"RequestUUID": REQUEST_UUID, "CallStatus": "ringing", "Event": "StartApp"}
    event = _one("answer", params)
    assert (event.type, event.provider_call_id) == (EventType.RINGING, REQUEST_UUID)


def test_get_input_that_heard_nothing_is_silence() -> None:
    assert _one("getinput", {**LIVE, "Speech": " "}).type == EventType.SILENCE
    ended = _one("getinput", {**LIVE, "CallStatus": "completed"})
    assert (ended.type, ended.reason) == (EventType.ENDED, "completed")


def test_request_uuid_when_no_call_uuid() -> None:
    event = _one("hangup", {"RequestUUID": REQUEST_UUID, "CallStatus": "no-answer"})
    assert (event.provider_call_id, event.reason) == (REQUEST_UUID, "no-answer")


@pytest.mark.parametrize("flow", ["xml-speak", "xml-listen"])
def test_document_fetches_produce_no_events(flow: str) -> None:
    assert _events(flow, {**LIVE, "Event": "StartApp"}) == []


def test_nothing_recognisable_is_no_event() -> None:
    assert _events("answer", {"CallUUID": CALL_UUID}) == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("14155550100", "+14155550100"),
        ("+14155550100", "+14155550100"),
        ("1 415 555-0100", "+14155550100"),
        ("sip:alice@phone.plivo.com", "sip:alice@phone.plivo.com"),
        ("anonymous", "anonymous"),
        ("", None),
    ],
)
def test_numbers_are_normalized_to_e164(raw: str, expected: str | None) -> None:
    event = _one("answer", {**LIVE, "From": raw})
    assert event.from_number == expected


def test_direction() -> None:
    assert _one("answer", {**LIVE, "Direction": "Inbound"}).direction == "inbound"
    assert _one("answer", {**LIVE, "Direction": "sideways"}).direction is None


def test_get_callbacks_read_the_query() -> None:
    event = _one("getinput", {**LIVE, "Speech": "hi"}, method="GET")
    assert (event.type, event.transcript, event.provider_call_id) == (
        EventType.SPEECH,
        "hi",
        CALL_UUID,
    )


def test_event_ids_are_deterministic_and_leave_dedupe_to_the_services() -> None:
    first = _one("getinput", {**LIVE, "Speech": "yes"}, extra="turnToken=t1")
    again = _one("getinput", {**LIVE, "Speech": "yes"}, extra="turnToken=t1")
    other = _one("getinput", {**LIVE, "Speech": "no"}, extra="turnToken=t1")
    assert first.id == again.id != other.id
    assert first.id.startswith("plivo:evt:") and first.dedupe_key is None


def test_bad_input_is_webhook_invalid() -> None:
    with pytest.raises(WebhookInvalid):
        provider().parse_webhook(webhook(f"{HOOK}?callId=c1", body=b"CallUUID=%FF%FE"))
    with pytest.raises(WebhookInvalid, match="Missing CallUUID"):
        provider().parse_webhook(webhook(HOOK, {"CallStatus": "completed"}))


# -- which replies Plivo executes ------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "executed"),
    [
        ("?callId=c1&flow=answer", True),
        ("?callId=c1&flow=getinput", True),
        ("?callId=c1&flow=xml-speak", True),
        ("?callId=c1&flow=xml-listen", True),
        ("?callId=c1&flow=hangup", False),
        ("?callId=c1&flow=other", False),
    ],
)
def test_can_speak_in_reply(query: str, executed: bool) -> None:
    assert provider().can_speak_in_reply(webhook(HOOK + query, LIVE)) is executed


def test_application_answer_url_without_flow_is_a_document_fetch() -> None:
    assert provider().can_speak_in_reply(webhook(HOOK, {**LIVE, "Event": "StartApp"}))
    assert not provider().can_speak_in_reply(webhook(HOOK, {**LIVE, "Event": "Hangup"}))
    assert not provider().can_speak_in_reply(webhook(HOOK, body=b"\xff"))


def test_fetch_call_id_only_for_transfer_documents() -> None:
    plivo = provider()
    assert plivo.fetch_call_id(webhook(f"{HOOK}?callId=c1&flow=xml-speak", LIVE)) == "c1"
    assert plivo.fetch_call_id(webhook(f"{HOOK}?callId=c1&flow=xml-listen", LIVE)) == "c1"
    assert plivo.fetch_call_id(webhook(f"{HOOK}?callId=c1&flow=answer", LIVE)) is None


# -- reply policy ----------------------------------------------------------------------------
LIVE_CALL = ReplyContext(call_id="c1", known=True, state="answered")


def test_replay_gets_an_empty_document() -> None:
    body, _ = _reply(f"{HOOK}?callId=c1&flow=answer", ReplyContext(replay=True))
    assert body == "<Response></Response>"


def test_rejected_inbound_call_is_hung_up_in_the_reply() -> None:
    body, _ = _reply(HOOK, ReplyContext(rejected=True), {**LIVE, "Event": "StartApp"})
    assert body == '<Response><Hangup reason="rejected"/></Response>'


def test_speech_without_listening() -> None:
    context = ReplyContext(call_id="c1", known=True, speech=Speech(text="Your code is 42"))
    body, document = _reply(f"{HOOK}?callId=c1&flow=answer", context)
    assert body == (
        '<Response><Speak language="en-US">Your code is 42</Speak><Wait length="300"/></Response>'
    )


def test_speech_then_listening() -> None:
    context = ReplyContext(
        call_id="c1",
        known=True,
        speech=Speech(text="How can I help?", listen=True, turn_token="t1", language="de-DE"),
    )
    _, document = _reply(f"{HOOK}?callId=c1&flow=answer", context)
    assert _tags(document) == ["Speak", "GetInput", "Wait"]
    get_input = document.find("GetInput")
    assert get_input is not None and get_input.attrib == {
        "action": f"{HOOK}?callId=c1&flow=getinput&turnToken=t1",
        "method": "POST",
        "inputType": "speech",
        "executionTimeout": "30",
        "speechEndTimeout": "2",
        "language": "de-DE",
        "redirect": "true",
    }
    assert document.find("Speak").get("language") == "de-DE"  # type: ignore[union-attr]
    assert document.find("Wait").get("length") == "300"  # type: ignore[union-attr]


def test_listen_without_words_renders_only_get_input() -> None:
    context = ReplyContext(call_id="c1", speech=Speech(text=None, listen=True))
    _, document = _reply(f"{HOOK}?callId=c1&flow=xml-speak", context)
    assert _tags(document) == ["GetInput", "Wait"]


@pytest.mark.parametrize("flow", ["answer", "getinput"])
def test_live_call_without_speech_is_kept_alive(flow: str) -> None:
    body, _ = _reply(f"{HOOK}?callId=c1&flow={flow}", LIVE_CALL)
    assert body == '<Response><Wait length="300"/></Response>'


@pytest.mark.parametrize(
    "context", [ReplyContext(), ReplyContext(call_id="c1", known=True, state="completed")]
)
def test_unknown_or_finished_call_gets_an_empty_document(context: ReplyContext) -> None:
    body, _ = _reply(f"{HOOK}?callId=c1&flow=answer", context)
    assert body == "<Response></Response>"


def test_speak_fetch_with_nothing_pending_keeps_the_call() -> None:
    body, _ = _reply(f"{HOOK}?callId=c1&flow=xml-speak", ReplyContext())
    assert body == '<Response><Wait length="300"/></Response>'


def test_listen_fetch_listens_for_the_turn() -> None:
    _, document = _reply(f"{HOOK}?callId=c1&flow=xml-listen&turnToken=t4", ReplyContext())
    assert _tags(document) == ["GetInput", "Wait"]
    assert document.find("GetInput").get("action") == (  # type: ignore[union-attr]
        f"{HOOK}?callId=c1&flow=getinput&turnToken=t4"
    )


def test_pending_speech_on_a_speak_fetch() -> None:
    context = ReplyContext(speech=Speech(text="Next question", listen=True, turn_token="t2"))
    _, document = _reply(f"{HOOK}?callId=c1&flow=xml-speak", context)
    assert _tags(document) == ["Speak", "GetInput", "Wait"]
    assert "callId=c1" in document.find("GetInput").get("action")  # type: ignore[union-attr]


@pytest.mark.parametrize("query", ["?callId=c1&flow=hangup", "?callId=c1"])
def test_callbacks_that_are_not_executed_get_an_empty_document(query: str) -> None:
    context = ReplyContext(
        call_id="c1", known=True, state="answered", speech=Speech(text="never said")
    )
    body, _ = _reply(HOOK + query, context, {**LIVE, "Event": "Hangup"})
    assert body == "<Response></Response>"


def test_inbound_application_answer_carries_the_greeting() -> None:
    context = ReplyContext(
        call_id="new-1",
        known=True,
        accepted_inbound=True,
        speech=Speech(text="Hello!", listen=True),
    )
    _, document = _reply(HOOK, context, {**LIVE, "Event": "StartApp", "Direction": "inbound"})
    assert document.find("GetInput").get("action") == (  # type: ignore[union-attr]
        f"{HOOK}?callId=new-1&flow=getinput"
    )


def test_spoken_text_is_escaped() -> None:
    text = "Tom & Jerry <3 \"quoted\" 'single' </Speak><Hangup/>"
    context = ReplyContext(call_id="c1", speech=Speech(text=text))
    body, document = _reply(f"{HOOK}?callId=c1&flow=answer", context)
    assert "&amp;" in body and "&lt;3" in body and "<Hangup" not in body
    assert document.find("Speak").text == text  # type: ignore[union-attr]


def test_turn_token_in_action_is_escaped_and_encoded() -> None:
    context = ReplyContext(call_id="c1", speech=Speech(text="x", listen=True, turn_token='a&b"<c'))
    _, document = _reply(f"{HOOK}?callId=c1&flow=answer", context)
    assert (
        document.find("GetInput")
        .get("action")
        .endswith(  # type: ignore[union-attr]
            "turnToken=a%26b%22%3Cc"
        )
    )


def test_control_characters_do_not_break_the_reply() -> None:
    context = ReplyContext(
        call_id="c1", speech=Speech(text="bell\x07 and\x00 null", language="\x01", listen=True)
    )
    _, document = _reply(f"{HOOK}?callId=c1&flow=answer", context)
    assert document.find("Speak").text == "bell  and  null"  # type: ignore[union-attr]
    assert document.find("GetInput").get("language") == "en-US"  # type: ignore[union-attr]


# -- where the next request goes ---------------------------------------------------------------
def _action(url: str, **kwargs: Any) -> str:
    context = ReplyContext(call_id="c1", speech=Speech(text="x", listen=True))
    request = webhook(url, LIVE, host="voice.example.com")
    document = ET.fromstring(provider(**kwargs).render_reply(request, context).body)
    return str(document.find("GetInput").get("action"))  # type: ignore[union-attr]


def test_action_uses_the_reconstructed_origin_and_serve_path() -> None:
    assert _action("https://voice.example.com/voice/webhook?callId=c1&flow=answer") == (
        "https://voice.example.com/voice/webhook?callId=c1&flow=getinput"
    )


def test_action_uses_public_url_with_its_path() -> None:
    assert _action(
        f"{HOOK}?callId=c1&flow=answer", publicUrl="https://edge.example.net/hooks/plivo"
    ) == ("https://edge.example.net/hooks/plivo?callId=c1&flow=getinput")
    assert _action(f"{HOOK}?callId=c1&flow=answer", publicUrl="https://edge.example.net") == (
        "https://edge.example.net/voice/webhook?callId=c1&flow=getinput"
    )


# -- through the webhook view and the services ------------------------------------------------
OUR_NUMBER = "+15550100000"
CALLEE = "+15555550123"
PUBLIC_URL = "https://voice.example.com/voice/webhook"


class _Line:
    """Signed Plivo deliveries into our serve path, and the Voice API requests we made."""

    def __init__(self, configure: Any, **config: Any) -> None:
        configure(
            {
                "provider": "plivo",
                "plivo": {"authId": AUTH_ID, "authToken": TOKEN},
                "fromNumber": OUR_NUMBER,
                "publicUrl": PUBLIC_URL,
                **config,
            }
        )
        self.carrier = Carrier(
            httpx.Response(201, json={"request_uuid": REQUEST_UUID}),
            httpx.Response(202, json={"message": "call transferred"}),
        )
        set_provider(provider(self.carrier, publicUrl=PUBLIC_URL))
        self.nonces = itertools.count(1000)

    def post(
        self, client: Client, url: str, params: dict[str, str], nonce: str | None = None
    ) -> Any:
        nonce = nonce or str(next(self.nonces))
        signature = sign_v3(url, params, nonce)
        parts = urlsplit(url)
        return client.post(
            f"{parts.path}?{parts.query}",
            urlencode(params),
            content_type="application/x-www-form-urlencoded",
            headers=signed_v3(signature, nonce),
        )

    def json(self, index: int = -1) -> dict[str, Any]:
        return json.loads(self.carrier.requests[index].content)  # type: ignore[no-any-return]


def _document(response: Any) -> ET.Element:
    assert (response.status_code, response["Content-Type"]) == (200, "text/xml")
    return ET.fromstring(response.content)


@pytest.mark.django_db
def test_outbound_conversation_speaks_by_xml_transfer(client: Client, configure: Any) -> None:
    line = _Line(configure)
    call = call_initiate(to=CALLEE, message="Hi there", mode="conversation")
    dial = line.json(0)
    assert dial["answer_url"] == f"{PUBLIC_URL}?callId={call.call_id}&flow=answer"
    assert (dial["from"], dial["to"]) == (OUR_NUMBER, CALLEE)

    answered = {
        **LIVE,
        "Event": "StartApp",
        "RequestUUID": REQUEST_UUID,
        "From": OUR_NUMBER[1:],
        "To": CALLEE[1:],
    }
    document = _document(line.post(client, dial["answer_url"], answered))
    # The words, then a <Redirect> Plivo fetches once they were said.
    assert _tags(document) == ["Speak", "Redirect"]
    assert document.find("Speak").text == "Hi there"  # type: ignore[union-attr]
    report = str(document.find("Redirect").text)  # type: ignore[union-attr]
    (greeting,) = call_of(call).metadata["utterancesInFlight"]
    assert report == (
        f"{PUBLIC_URL}?callId={call.call_id}&flow=spoken&utteranceId={greeting['id']}&listen=1"
    )
    call.refresh_from_db()
    assert (call.provider_call_id, call.state) == (CALL_UUID, "listening")
    assert not TranscriptEntry.objects.exists()  # handed over, not yet heard

    listening = _document(line.post(client, report, LIVE))
    assert _tags(listening) == ["GetInput", "Wait"]  # the greeting said: listen now
    action = str(listening.find("GetInput").get("action"))  # type: ignore[union-attr]
    assert action == f"{PUBLIC_URL}?callId={call.call_id}&flow=getinput"
    assert list(TranscriptEntry.objects.values_list("speaker", "text", "utterance_id")) == [
        ("bot", "Hi there", greeting["id"])
    ]

    heard = _document(line.post(client, action, {**LIVE, "Speech": "book a table"}))
    assert _tags(heard) == ["Wait"]
    assert TranscriptEntry.objects.get(call=call, speaker="user").text == "book a table"

    call_speak(call_id=call.call_id, message="Sure & <done>")
    transfer = line.json()
    assert transfer == {
        "legs": "aleg",
        "aleg_method": "POST",
        "aleg_url": f"{PUBLIC_URL}?callId={call.call_id}&flow=xml-speak",
    }
    assert str(line.carrier.requests[-1].url).endswith(f"/Call/{CALL_UUID}/")
    spoken = _document(line.post(client, transfer["aleg_url"], LIVE))
    assert _tags(spoken) == ["Speak", "Redirect"]
    assert spoken.find("Speak").text == "Sure & <done>"  # type: ignore[union-attr]
    again = _document(line.post(client, transfer["aleg_url"], LIVE))
    assert _tags(again) == ["Wait"]  # the words are said once; the fetch keeps the line
    held = _document(line.post(client, str(spoken.find("Redirect").text), LIVE))  # type: ignore[union-attr]
    assert _tags(held) == ["Wait"]  # said, and nobody asked to listen: hold the line
    assert TranscriptEntry.objects.filter(speaker="bot").count() == 2

    hangup = dial["hangup_url"]
    line.post(client, hangup, {**LIVE, "CallStatus": "completed", "Event": "Hangup"})
    call.refresh_from_db()
    assert (call.state, call.end_reason) == ("completed", "completed")


@pytest.mark.django_db
def test_inbound_call_on_the_application_answer_url_is_greeted(
    client: Client, configure: Any
) -> None:
    line = _Line(configure, inboundPolicy="open", inboundGreeting="Welcome!")
    ringing = {
        "CallUUID": CALL_UUID,
        "CallStatus": "ringing",
        "Event": "StartApp",
        "Direction": "inbound",
        "From": "15550001111",
        "To": OUR_NUMBER[1:],
    }
    document = _document(line.post(client, PUBLIC_URL, ringing))
    call = Call.objects.get()
    assert (call.direction, call.from_number, call.to_number) == (
        "inbound",
        "+15550001111",
        OUR_NUMBER,
    )
    assert document.find("Speak").text == "Welcome!"  # type: ignore[union-attr]
    report = str(document.find("Redirect").text)  # type: ignore[union-attr]
    assert report.startswith(f"{PUBLIC_URL}?callId={call.call_id}&flow=spoken&utteranceId=")
    listening = _document(line.post(client, report, {**ringing, "CallStatus": "in-progress"}))
    assert listening.find("GetInput").get("action") == (  # type: ignore[union-attr]
        f"{PUBLIC_URL}?callId={call.call_id}&flow=getinput"
    )
    assert line.carrier.requests == []


@pytest.mark.django_db
def test_rejected_inbound_call_is_refused_in_the_reply(client: Client, configure: Any) -> None:
    line = _Line(configure, inboundPolicy="allowlist", allowFrom=["+15559999999"])
    ringing = {
        "CallUUID": CALL_UUID,
        "CallStatus": "ringing",
        "Event": "StartApp",
        "Direction": "inbound",
        "From": "15550001111",
        "To": OUR_NUMBER[1:],
    }
    response = line.post(client, PUBLIC_URL, ringing)
    assert response.content == b'<Response><Hangup reason="rejected"/></Response>'
    assert Call.objects.get().state == "hangup-bot"
    assert line.carrier.requests == []  # no REST hang-up: the reply refused the call


@pytest.mark.django_db
def test_replayed_delivery_changes_nothing(client: Client, configure: Any) -> None:
    line = _Line(configure)
    call = call_initiate(to=CALLEE, message="Hi", mode="notify")
    url = line.json(0)["answer_url"]
    first = line.post(client, url, {**LIVE, "Event": "StartApp"}, nonce="42")
    assert b"<Speak" in first.content
    replay = line.post(client, url, {**LIVE, "Event": "StartApp"}, nonce="42")
    # Plivo re-fetches when our answer never reached it: it gets the same document again,
    # not an empty one that would hang up; the message is handed over once.
    assert replay.content == first.content
    call.refresh_from_db()
    assert [u["text"] for u in call.metadata["utterancesInFlight"]] == ["Hi"]


@pytest.mark.django_db
def test_a_notify_message_heard_waits_the_delay_then_hangs_up_in_the_reply(
    client: Client, configure: Any, fake_clock: Any
) -> None:
    line = _Line(configure, outbound={"notifyHangupDelaySec": 4})
    call = call_initiate(to=CALLEE, message="Your parcel is here", mode="notify")
    url = line.json(0)["answer_url"]
    answer = _document(line.post(client, url, {**LIVE, "Event": "StartApp"}))
    assert _tags(answer) == ["Speak", "Redirect"]
    report = str(answer.find("Redirect").text)  # type: ignore[union-attr]
    assert "listen" not in report
    assert not TranscriptEntry.objects.exists()

    fake_clock.advance(seconds=20)  # however long Plivo takes to say it
    ending = line.post(client, report, LIVE)
    assert ending.content == b'<Response><Wait length="4"/><Hangup/></Response>'
    assert TranscriptEntry.objects.get(call=call).text == "Your parcel is here"
    # Plivo hangs up by itself; our timer is only the net, a little after.
    call.refresh_from_db()
    assert fake_clock.now() + timedelta(seconds=4) < call.notify_hangup_at
    assert call.notify_hangup_at <= fake_clock.now() + timedelta(seconds=4 + 10)
    assert [r.method for r in line.carrier.requests] == ["POST"]  # the dial; no hang-up


@pytest.mark.django_db
def test_a_report_of_words_nobody_sent_changes_nothing(client: Client, configure: Any) -> None:
    line = _Line(configure)
    call = call_initiate(to=CALLEE, message="Hi there", mode="conversation")
    line.post(client, line.json(0)["answer_url"], {**LIVE, "Event": "StartApp"})
    in_flight = call_of(call).metadata["utterancesInFlight"]

    for query in (
        f"callId={call.call_id}&flow=spoken&utteranceId=not-ours",
        f"callId={call.call_id}&flow=spoken",
        "callId=2d1c3a40-0000-4000-8000-000000000000&flow=spoken&utteranceId=x",
    ):
        response = line.post(client, f"{PUBLIC_URL}?{query}", LIVE)
        assert response.status_code == 200
    assert not TranscriptEntry.objects.exists()
    assert call_of(call).metadata["utterancesInFlight"] == in_flight
    assert Call.objects.count() == 1


@pytest.mark.django_db
def test_unsigned_or_forged_delivery_is_refused(client: Client, configure: Any) -> None:
    _Line(configure, inboundPolicy="open")
    params = {
        "CallUUID": CALL_UUID,
        "CallStatus": "ringing",
        "Event": "StartApp",
        "Direction": "inbound",
        "From": "15550001111",
        "To": "15550100000",
    }
    unsigned = client.post(
        "/voice/webhook", urlencode(params), content_type="application/x-www-form-urlencoded"
    )
    forged = client.post(
        "/voice/webhook",
        urlencode(params),
        content_type="application/x-www-form-urlencoded",
        headers=signed_v3("AAAA", "1"),
    )
    assert (unsigned.status_code, forged.status_code) == (401, 401)
    assert not Call.objects.exists()

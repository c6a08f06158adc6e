"""Telnyx webhook parsing: every event mapping, inbound identity, hangup causes, bad input."""

from __future__ import annotations

import base64
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.test import Client

from calls.carrier import set_provider
from calls.models import Call, TranscriptEntry
from calls.services.carrier_commands import UNHEARD_MESSAGE_DEADLINE
from providers.base import EventType, ReplyContext
from providers.errors import WebhookInvalid
from providers.telnyx.webhooks import END_REASONS, SDK_END_REASONS
from tests.fakes.signing import telnyx_headers, telnyx_public_key_b64
from tests.fakes.telnyx.helpers import (
    CALL_CONTROL_ID,
    Carrier,
    envelope,
    provider,
    webhook,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fakes" / "telnyx"
CALL_ID = "0b7c8e52-6d0c-4a55-9d43-5c1f00000001"
TURN = "5f0c6a7e9d2b4c1a8e3f000000000009"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _parse(body: bytes) -> list[Any]:
    return provider().parse_webhook(webhook(body))


def _one(event_type: str, **payload: Any) -> Any:
    events = _parse(envelope(event_type, {"client_state": _b64(CALL_ID), **payload}))
    assert len(events) == 1
    return events[0]


# -- identity -------------------------------------------------------------------------------------
def test_k1_inbound_initiated_carries_direction_and_numbers() -> None:
    [event] = _parse((FIXTURES / "k1_call_initiated.json").read_bytes())
    assert event.type == EventType.INITIATED
    assert (event.direction, event.from_number, event.to_number) == (
        "inbound",
        "+14155550100",
        "+14155550199",
    )
    assert event.call_id is None  # client_state null: the services register the call
    assert event.provider_call_id == CALL_CONTROL_ID
    assert event.id == "0ccc7b54-4df3-4bca-a65a-3da1ecc777f0"
    assert event.dedupe_key == "telnyx:0ccc7b54-4df3-4bca-a65a-3da1ecc777f0"
    assert event.timestamp == datetime(2025, 7, 1, 12, 0, tzinfo=UTC)


def test_k2_foreign_client_state_is_not_taken_for_a_call_id() -> None:
    [event] = _parse((FIXTURES / "k2_call_hangup.json").read_bytes())
    assert (event.type, event.reason) == (EventType.ENDED, "completed")
    assert (event.call_id, event.turn_token) == (None, None)  # {"session":"abc123"}
    assert event.provider_call_id == CALL_CONTROL_ID


def test_outbound_initiated_names_our_call() -> None:
    event = _one("call.initiated", direction="outgoing", **{"from": "+1555", "to": "+1666"})
    assert (event.call_id, event.direction, event.turn_token) == (CALL_ID, "outbound", None)


def test_client_state_with_a_turn_token() -> None:
    events = _parse(
        envelope(
            "call.transcription",
            {
                "client_state": _b64(f"{CALL_ID}:{TURN}"),
                "transcription_data": {"transcript": "hi", "is_final": True},
            },
        )
    )
    assert (events[0].call_id, events[0].turn_token) == (CALL_ID, TURN)


@pytest.mark.parametrize(
    "state",
    [
        "%%%not-base64%%%",
        base64.b64encode(b"\xff\xfe").decode(),
        _b64(""),
        42,
        _b64("has space:tok"),
        _b64('{"a":1}'),
    ],
)
def test_undecodable_client_state_gives_no_call_id(state: Any) -> None:
    [event] = _parse(envelope("call.answered", {"client_state": state}))
    assert (event.call_id, event.turn_token) == (None, None)
    assert event.provider_call_id == CALL_CONTROL_ID


def test_bad_turn_token_keeps_the_call_id() -> None:
    [event] = _parse(envelope("call.answered", {"client_state": _b64(f"{CALL_ID}:bad token")}))
    assert (event.call_id, event.turn_token) == (CALL_ID, None)


def test_event_without_id_gets_a_random_one_and_no_dedupe_key() -> None:
    [first] = _parse(envelope("call.answered", event_id=None))
    [second] = _parse(envelope("call.answered", event_id=None))
    assert first.id != second.id and first.dedupe_key is None


@pytest.mark.parametrize("value", [None, "yesterday", 17])
def test_unreadable_occurred_at_is_dropped(value: Any) -> None:
    [event] = _parse(envelope("call.answered", occurred_at=value))
    assert event.timestamp is None


# -- event mappings ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("telnyx", "ours"),
    [
        ("call.initiated", EventType.INITIATED),
        ("call.ringing", EventType.RINGING),
        ("call.answered", EventType.ANSWERED),
        ("call.bridged", EventType.ACTIVE),
        ("call.speak.started", EventType.SPEAKING),
        ("call.hangup", EventType.ENDED),
        ("call.dtmf.received", EventType.DTMF),
        ("call.transcription", EventType.SPEECH),
    ],
)
def test_event_types(telnyx: str, ours: EventType) -> None:
    assert _one(telnyx).type == ours


@pytest.mark.parametrize(
    "telnyx",
    [
        "call.gather.ended",
        "streaming.started",
        "call.playback.ended",
        "call.recording.saved",
        "call.cost",
        "something.new",
    ],
)
def test_other_events_are_ignored(telnyx: str) -> None:
    assert _parse(envelope(telnyx)) == []


def test_final_transcription() -> None:
    event = _one(
        "call.transcription",
        transcription_data={
            "transcript": "I'd like a table for two",
            "is_final": True,
            "confidence": 0.93,
            "transcription_track": "inbound",
        },
    )
    assert (event.transcript, event.is_final, event.confidence) == (
        "I'd like a table for two",
        True,
        0.93,
    )


def test_partial_transcription_and_null_confidence() -> None:
    event = _one(
        "call.transcription",
        transcription_data={"transcript": "I'd like", "is_final": False, "confidence": None},
    )
    assert (event.transcript, event.is_final, event.confidence) == ("I'd like", False, None)


def test_transcription_without_is_final_is_final() -> None:
    assert _one("call.transcription", transcription_data={"transcript": "yes"}).is_final


def test_outbound_track_transcription_is_our_own_voice() -> None:
    events = _parse(
        envelope(
            "call.transcription",
            {
                "transcription_data": {
                    "transcript": "Hello! How can I help?",
                    "transcription_track": "outbound",
                }
            },
        )
    )
    assert events == []


def test_dtmf_digit() -> None:
    assert _one("call.dtmf.received", digit="7").digits == "7"


def test_speak_started_is_speaking() -> None:
    event = _one("call.speak.started")
    assert (event.type, event.text) == (EventType.SPEAKING, "")


def test_speak_ended_reports_the_utterance_its_client_state_names() -> None:
    state = _b64(f"{CALL_ID}:{TURN}:utt-1")
    [event] = _parse(envelope("call.speak.ended", {"client_state": state, "status": "completed"}))
    assert (event.type, event.call_id, event.turn_token) == (EventType.SPOKEN, CALL_ID, TURN)
    assert (event.utterance_id, event.interrupted) == ("utt-1", False)
    assert event.payload() == {"turnToken": TURN, "utteranceId": "utt-1", "interrupted": False}


def test_speak_ended_without_a_turn_or_an_utterance() -> None:
    event = _one("call.speak.ended", client_state=_b64(f"{CALL_ID}::utt-2"))
    assert (event.call_id, event.turn_token, event.utterance_id) == (CALL_ID, None, "utt-2")
    # A state set after the speak (transcription_stop's) names no utterance: still a report.
    event = _one("call.speak.ended", status="completed")
    assert (event.type, event.call_id, event.utterance_id) == (EventType.SPOKEN, CALL_ID, None)


@pytest.mark.parametrize(
    ("status", "interrupted"),
    [("completed", False), ("call_hangup", True), ("cancelled_amd", True), (None, False)],
)
def test_speak_ended_status_says_whether_the_words_were_cut_off(
    status: str | None, interrupted: bool
) -> None:
    assert _one("call.speak.ended", status=status).interrupted is interrupted


# -- hangup causes (docs/plugin-behaviour.md, "End reasons", with the SDK's) ----------------------
@pytest.mark.parametrize(("cause", "reason"), sorted(END_REASONS.items()))
def test_hangup_cause_reference_table(cause: str, reason: str) -> None:
    assert _one("call.hangup", hangup_cause=cause).reason == reason


def test_reference_table_is_complete() -> None:
    assert END_REASONS == {
        "normal_clearing": "completed",
        "normal_unspecified": "completed",
        "originator_cancel": "hangup-bot",
        "call_rejected": "busy",
        "user_busy": "busy",
        "no_answer": "no-answer",
        "no_user_response": "no-answer",
        "destination_out_of_order": "failed",
        "network_out_of_order": "failed",
        "service_unavailable": "failed",
        "recovery_on_timer_expire": "failed",
        "machine_detected": "voicemail",
        "fax_detected": "voicemail",
        "user_hangup": "hangup-user",
        "subscriber_absent": "hangup-user",
    }


@pytest.mark.parametrize(("cause", "reason"), sorted(SDK_END_REASONS.items()))
def test_hangup_cause_sdk_extras(cause: str, reason: str) -> None:
    assert _one("call.hangup", hangup_cause=cause).reason == reason


@pytest.mark.parametrize("cause", ["brand_new_cause", None, ""])
def test_unknown_hangup_cause_is_completed_with_a_warning(
    cause: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="providers.telnyx.webhooks"):
        assert _one("call.hangup", hangup_cause=cause).reason == "completed"
    assert "unknown" in caplog.text


# -- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe"])
def test_bad_json_is_invalid(body: bytes) -> None:
    with pytest.raises(WebhookInvalid):
        _parse(body)


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b"[]",
        b"null",
        b'{"data": "x"}',
        b'{"data": {"payload": {}}}',
        b'{"data": {"event_type": ""}}',
    ],
)
def test_missing_data_or_event_type_gives_no_events(body: bytes) -> None:
    assert _parse(body) == []


def test_non_object_payload_is_tolerated() -> None:
    [event] = _parse(b'{"data": {"event_type": "call.answered", "payload": [1, 2]}}')
    assert (event.type, event.provider_call_id, event.call_id) == (EventType.ANSWERED, None, None)


@pytest.mark.parametrize(
    "payload",
    [
        {"transcription_data": "oops"},
        {"transcription_data": {"transcript": 5}},
        {"digit": None},
        {"direction": ["incoming"], "from": 5, "to": {}},
        {"call_control_id": 17, "hangup_cause": 3},
    ],
)
def test_odd_payload_values_never_raise(payload: dict[str, Any]) -> None:
    for event_type in ("call.transcription", "call.dtmf.received", "call.initiated", "call.hangup"):
        _parse(envelope(event_type, payload))


# -- reply -----------------------------------------------------------------------------------------
def test_reply_is_always_ok_text() -> None:
    adapter = provider()
    request = webhook(envelope("call.answered"))
    for context in (
        ReplyContext(),
        ReplyContext(replay=True),
        ReplyContext(rejected=True),
        ReplyContext(accepted_inbound=True),
    ):
        reply = adapter.render_reply(request, context)
        assert (reply.status, reply.body, reply.content_type) == (200, b"OK", "text/plain")
    assert adapter.can_speak_in_reply(request) is False


# -- through the webhook view and the services ------------------------------------------------
CALLER = "+15550001111"
OUR_NUMBER = "+15550000000"


class _Line:
    """A signed Telnyx delivery channel into our serve path, and the carrier commands we sent."""

    def __init__(self, configure: Any, **config: Any) -> None:
        self.key = Ed25519PrivateKey.generate()
        telnyx = {
            "apiKey": "KEY_test",
            "connectionId": "123",
            "publicKey": telnyx_public_key_b64(self.key),
        }
        configure(
            {
                "provider": "telnyx",
                "telnyx": telnyx,
                "fromNumber": OUR_NUMBER,
                "publicUrl": "https://voice.example.com/voice/webhook",
                **config,
            }
        )
        self.carrier = Carrier()
        adapter = provider(self.carrier, now=time.time(), publicKey=telnyx["publicKey"])
        set_provider(adapter)

    def post(self, client: Client, body: bytes, *, age: int = 0) -> Any:
        ts = str(int(time.time()) - age)
        return client.post(
            "/voice/webhook",
            body,
            content_type="application/json",
            headers=telnyx_headers(self.key, body, ts),
        )

    def actions(self) -> list[str]:
        return [path.rsplit("/", 1)[-1] for path in self.carrier.paths()]


def _inbound_initiated(event_id: str = "evt-init") -> bytes:
    return envelope(
        "call.initiated",
        {
            "direction": "incoming",
            "from": CALLER,
            "to": OUR_NUMBER,
            "state": "parked",
            "client_state": None,
        },
        event_id=event_id,
    )


@pytest.mark.django_db
def test_accepted_inbound_call_is_answered_greeted_and_heard(
    client: Client, configure: Any
) -> None:
    line = _Line(configure, inboundPolicy="allowlist", allowFrom=[CALLER])
    assert line.post(client, _inbound_initiated()).status_code == 200
    call = Call.objects.get(provider_call_id=CALL_CONTROL_ID)
    assert (call.direction, call.from_number, call.state) == ("inbound", CALLER, "ringing")
    assert line.actions() == ["answer"]
    assert line.carrier.json()["client_state"] == _b64(call.call_id)

    state = _b64(call.call_id)
    line.post(client, envelope("call.answered", {"client_state": state}, event_id="evt-ans"))
    assert line.actions() == ["answer", "speak", "transcription_start"]
    assert line.carrier.json(1)["payload"]
    line.post(
        client,
        envelope(
            "call.transcription",
            {
                "client_state": state,
                "transcription_data": {"transcript": "Book me a table", "is_final": True},
            },
            event_id="evt-tr",
        ),
    )
    assert TranscriptEntry.objects.filter(call=call, speaker="user").get().text == (
        "Book me a table"
    )
    line.post(
        client,
        envelope(
            "call.hangup",
            {"client_state": state, "hangup_cause": "normal_clearing"},
            event_id="evt-end",
        ),
    )
    call.refresh_from_db()
    assert (call.state, call.end_reason) == ("completed", "completed")


@pytest.mark.django_db
def test_a_notify_message_is_heard_when_telnyx_says_the_speak_ended(
    client: Client, configure: Any, fake_clock: Any, make_call: Any
) -> None:
    line = _Line(configure, outbound={"notifyHangupDelaySec": 2})
    call = make_call(
        provider="telnyx",
        provider_call_id=CALL_CONTROL_ID,
        mode="notify",
        state="ringing",
        metadata={"mode": "notify", "initialMessage": "Your parcel is here"},
    )
    line.post(client, envelope("call.answered", {"client_state": _b64(call.call_id)}, event_id="a"))
    assert line.actions() == ["speak"]
    speak = line.carrier.json()
    assert speak["payload"] == "Your parcel is here"
    call.refresh_from_db()
    (in_flight,) = call.metadata["utterancesInFlight"]
    assert _b64(f"{call.call_id}::{in_flight['id']}") == speak["client_state"]
    # Sent is not heard: no line, and only the net for a report that never comes.
    assert not TranscriptEntry.objects.exists()
    assert call.notify_hangup_at == fake_clock.now() + UNHEARD_MESSAGE_DEADLINE

    fake_clock.advance(seconds=9)
    ended = envelope(
        "call.speak.ended",
        {"client_state": speak["client_state"], "status": "completed"},
        event_id="e",
    )
    assert line.post(client, ended).status_code == 200
    assert line.post(client, ended, age=1).status_code == 200  # redelivered: same data.id
    assert list(TranscriptEntry.objects.values_list("text", "utterance_id", "interrupted")) == [
        ("Your parcel is here", in_flight["id"], False)
    ]
    call.refresh_from_db()
    assert call.notify_hangup_at == fake_clock.now() + timedelta(seconds=2)
    assert "utterancesInFlight" not in call.metadata

    # Another speak.ended naming words nobody sent: 200, nothing changes.
    stray = envelope(
        "call.speak.ended",
        {"client_state": _b64(f"{call.call_id}::not-ours"), "status": "completed"},
        event_id="f",
    )
    assert line.post(client, stray).status_code == 200
    assert TranscriptEntry.objects.count() == 1


@pytest.mark.django_db
def test_replayed_inbound_delivery_is_answered_once(client: Client, configure: Any) -> None:
    line = _Line(configure, inboundPolicy="open")
    body = _inbound_initiated()
    assert line.post(client, body).content == b"OK"
    assert line.post(client, body).status_code == 200  # the same signed request again
    assert line.post(client, body, age=2).status_code == 200  # a retry: new signature, same id
    assert line.actions() == ["answer"]


@pytest.mark.django_db
def test_transcription_answers_only_the_turn_its_client_state_names(
    client: Client, configure: Any
) -> None:
    line = _Line(configure, inboundPolicy="open")
    line.post(client, _inbound_initiated())
    call = Call.objects.get()
    line.post(client, envelope("call.answered", {"client_state": _b64(call.call_id)}))
    Call.objects.filter(pk=call.pk).update(turn_token=TURN)
    for event_id, token, words in (("t-old", "0" * 32, "stale words"), ("t-now", TURN, "yes")):
        line.post(
            client,
            envelope(
                "call.transcription",
                {
                    "client_state": _b64(f"{call.call_id}:{token}"),
                    "transcription_data": {"transcript": words, "is_final": True},
                },
                event_id=event_id,
            ),
        )
    heard = TranscriptEntry.objects.filter(call=call, speaker="user")
    assert [(e.text, e.turn_token) for e in heard] == [("yes", TURN)]


@pytest.mark.django_db
def test_rejected_inbound_call_is_hung_up(client: Client, configure: Any) -> None:
    line = _Line(configure, inboundPolicy="allowlist", allowFrom=["+15559999999"])
    line.post(client, _inbound_initiated())
    assert Call.objects.get().state == "hangup-bot"
    assert line.actions() == ["hangup"]


@pytest.mark.django_db
def test_unsigned_delivery_is_refused(client: Client, configure: Any) -> None:
    line = _Line(configure, inboundPolicy="open")
    response = client.post("/voice/webhook", _inbound_initiated(), content_type="application/json")
    assert response.status_code == 401 and line.actions() == []

"""What an answered call owes (calls/services/answering.py), called directly.

On answer: pre-connect digits go out first (by an owed carrier command), an inbound call
answered by command starts its stream by command, and the greeting is said in the reply
document, by command, or left for the media stream.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from calls.models import Call, CarrierCommand, TranscriptEntry
from calls.services.answering import call_answered
from calls.services.carrier_commands import UNHEARD_MESSAGE_DEADLINE
from calls.services.speech import InlineReply
from providers.base import EventType, NormalizedEvent, Speech

pytestmark = pytest.mark.django_db

STREAM_URL = "wss://v.example/voice/stream"


def _answered(call: Call) -> NormalizedEvent:
    return NormalizedEvent(
        type=EventType.ANSWERED,
        id="answered-1",
        call_id=call.call_id,
        provider_call_id=call.provider_call_id,
    )


def _outbound(make_call: Any, mode: str = "conversation", **metadata: Any) -> Call:
    return make_call(
        state="ringing",
        mode=mode,
        metadata={"mode": mode, "initialMessage": "Hi, this is Acme.", **metadata},
    )


@pytest.fixture
def streaming(monkeypatch: pytest.MonkeyPatch) -> None:
    """Streams are possible (the config refuses streaming.enabled on the mock carrier)."""
    for module in ("calls.services.stream_plans", "calls.services.answering"):
        monkeypatch.setattr(f"{module}.streaming_possible", lambda: True)
    monkeypatch.setattr("calls.services.stream_plans.stream_url", lambda: STREAM_URL)


def test_answer_sets_the_answer_time_and_the_max_duration_deadline(
    mock_carrier: Any, make_call: Any, fake_clock: Any, configure: Any
) -> None:
    configure({"maxDurationSeconds": 90})
    call = _outbound(make_call)
    call_answered(call, _answered(call), None)
    call.refresh_from_db()
    assert call.answered_at == fake_clock.now()
    assert call.max_duration_at == fake_clock.now() + timedelta(seconds=90)
    assert call.ring_deadline_at is None


def test_pre_connect_digits_are_owed_and_sent_before_the_greeting(
    mock_carrier: Any, make_call: Any
) -> None:
    call = _outbound(make_call, dtmfSequence="ww123#")
    call_answered(call, _answered(call), None)
    assert [op for op, _ in mock_carrier.sent] == ["send_dtmf", "play_text", "start_listening"]
    assert mock_carrier.sent[0] == ("send_dtmf", {"digits": "ww123#"})
    assert set(CarrierCommand.objects.values_list("kind", flat=True)) == {
        "dtmf.preconnect",
        "greeting",
    }
    call.refresh_from_db()
    assert "dtmfSequence" not in call.metadata


def test_without_a_reply_document_the_greeting_is_said_by_command(
    mock_carrier: Any, make_call: Any
) -> None:
    call = _outbound(make_call)
    call_answered(call, _answered(call), None)
    assert mock_carrier.sent[0] == (
        "play_text",
        {"text": "Hi, this is Acme.", "listen_after": True},
    )
    call.refresh_from_db()
    assert call.state == "listening"  # a conversation listens after its greeting
    assert "initialMessage" not in call.metadata
    assert list(TranscriptEntry.objects.values_list("text", flat=True)) == ["Hi, this is Acme."]


def test_with_a_reply_document_the_greeting_rides_in_it(mock_carrier: Any, make_call: Any) -> None:
    call = _outbound(make_call)
    inline = InlineReply()
    call_answered(call, _answered(call), inline)
    assert mock_carrier.sent == []  # no REST command racing the reply
    assert inline.speech == Speech(text="Hi, this is Acme.", listen=True, language=None)
    assert not CarrierCommand.objects.exists()


def test_a_message_the_dial_already_carried_is_recorded_not_said_again(
    mock_carrier: Any, make_call: Any
) -> None:
    call = _outbound(make_call, mode="notify", initialMessageInline=True)
    inline = InlineReply()
    call_answered(call, _answered(call), inline)
    assert mock_carrier.sent == [] and inline.speech is None
    # A carrier that cannot report its words said: recorded as delivered.
    assert list(TranscriptEntry.objects.values_list("text", flat=True)) == ["Hi, this is Acme."]
    call.refresh_from_db()
    assert "initialMessage" not in call.metadata


def test_a_message_the_dial_carried_waits_for_the_carriers_report(
    mock_carrier: Any, make_call: Any, fake_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mock_carrier, "speech_done_signal", True)
    in_flight = [{"id": "u-dial", "text": "Hi, this is Acme.", "hangUp": True}]
    call = _outbound(
        make_call, mode="notify", initialMessageInline=True, utterancesInFlight=in_flight
    )
    call_answered(call, _answered(call), InlineReply())
    assert mock_carrier.sent == [] and not TranscriptEntry.objects.exists()
    call.refresh_from_db()
    assert call.metadata["utterancesInFlight"] == in_flight  # its report writes the line
    assert call.notify_hangup_at == fake_clock.now() + UNHEARD_MESSAGE_DEADLINE


def test_a_streaming_conversation_leaves_the_greeting_to_the_stream(
    mock_carrier: Any, make_call: Any, streaming: None
) -> None:
    call = _outbound(make_call)
    call_answered(call, _answered(call), None)
    assert mock_carrier.sent == []
    call.refresh_from_db()
    assert call.metadata["initialMessage"] == "Hi, this is Acme."  # said when the stream attaches


def test_a_notify_greeting_waits_for_the_words_to_be_heard_before_its_hang_up(
    mock_carrier: Any,
    make_call: Any,
    fake_clock: Any,
    configure: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure({"outbound": {"notifyHangupDelaySec": 2}})
    monkeypatch.setattr(mock_carrier, "speech_done_signal", True)
    call = _outbound(make_call, mode="notify")
    call_answered(call, _answered(call), None)
    assert mock_carrier.sent == [
        ("play_text", {"text": "Hi, this is Acme.", "listen_after": False})
    ]
    call.refresh_from_db()
    # Only the net: the real deadline counts from the carrier's report (test_speech.py).
    assert call.notify_hangup_at == fake_clock.now() + UNHEARD_MESSAGE_DEADLINE
    assert call.state == "speaking"


def test_a_carrier_without_reports_hangs_up_the_delay_after_sending(
    mock_carrier: Any, make_call: Any, fake_clock: Any, configure: Any
) -> None:
    configure({"outbound": {"notifyHangupDelaySec": 2}})
    call = _outbound(make_call, mode="notify")
    call_answered(call, _answered(call), None)
    call.refresh_from_db()
    assert call.notify_hangup_at == fake_clock.now() + timedelta(seconds=2)
    assert list(TranscriptEntry.objects.values_list("text", flat=True)) == ["Hi, this is Acme."]


def test_an_inbound_call_answered_by_command_starts_its_stream_by_command(
    mock_carrier: Any, make_call: Any, streaming: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[Any] = []
    monkeypatch.setattr(mock_carrier, "start_stream", started.append)
    call = make_call(
        state="ringing", direction="inbound", metadata={"initialMessage": "Hello caller."}
    )
    call_answered(call, _answered(call), None)
    assert [target.stream.url for target in started] == [STREAM_URL]
    assert list(CarrierCommand.objects.values_list("kind", flat=True)) == ["stream.start"]
    assert mock_carrier.sent == []  # the greeting waits for the stream


def test_an_inbound_call_answered_in_the_reply_owes_no_stream_command(
    mock_carrier: Any, make_call: Any, streaming: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[Any] = []
    monkeypatch.setattr(mock_carrier, "start_stream", started.append)
    call = make_call(state="ringing", direction="inbound", metadata={})
    call_answered(call, _answered(call), InlineReply())
    assert started == [] and not CarrierCommand.objects.exists()


def test_a_second_answer_owes_nothing(mock_carrier: Any, make_call: Any) -> None:
    call = _outbound(make_call, dtmfSequence="1")
    call_answered(call, _answered(call), None)
    sent = list(mock_carrier.sent)
    Call.objects.filter(pk=call.pk).update(
        metadata={"initialMessage": "again", "dtmfSequence": "2"}
    )
    call.refresh_from_db()
    call_answered(call, _answered(call), None)
    assert mock_carrier.sent == sent

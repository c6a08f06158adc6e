"""Cold transfer (calls/services/transfer.py) on the mock carrier: guards, state, refusals.

docs/carriers.md, "Cold transfer".
"""

from __future__ import annotations

from typing import Any

import pytest

from calls.exceptions import CallConflict, CallNotFound, CarrierFailed, InvalidRequest
from calls.models import Call, CallEvent, TranscriptEntry
from calls.services.actions import call_end
from calls.services.events import event_apply
from calls.services.speech import utterance_in_flight_add
from calls.services.streams import stream_detach
from calls.services.timers import timers_sweep
from calls.services.transfer import call_transfer, transfer_document
from calls.state import CallState
from providers.base import EventType, NormalizedEvent
from providers.errors import ProviderError, ProviderUnavailable

pytestmark = pytest.mark.django_db

UNKNOWN = "00000000-0000-4000-8000-000000000000"
TARGET = "+15555550177"


def _transfers(carrier: Any) -> list[dict[str, Any]]:
    return [fields for op, fields in carrier.sent if op == "transfer"]


def test_a_live_call_is_handed_over_and_ends_transferred(mock_carrier: Any, make_call: Any) -> None:
    call = make_call(state="listening")
    result = call_transfer(call_id=call.call_id, to=TARGET, message="Connecting you now")
    assert _transfers(mock_carrier) == [
        {
            "to": TARGET,
            "message": "Connecting you now",
            "caller_id": "+15550000000",  # our number on the outbound call
            "streaming": False,
        }
    ]
    call.refresh_from_db()
    assert (result.state, call.state, call.end_reason) == ("transferred",) * 3
    assert call.ended_at is not None and call.metadata["transfer"] == {
        "to": TARGET,
        "message": "Connecting you now",
    }
    event = CallEvent.objects.get(call=call, type="call.transferred")
    assert event.payload == {"to": TARGET, "message": "Connecting you now"}
    assert CallEvent.objects.get(call=call, type="call.ended").payload["reason"] == "transferred"
    # The message is on the event, not in the transcript: nothing reports it heard.
    assert not TranscriptEntry.objects.filter(call=call).exists()


def test_an_inbound_call_presents_our_number_the_caller_dialled(
    mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(
        direction=Call.Direction.INBOUND, from_number="+15555550999", to_number="+15550000001"
    )
    call_transfer(call_id=call.call_id, to=TARGET)
    assert _transfers(mock_carrier)[0]["caller_id"] == "+15550000001"
    assert _transfers(mock_carrier)[0]["message"] is None


def test_a_caller_id_that_is_not_a_number_is_left_to_the_carrier(
    mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(direction=Call.Direction.INBOUND, to_number="sip:desk@example.com")
    call_transfer(call_id=call.call_id, to=TARGET)
    assert _transfers(mock_carrier)[0]["caller_id"] is None


def test_a_streaming_call_asks_the_carrier_to_let_its_stream_go(
    mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="listening", stream_id="MZ-stream-1")
    call_transfer(call_id=call.call_id, to=TARGET)
    assert _transfers(mock_carrier)[0]["streaming"] is True


@pytest.mark.parametrize(
    ("to", "error"),
    [
        ("", "to required"),
        ("   ", "to required"),
        ("5555550177", "to: Expected E.164 format, e.g. +15550001234"),
        ("+1555 555 0177", "to: Expected E.164 format, e.g. +15550001234"),
        ("+15555550177\x00", "to: Expected E.164 format, e.g. +15550001234"),
        ("+" + "1" * 40, "to: Expected E.164 format, e.g. +15550001234"),
    ],
)
def test_a_target_that_is_not_e164_sends_nothing(
    mock_carrier: Any, make_call: Any, to: str, error: str
) -> None:
    call = make_call()
    with pytest.raises(InvalidRequest) as info:
        call_transfer(call_id=call.call_id, to=to)
    assert info.value.message == error
    assert mock_carrier.sent == []
    call.refresh_from_db()
    assert call.state == "answered" and "transfer" not in call.metadata


def test_a_target_outside_allow_to_sends_nothing(
    configure: Any, mock_carrier: Any, make_call: Any
) -> None:
    configure({"outbound": {"allowTo": ["+1555555"]}})
    call = make_call()
    with pytest.raises(InvalidRequest, match=r"Destination \+19005550100 is not allowed"):
        call_transfer(call_id=call.call_id, to="+19005550100")
    assert mock_carrier.sent == []
    call_transfer(call_id=call.call_id, to=TARGET)  # inside the prefix: allowed
    assert len(_transfers(mock_carrier)) == 1


def test_a_message_with_control_characters_is_refused(mock_carrier: Any, make_call: Any) -> None:
    call = make_call()
    with pytest.raises(InvalidRequest, match="message contains control characters"):
        call_transfer(call_id=call.call_id, to=TARGET, message="hi\x00there")
    assert mock_carrier.sent == []


def test_an_unknown_call_is_not_found(mock_carrier: Any) -> None:
    with pytest.raises(CallNotFound, match="Call not found"):
        call_transfer(call_id=UNKNOWN, to=TARGET)
    assert mock_carrier.sent == []


def test_an_ended_call_is_not_transferred(mock_carrier: Any, make_call: Any) -> None:
    call = make_call(state="completed", end_reason="completed")
    with pytest.raises(CallConflict, match="Call has ended"):
        call_transfer(call_id=call.call_id, to=TARGET)
    assert mock_carrier.sent == []


def test_a_call_without_a_carrier_id_is_not_connected(mock_carrier: Any, make_call: Any) -> None:
    call = make_call(state="initiated", provider_call_id=None)
    with pytest.raises(CallConflict, match="Call not connected"):
        call_transfer(call_id=call.call_id, to=TARGET)
    assert mock_carrier.sent == []


def test_a_second_transfer_finds_the_call_ended(mock_carrier: Any, make_call: Any) -> None:
    call = make_call()
    call_transfer(call_id=call.call_id, to=TARGET)
    with pytest.raises(CallConflict, match="Call has ended"):
        call_transfer(call_id=call.call_id, to="+15555550188")
    assert len(_transfers(mock_carrier)) == 1


def test_a_call_another_request_is_hanging_up_is_not_transferred(
    mock_carrier: Any, make_call: Any, fake_clock: Any
) -> None:
    call = make_call()
    Call.objects.filter(pk=call.pk).update(hangup_claimed_at=fake_clock.now())
    with pytest.raises(CallConflict, match="Call is being ended"):
        call_transfer(call_id=call.call_id, to=TARGET)
    assert mock_carrier.sent == []


class _Refusing:
    def __init__(self, error: ProviderError) -> None:
        self.error = error

    def __call__(self, target: Any, transfer: Any) -> None:
        raise self.error


def test_a_refused_transfer_leaves_the_call_as_it_was(
    mock_carrier: Any, make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    call = make_call(state="listening")
    refusal = ProviderError(
        "Twilio API error: 400 Invalid 'To' Phone Number", provider_code="21211"
    )
    monkeypatch.setattr(mock_carrier, "transfer", _Refusing(refusal))
    with pytest.raises(CarrierFailed, match="Invalid 'To' Phone Number"):
        call_transfer(call_id=call.call_id, to=TARGET)
    call.refresh_from_db()
    assert (call.state, call.end_reason, call.ended_at) == ("listening", "", None)
    assert "transfer" not in call.metadata and call.hangup_claimed_at is None
    assert not CallEvent.objects.filter(call=call).exists()
    # The call is still ours: it can be ended (the claim was given back).
    monkeypatch.undo()
    assert call_end(call_id=call.call_id).state == "hangup-bot"


def test_a_transfer_that_timed_out_keeps_its_target_for_a_late_fetch(
    mock_carrier: Any, make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    call = make_call()
    monkeypatch.setattr(mock_carrier, "transfer", _Refusing(ProviderUnavailable("timed out")))
    with pytest.raises(CarrierFailed):
        call_transfer(call_id=call.call_id, to=TARGET)
    call.refresh_from_db()
    assert call.state == "answered" and call.metadata["transfer"] == {"to": TARGET}
    # The carrier did act on it after all: its document fetch says so.
    document = transfer_document(call.call_id)
    assert document is not None and document.to_number == TARGET
    call.refresh_from_db()
    assert call.state == "transferred"


def test_a_fetch_that_lands_before_the_answer_makes_the_transfer_a_success(
    mock_carrier: Any, make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    call = make_call()

    def fetched_then_timed_out(target: Any, transfer: Any) -> None:
        transfer_document(target.call_id)  # the carrier's fetch, on another process
        raise ProviderUnavailable("read timed out")

    monkeypatch.setattr(mock_carrier, "transfer", fetched_then_timed_out)
    result = call_transfer(call_id=call.call_id, to=TARGET)
    assert result.state == "transferred"
    assert CallEvent.objects.filter(call=call, type="call.transferred").count() == 1


def test_a_fetch_without_a_transfer_waiting_gets_nothing(make_call: Any) -> None:
    assert transfer_document(make_call().call_id) is None
    assert transfer_document(UNKNOWN) is None
    assert transfer_document(None) is None


def _event(call: Call, type_: EventType, **fields: Any) -> NormalizedEvent:
    return NormalizedEvent(
        type=type_,
        id=f"evt-{type_}",
        call_id=call.call_id,
        provider_call_id=call.provider_call_id,
        **fields,
    )


def test_the_carriers_later_completed_callback_changes_nothing(
    mock_carrier: Any, make_call: Any
) -> None:
    call = make_call()
    call_transfer(call_id=call.call_id, to=TARGET)
    call.refresh_from_db()
    ended_at = call.ended_at
    for event in (
        _event(call, EventType.ACTIVE),
        _event(call, EventType.SPEECH, transcript="hello new person"),
        _event(call, EventType.ENDED, reason="completed"),
    ):
        outcome = event_apply(provider="mock", event=event)
        assert outcome.applied is False
    call.refresh_from_db()
    assert (call.state, call.end_reason, call.ended_at) == ("transferred", "transferred", ended_at)
    assert not TranscriptEntry.objects.filter(call=call).exists()


def test_words_in_flight_when_the_call_is_handed_over_are_written_cut_off(
    mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="speaking", answered_at="2026-01-01T00:00:00Z")
    utterance_in_flight_add(call, "u-1", "Let me check that for you", hang_up=False)
    call_transfer(call_id=call.call_id, to=TARGET)
    line = TranscriptEntry.objects.get(call=call)
    assert (line.text, line.interrupted) == ("Let me check that for you", True)


def test_a_stream_that_closes_after_the_transfer_does_not_end_the_call_again(
    mock_carrier: Any, make_call: Any, fake_clock: Any
) -> None:
    call = make_call(state="listening", stream_id="MZ-1")
    call_transfer(call_id=call.call_id, to=TARGET)
    # The carrier tears the stream down once the call left our document.
    stream_detach(call_id=call.call_id, stream_id="MZ-1")
    fake_clock.advance(seconds=10)
    timers_sweep()
    call.refresh_from_db()
    assert (call.state, call.end_reason) == ("transferred", "transferred")
    assert [op for op, _ in mock_carrier.sent] == ["transfer"]  # no hang-up


def test_a_stream_that_closed_just_before_the_transfer_does_not_end_the_call_either(
    mock_carrier: Any, make_call: Any, fake_clock: Any
) -> None:
    call = make_call(state="listening", stream_id="MZ-1")
    stream_detach(call_id=call.call_id, stream_id="MZ-1")  # the grace deadline is set
    call_transfer(call_id=call.call_id, to=TARGET)
    fake_clock.advance(seconds=10)
    timers_sweep()
    call.refresh_from_db()
    assert call.state == CallState.TRANSFERRED and call.stream_lost_at is None

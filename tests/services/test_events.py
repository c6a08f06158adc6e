"""Applying normalized carrier events (calls/services/events.py), called directly.

Each event is applied once; stale turns, finished calls and unknown calls change nothing;
an unknown carrier call becomes a row only when it is a new inbound call or an outbound
call placed elsewhere (docs/plugin-behaviour.md, "Normalized events").
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from calls.models import Call, CallEvent, TranscriptEntry
from calls.services.events import event_apply
from providers.base import EventType, NormalizedEvent

pytestmark = pytest.mark.django_db


def _event(call: Call, type_: EventType, id_: str = "e-1", **fields: Any) -> NormalizedEvent:
    return NormalizedEvent(
        type=type_, id=id_, call_id=call.call_id, provider_call_id=call.provider_call_id, **fields
    )


def test_an_event_is_applied_once(mock_carrier: Any, make_call: Any) -> None:
    call = make_call(state="listening")
    speech = _event(call, EventType.SPEECH, transcript="yes")
    assert event_apply(provider="mock", event=speech).applied
    assert not event_apply(provider="mock", event=speech).applied
    assert list(TranscriptEntry.objects.values_list("text", flat=True)) == ["yes"]
    assert CallEvent.objects.filter(call=call).count() == 1


def test_states_only_move_forward(mock_carrier: Any, make_call: Any) -> None:
    call = make_call(state="answered")
    outcome = event_apply(provider="mock", event=_event(call, EventType.RINGING))
    assert outcome.applied  # recorded on the timeline …
    assert Call.objects.get(pk=call.pk).state == "answered"  # … but never moves it back


def test_the_carrier_found_by_its_own_id(mock_carrier: Any, make_call: Any) -> None:
    call = make_call(state="ringing")
    event = NormalizedEvent(type=EventType.ANSWERED, id="a", provider_call_id=call.provider_call_id)
    assert event_apply(provider="mock", event=event).call == call
    assert Call.objects.get(pk=call.pk).state == "answered"


def test_another_providers_call_is_not_touched(mock_carrier: Any, make_call: Any) -> None:
    call = make_call(state="ringing", provider="twilio", provider_call_id="CA1")
    event = NormalizedEvent(type=EventType.ANSWERED, id="a", call_id=call.call_id)
    outcome = event_apply(provider="mock", event=event)
    assert outcome.call is None and not outcome.applied
    assert Call.objects.get(pk=call.pk).state == "ringing"


def test_speech_of_an_older_turn_answers_nothing(mock_carrier: Any, make_call: Any) -> None:
    call = make_call(state="listening", turn_token="turn-2")
    late = _event(call, EventType.SPEECH, transcript="old answer", turn_token="turn-1")
    assert not event_apply(provider="mock", event=late).applied
    assert not TranscriptEntry.objects.exists() and not CallEvent.objects.exists()


def test_speech_stamped_with_the_open_turn_answers_it(mock_carrier: Any, make_call: Any) -> None:
    call = make_call(state="listening", turn_token="turn-2")
    event_apply(
        provider="mock",
        event=_event(call, EventType.SPEECH, transcript=" ready ", turn_token="turn-2"),
    )
    entry = TranscriptEntry.objects.get()
    assert (entry.speaker, entry.text, entry.turn_token) == ("user", "ready", "turn-2")


def test_token_less_speech_is_kept_but_answers_no_turn(mock_carrier: Any, make_call: Any) -> None:
    call = make_call(state="speaking", turn_token="turn-2")
    event_apply(provider="mock", event=_event(call, EventType.SPEECH, transcript="hello?"))
    entry = TranscriptEntry.objects.get()
    assert (entry.text, entry.turn_token) == ("hello?", None)
    assert Call.objects.get(pk=call.pk).state == "listening"


def test_partial_and_blank_speech_adds_no_line(mock_carrier: Any, make_call: Any) -> None:
    call = make_call(state="listening")
    event_apply(
        provider="mock", event=_event(call, EventType.SPEECH, transcript="hel", is_final=False)
    )
    event_apply(provider="mock", event=_event(call, EventType.SPEECH, "e-2", transcript="  "))
    assert not TranscriptEntry.objects.exists()
    assert CallEvent.objects.filter(call=call).count() == 2


def test_an_end_event_finalizes_with_the_carriers_reason(mock_carrier: Any, make_call: Any) -> None:
    call = make_call(state="listening")
    event_apply(provider="mock", event=_event(call, EventType.ENDED, reason="hangup-user"))
    call.refresh_from_db()
    assert (call.state, call.end_reason) == ("hangup-user", "hangup-user")
    # The carrier's own end event is the timeline entry: no second `call.ended` row.
    assert list(call.events.values_list("type", flat=True)) == ["call.ended"]


def test_events_for_a_finished_call_change_nothing(mock_carrier: Any, make_call: Any) -> None:
    call = make_call(state="completed", end_reason="completed")
    outcome = event_apply(provider="mock", event=_event(call, EventType.ANSWERED))
    assert not outcome.applied and not CallEvent.objects.exists()
    assert Call.objects.get(pk=call.pk).state == "completed"


def test_a_fatal_error_ends_the_call_and_keeps_the_error(mock_carrier: Any, make_call: Any) -> None:
    call = make_call(state="listening")
    event_apply(provider="mock", event=_event(call, EventType.ERROR, error="media failed"))
    call.refresh_from_db()
    assert (call.state, call.metadata["error"]) == ("error", "media failed")


def test_a_retryable_error_changes_nothing(mock_carrier: Any, make_call: Any) -> None:
    call = make_call(state="listening")
    event_apply(provider="mock", event=_event(call, EventType.ERROR, error="blip", retryable=True))
    call.refresh_from_db()
    assert call.state == "listening" and "error" not in call.metadata


def test_plivos_request_id_is_upgraded_to_the_call_id(mock_carrier: Any, make_call: Any) -> None:
    call = make_call(state="initiated", provider_call_id="request-uuid")
    event = NormalizedEvent(
        type=EventType.ANSWERED, id="a", call_id=call.call_id, provider_call_id="call-uuid"
    )
    event_apply(provider="mock", event=event)
    assert Call.objects.get(pk=call.pk).provider_call_id == "call-uuid"


# -- unknown calls -------------------------------------------------------------------------------


def test_an_end_for_an_unknown_call_creates_no_ghost(mock_carrier: Any) -> None:
    event = NormalizedEvent(
        type=EventType.ENDED, id="x", provider_call_id="leg-9", direction="inbound"
    )
    outcome = event_apply(provider="mock", event=event)
    assert outcome.call is None and not Call.objects.exists()


def test_an_event_for_a_call_id_of_ours_that_is_gone_creates_nothing(mock_carrier: Any) -> None:
    event = NormalizedEvent(
        type=EventType.RINGING,
        id="x",
        call_id=str(uuid.uuid4()),
        provider_call_id="leg-9",
        direction="outbound",
    )
    assert event_apply(provider="mock", event=event).call is None
    assert not Call.objects.exists()


def test_an_unknown_inbound_call_arrives(mock_carrier: Any, configure: Any) -> None:
    configure({"inboundPolicy": "open"})
    event = NormalizedEvent(
        type=EventType.INITIATED,
        id="x",
        provider_call_id="leg-9",
        direction="inbound",
        from_number="+15550001111",
        to_number="+15550000000",
    )
    outcome = event_apply(provider="mock", event=event)
    assert outcome.accepted_inbound
    assert Call.objects.get().direction == "inbound"


def test_an_outbound_call_placed_elsewhere_is_registered_as_external(
    mock_carrier: Any, configure: Any
) -> None:
    event = NormalizedEvent(
        type=EventType.RINGING,
        id="x",
        provider_call_id="CA-external",
        direction="outbound",
        from_number="15550000000",
        to_number="+15555550123",
    )
    outcome = event_apply(provider="mock", event=event)
    call = Call.objects.get()
    assert outcome.applied and outcome.call == call
    assert (call.direction, call.state, call.metadata) == (
        "outbound",
        "ringing",
        {"external": True},
    )
    assert (call.from_number, call.to_number) == ("+15550000000", "+15555550123")


def test_an_unknown_call_without_a_direction_is_ignored(mock_carrier: Any) -> None:
    event = NormalizedEvent(type=EventType.ANSWERED, id="x", provider_call_id="leg-9")
    assert event_apply(provider="mock", event=event).call is None
    assert not Call.objects.exists()

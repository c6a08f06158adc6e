"""The answering-machine verdict applied by the services (calls/services/machine_verdicts.py),
called directly: streams, the detection time, end reasons, unsolicited verdicts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from calls.models import Call, CarrierCommand
from calls.services.answering import call_answered
from calls.services.carrier_commands import COMMANDS
from calls.services.events import event_apply
from calls.services.lifecycle import call_finalize
from calls.services.machine_verdicts import machine_verdict_apply
from calls.services.streams import stream_attach
from providers.base import EventType, NormalizedEvent

pytestmark = pytest.mark.django_db

TOKEN = "0123456789abcdef" * 2


def _verdict(call: Call, answered_by: str, **fields: Any) -> NormalizedEvent:
    return NormalizedEvent(
        type=EventType.MACHINE_DETECTION,
        id=f"amd-{answered_by}-{len(fields)}",
        call_id=call.call_id,
        provider_call_id=call.provider_call_id,
        answered_by=answered_by,
        **fields,
    )


def _apply(call: Call, answered_by: str, **fields: Any) -> Call:
    assert event_apply(provider="mock", event=_verdict(call, answered_by, **fields)).applied
    call.refresh_from_db()
    return call


def _held_conversation(make_call: Any, fake_clock: Any, **fields: Any) -> Call:
    return make_call(
        **{
            "stream_token": TOKEN,
            "answered_at": fake_clock.now(),
            "metadata": {"machineDetection": "detect", "initialMessage": "Hello!"},
            **fields,
        }
    )


def test_a_stream_attaching_before_the_verdict_does_not_say_the_greeting(
    mock_carrier: Any, make_call: Any, fake_clock: Any
) -> None:
    call = _held_conversation(make_call, fake_clock)
    attached = stream_attach(provider_call_id=call.provider_call_id, token=TOKEN, stream_id="MZ-1")
    assert attached.greeting is None
    call.refresh_from_db()
    assert call.metadata["initialMessage"] == "Hello!"  # still owed


def test_a_stream_attaching_after_a_human_verdict_says_the_greeting(
    mock_carrier: Any, make_call: Any, fake_clock: Any
) -> None:
    call = _held_conversation(make_call, fake_clock, answered_by="human")
    attached = stream_attach(provider_call_id=call.provider_call_id, token=TOKEN, stream_id="MZ-1")
    assert attached.greeting == "Hello!"


def test_a_human_verdict_on_an_attached_stream_owes_the_greeting_by_command(
    mock_carrier: Any, make_call: Any, fake_clock: Any
) -> None:
    call = _held_conversation(make_call, fake_clock, stream_id="MZ-1", stream_token="")
    _apply(call, "human")
    kinds = list(CarrierCommand.objects.filter(call=call).values_list("kind", flat=True))
    assert kinds == [CarrierCommand.Kind.GREETING]


def test_a_machine_verdict_with_detect_owes_nothing(
    mock_carrier: Any, make_call: Any, fake_clock: Any
) -> None:
    call = _apply(_held_conversation(make_call, fake_clock, stream_id="MZ-1"), "machine")
    assert call.answered_by == "machine" and not call.is_terminal
    assert not CarrierCommand.objects.filter(call=call).exists()
    assert call.metadata["initialMessage"] == "Hello!"  # never said to the machine


def test_the_detection_time_runs_from_the_answer_when_the_carrier_gives_none(
    mock_carrier: Any, make_call: Any, fake_clock: Any
) -> None:
    call = _held_conversation(make_call, fake_clock)
    at = fake_clock.now() + timedelta(milliseconds=1500)
    assert _apply(call, "human", timestamp=at).machine_detection_ms == 1500


@pytest.mark.parametrize(
    ("offset", "waited"),
    [
        (timedelta(days=30), 2000),  # from the future: our clock instead of the carrier's
        (timedelta(seconds=-5), None),  # before the answer: no figure rather than a false one
        (timedelta(days=-400), None),
    ],
)
def test_an_implausible_verdict_time_never_makes_a_negative_or_absurd_wait(
    mock_carrier: Any, make_call: Any, fake_clock: Any, offset: timedelta, waited: int | None
) -> None:
    call = _held_conversation(make_call, fake_clock)
    fake_clock.advance(seconds=2)
    call = _apply(call, "human", timestamp=fake_clock.now() + offset)
    assert (call.answered_by, call.machine_detection_ms) == ("human", waited)


def test_a_verdict_before_the_answer_records_no_time(
    mock_carrier: Any, make_call: Any, fake_clock: Any
) -> None:
    call = _held_conversation(make_call, fake_clock, answered_at=None)
    call = _apply(call, "human")
    assert (call.answered_by, call.machine_detection_ms) == ("human", None)


def test_an_unsolicited_verdict_is_recorded_and_does_nothing_else(
    mock_carrier: Any, make_call: Any
) -> None:
    call = _apply(make_call(metadata={"initialMessage": "Hi"}), "machine", detection_ms=900)
    assert (call.answered_by, call.machine_detection_ms, call.is_terminal) == (
        "machine",
        900,
        False,
    )
    assert mock_carrier.sent == []


@pytest.mark.parametrize(
    ("detection", "answered_by", "reason"),
    [
        ("detect", "machine", "completed"),
        ("hangup", "human", "completed"),
        ("hangup", "machine", "voicemail"),
        ("leaveMessage", "machine", "voicemail"),
        ("leaveMessage", "fax", "voicemail"),
        ("leaveMessage", "unknown", "completed"),
        ("off", "machine", "completed"),
    ],
)
def test_an_ordinary_end_is_voicemail_only_where_a_machine_was_acted_on(
    make_call: Any, detection: str, answered_by: str, reason: str
) -> None:
    call = make_call(answered_by=answered_by, metadata={"machineDetection": detection})
    assert call_finalize(call=call, reason="completed")
    assert Call.objects.get(pk=call.pk).end_reason == reason


def test_a_failure_end_keeps_its_reason_on_a_machine_answered_call(make_call: Any) -> None:
    call = make_call(answered_by="machine", metadata={"machineDetection": "hangup"})
    call_finalize(call=call, reason="failed")
    assert Call.objects.get(pk=call.pk).end_reason == "failed"


# -- an answer and a verdict applied at once on two processes -----------------------------------


def _held_notify(make_call: Any, **fields: Any) -> Call:
    return make_call(
        **{
            "mode": "notify",
            "state": "ringing",
            "metadata": {"machineDetection": "hangup", "initialMessage": "Hello!"},
            **fields,
        }
    )


def test_an_answer_sees_a_verdict_another_process_committed_meanwhile(
    mock_carrier: Any, make_call: Any
) -> None:
    call = _held_notify(make_call)
    stale = Call.objects.get(pk=call.pk)  # read before the verdict landed
    Call.objects.filter(pk=call.pk).update(answered_by="human")
    call_answered(stale, NormalizedEvent(type=EventType.ANSWERED, id="ans"), None)
    kinds = list(CarrierCommand.objects.filter(call=call).values_list("kind", flat=True))
    assert kinds == [CarrierCommand.Kind.GREETING]


def test_a_verdict_sees_an_answer_another_process_committed_meanwhile(
    mock_carrier: Any, make_call: Any, fake_clock: Any
) -> None:
    call = _held_notify(make_call)
    stale = Call.objects.get(pk=call.pk)  # read before the answer landed
    Call.objects.filter(pk=call.pk).update(state="answered", answered_at=fake_clock.now())
    machine_verdict_apply(stale, _verdict(call, "human"), None)
    kinds = list(CarrierCommand.objects.filter(call=call).values_list("kind", flat=True))
    assert kinds == [CarrierCommand.Kind.GREETING]


def test_a_stream_attaching_sees_a_verdict_committed_meanwhile(
    mock_carrier: Any, make_call: Any, fake_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    call = _held_conversation(make_call, fake_clock)
    real_filter = Call.objects.filter

    def verdict_lands_after_the_read(*args: Any, **kwargs: Any) -> Any:
        found = real_filter(*args, **kwargs)
        if "stream_token" in kwargs:  # the token UPDATE: the verdict committed just before
            Call.objects.update(answered_by="human")
        return found

    first = Call.objects.get(pk=call.pk)
    monkeypatch.setattr(Call.objects, "filter", verdict_lands_after_the_read)
    assert first.answered_by == ""
    attached = stream_attach(provider_call_id=call.provider_call_id, token=TOKEN, stream_id="MZ-1")
    assert attached.greeting == "Hello!"


def test_a_verdict_never_owes_a_greeting_another_process_already_said(
    mock_carrier: Any, make_call: Any, fake_clock: Any
) -> None:
    call = _held_notify(make_call, state="answered", answered_at=fake_clock.now())
    stale = Call.objects.get(pk=call.pk)  # still owes the greeting as far as it knows
    Call.objects.filter(pk=call.pk).update(metadata={"machineDetection": "hangup"})
    machine_verdict_apply(stale, _verdict(call, "human"), None)
    assert not CarrierCommand.objects.filter(call=call).exists()
    assert mock_carrier.sent == []


# -- a greeting owed ahead, for a verdict's deadline (Plivo) ------------------------------------


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({}, False),  # the stream says it when it attaches
        ({"metadata": {"initialMessage": "Hello!", "streamFailed": True}}, True),
        ({"answered_by": "machine"}, False),  # never to a machine
        ({"answered_by": "machine", "mode": "notify"}, False),
    ],
)
def test_a_greeting_owed_for_a_deadline_goes_only_where_it_belongs(
    mock_carrier: Any,
    make_call: Any,
    monkeypatch: pytest.MonkeyPatch,
    fields: dict[str, Any],
    said: bool,
) -> None:
    monkeypatch.setattr("calls.services.carrier_commands.streaming_possible", lambda: True)
    call = make_call(
        **{"metadata": {"initialMessage": "Hello!", "machineDetection": "detect"}, **fields}
    )
    COMMANDS[CarrierCommand.Kind.GREETING].send(call, "key-1")
    assert ("play_text" in [op for op, _ in mock_carrier.sent]) is said


@pytest.mark.parametrize(
    ("mode", "streams", "left"),
    [("conversation", True, False), ("conversation", False, True), ("notify", True, True)],
)
def test_a_message_is_left_only_where_carrier_speech_can_leave_it(
    mock_carrier: Any,
    make_call: Any,
    fake_clock: Any,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    streams: bool,
    left: bool,
) -> None:
    monkeypatch.setattr("calls.services.machine_verdicts.streaming_possible", lambda: streams)
    call = make_call(
        mode=mode,
        answered_at=fake_clock.now(),
        metadata={
            "machineDetection": "leaveMessage",
            "initialMessage": "Call us back",
            "voicemailMessage": "Call us back",
        },
    )
    call = _apply(call, "machine", greeting_ended=True)
    ops = [op for op, _ in mock_carrier.sent]
    assert ("play_text" in ops, "hang_up" in ops) == (left, not left)
    assert call.is_terminal is (not left)  # left: it ends once the message was said

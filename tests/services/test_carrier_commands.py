"""Owed carrier commands (calls/services/carrier_commands.py): each sender and each give-up.

The outbox (tests/services/test_outbox.py) decides when a command is sent and retried; this
module checks what each kind does, when it has nothing left to do, and what giving it up
leaves behind — a carrier that refuses to start a stream leaves the call speaking by
command, not silent.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from calls.call_metadata import HUNG_UP, STREAM_FAILED
from calls.models import Call, CarrierCommand
from calls.services.carrier_commands import COMMANDS, greeting_say
from calls.services.events import event_apply
from calls.services.outbox import command_owe, commands_sweep
from providers.base import EventType, NormalizedEvent
from providers.errors import ProviderError

pytestmark = pytest.mark.django_db


def test_a_refused_stream_start_falls_back_to_speaking_the_greeting(
    mock_carrier: Any, configure: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure({"inboundPolicy": "open", "inboundGreeting": "Thanks for calling."})
    monkeypatch.setattr("calls.services.stream_plans.streaming_possible", lambda: True)
    monkeypatch.setattr(
        "calls.services.stream_plans.stream_url", lambda: "wss://v.example/voice/stream"
    )

    def refuse(target: Any) -> None:
        raise ProviderError("Telnyx API error: 422 streaming not allowed")

    monkeypatch.setattr(mock_carrier, "start_stream", refuse)
    inbound = dict(
        call_id="leg-1",
        provider_call_id="leg-1",
        direction="inbound",
        from_number="+15550001111",
        to_number="+15550000000",
    )
    event_apply(provider="mock", event=NormalizedEvent(type=EventType.INITIATED, id="i", **inbound))
    event_apply(provider="mock", event=NormalizedEvent(type=EventType.ANSWERED, id="a", **inbound))

    call = Call.objects.get(provider_call_id="leg-1")
    assert call.metadata.get("streamFailed") is True
    spoken = [fields["text"] for op, fields in mock_carrier.sent if op == "play_text"]
    assert spoken == ["Thanks for calling."]
    assert "initialMessage" not in call.metadata


Kind = CarrierCommand.Kind


def _ops(carrier: Any) -> list[str]:
    return [op for op, _ in carrier.sent]


# -- give-ups ----------------------------------------------------------------------------------


def test_every_kind_has_a_sender_and_a_give_up() -> None:
    assert set(COMMANDS) == set(Kind.values)
    # An unanswered or un-hung-up caller is worse than one more request: retried on anything.
    assert {kind for kind, spec in COMMANDS.items() if spec.retry_any} == {
        Kind.ANSWER,
        Kind.REJECT_HANG_UP,
    }


def test_answer_give_up_leaves_the_call_to_the_ring_timeout(
    make_call: Any, caplog: pytest.LogCaptureFixture
) -> None:
    call = make_call(state="ringing", direction="inbound", metadata={"initialMessage": "Hi"})
    with caplog.at_level(logging.WARNING):
        assert COMMANDS[Kind.ANSWER].give_up(call, "503 from carrier") == ()
    assert "answer failed for good" in caplog.text and "503 from carrier" in caplog.text
    call.refresh_from_db()
    assert (call.state, call.metadata) == ("ringing", {"initialMessage": "Hi"})


def test_rejected_hang_up_give_up_owes_nothing_more(
    make_call: Any, caplog: pytest.LogCaptureFixture
) -> None:
    call = make_call(state="hangup-bot", direction="inbound", metadata={})
    with caplog.at_level(logging.WARNING):
        assert COMMANDS[Kind.REJECT_HANG_UP].give_up(call, "gone") == ()
    assert "rejected-call hang-up failed: gone" in caplog.text
    call.refresh_from_db()
    assert HUNG_UP not in call.metadata


def test_dtmf_give_up_keeps_the_error_and_drops_the_digits(make_call: Any) -> None:
    call = make_call(metadata={"dtmfSequence": "123#"})
    assert COMMANDS[Kind.PRECONNECT_DTMF].give_up(call, "x" * 300) == ()
    call.refresh_from_db()
    assert call.metadata == {"dtmfError": "x" * 200}


def test_stream_give_up_marks_the_call_and_owes_the_greeting(make_call: Any) -> None:
    call = make_call(direction="inbound", metadata={"initialMessage": "Hi"})
    assert COMMANDS[Kind.STREAM_START].give_up(call, "422") == (Kind.GREETING,)
    call.refresh_from_db()
    assert call.metadata[STREAM_FAILED] is True


def test_greeting_give_up_keeps_the_message_for_a_later_stream(make_call: Any) -> None:
    call = make_call(metadata={"initialMessage": "Hi"})
    assert COMMANDS[Kind.GREETING].give_up(call, "carrier down") == ()
    call.refresh_from_db()
    assert call.metadata["initialMessage"] == "Hi"


def test_an_answer_refused_every_time_is_given_up_after_its_attempts(
    mock_carrier: Any, make_call: Any, fake_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tries: list[Any] = []

    def refuse(target: Any) -> None:
        tries.append(target)
        raise ProviderError("422 call not ringing")  # not retryable, retried anyway

    monkeypatch.setattr(mock_carrier, "answer_call", refuse)
    call = make_call(state="ringing", direction="inbound")
    command_owe(call, Kind.ANSWER)
    for _ in range(10):
        fake_clock.advance(seconds=20)
        commands_sweep()
    command = CarrierCommand.objects.get()
    assert len(tries) == COMMANDS[Kind.ANSWER].attempts == command.attempts
    assert command.failed_at is not None and command.done_at is None
    assert command.last_error == "422 call not ringing"


def test_a_refused_dtmf_is_given_up_at_once_and_not_sent_again(
    mock_carrier: Any, make_call: Any, fake_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tries: list[str] = []

    def refuse(target: Any, digits: str) -> None:
        tries.append(digits)
        raise ProviderError("21220: call not in progress")

    monkeypatch.setattr(mock_carrier, "send_dtmf", refuse)
    call = make_call(metadata={"dtmfSequence": "9"})
    command_owe(call, Kind.PRECONNECT_DTMF)
    fake_clock.advance(seconds=60)
    commands_sweep()
    assert tries == ["9"]
    call.refresh_from_db()
    assert call.metadata == {"dtmfError": "21220: call not in progress"}


# -- senders -----------------------------------------------------------------------------------


def test_answer_is_skipped_once_the_call_was_answered_meanwhile(
    mock_carrier: Any, make_call: Any
) -> None:
    ringing = make_call(state="ringing", direction="inbound")
    answered = make_call(state="answered", direction="inbound")
    COMMANDS[Kind.ANSWER].send(ringing, "k1")
    COMMANDS[Kind.ANSWER].send(answered, "k2")
    assert mock_carrier.sent == [("answer_call", {"provider_call_id": ringing.provider_call_id})]


def test_a_rejected_caller_is_hung_up_once(mock_carrier: Any, make_call: Any) -> None:
    call = make_call(state="hangup-bot", direction="inbound", metadata={})
    COMMANDS[Kind.REJECT_HANG_UP].send(call, "k")
    COMMANDS[Kind.REJECT_HANG_UP].send(call, "k")
    assert _ops(mock_carrier) == ["hang_up"]
    call.refresh_from_db()
    assert call.metadata[HUNG_UP] is True


def test_pre_connect_dtmf_goes_out_once_with_the_command_key(
    mock_carrier: Any, make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys: list[str | None] = []
    monkeypatch.setattr(
        mock_carrier, "send_dtmf", lambda target, digits: keys.append(target.command_key)
    )
    call = make_call(metadata={"dtmfSequence": "12"})
    COMMANDS[Kind.PRECONNECT_DTMF].send(call, "key-1")
    COMMANDS[Kind.PRECONNECT_DTMF].send(call, "key-1")
    assert keys == ["key-1"]
    call.refresh_from_db()
    assert "dtmfSequence" not in call.metadata


def test_a_stream_start_without_a_plan_sends_nothing(
    mock_carrier: Any, make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[Any] = []
    monkeypatch.setattr(mock_carrier, "start_stream", started.append)
    COMMANDS[Kind.STREAM_START].send(make_call(direction="inbound"), "k")  # streaming off
    assert started == []


def test_the_greeting_of_an_ended_call_is_not_said(mock_carrier: Any, make_call: Any) -> None:
    call = make_call(state="completed", metadata={"initialMessage": "Hi"})
    COMMANDS[Kind.GREETING].send(call, "k")
    assert mock_carrier.sent == []


def test_greeting_say_without_a_message_says_nothing(mock_carrier: Any, make_call: Any) -> None:
    call = make_call(metadata={})
    greeting_say(call)
    assert mock_carrier.sent == []
    assert Call.objects.get(pk=call.pk).state == "answered"

"""The outbox (calls/services/outbox.py): an event and the carrier commands it owes.

Applying an event writes CarrierCommand rows in the event's own transaction; they are sent
after commit, retried with backoff by the sweep, sent again when their sender died (lease
expired), never twice at once, and rolled back with the event when applying it fails.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from calls.models import Call, CallEvent, CarrierCommand, TranscriptEntry
from calls.services.events import event_apply
from calls.services.outbox import LEASE, command_owe, command_send, outbox_unit
from calls.services.timers import timers_sweep
from providers.base import EventType, NormalizedEvent
from providers.errors import ProviderError, ProviderUnavailable

pytestmark = pytest.mark.django_db

INBOUND = dict(
    call_id="leg-1",
    provider_call_id="leg-1",
    direction="inbound",
    from_number="+15550001111",
    to_number="+15550000000",
)


def _inbound(type_: EventType = EventType.INITIATED, id_: str = "i") -> NormalizedEvent:
    return NormalizedEvent(type=type_, id=id_, **INBOUND)  # type: ignore[arg-type]


def _ops(carrier: Any, name: str) -> list[dict[str, Any]]:
    return [fields for op, fields in carrier.sent if op == name]


def test_a_failed_answer_is_retried_with_backoff_and_the_same_command_key(
    mock_carrier: Any, fake_clock: Any, configure: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure({"inboundPolicy": "open"})
    keys: list[str | None] = []

    def answer(target: Any) -> None:
        keys.append(target.command_key)
        if len(keys) < 3:
            raise ProviderUnavailable("carrier 503")

    monkeypatch.setattr(mock_carrier, "answer_call", answer)
    event_apply(provider="mock", event=_inbound())
    command = CarrierCommand.objects.get(kind="answer")
    assert (len(keys), command.attempts, command.done_at) == (1, 1, None)
    assert command.last_error == "carrier 503"

    assert timers_sweep().fired == {}  # backing off: due in 1 s, not now
    fake_clock.advance(seconds=1)
    assert timers_sweep().fired == {}  # second attempt failed too; next in 2 s
    fake_clock.advance(seconds=2)
    assert timers_sweep().fired == {"carrier_command": 1}

    command.refresh_from_db()
    assert command.done_at is not None and command.attempts == 3
    # One key for every attempt: a carrier that dedupes (Telnyx command_id) runs it once.
    assert len(keys) == 3 and len(set(keys)) == 1 and keys[0] == str(command.key)
    fake_clock.advance(seconds=60)
    assert timers_sweep().fired == {}


def test_a_command_owed_before_a_crash_is_sent_by_the_sweep_once(
    mock_carrier: Any, fake_clock: Any, configure: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure({"inboundPolicy": "open"})
    # The process "dies" after the commit, before sending: nothing is sent now.
    with monkeypatch.context() as crashed:
        crashed.setattr("calls.services.outbox.command_send", lambda pk: False)
        event_apply(provider="mock", event=_inbound())
    assert _ops(mock_carrier, "answer_call") == []
    assert CarrierCommand.objects.get().done_at is None

    assert timers_sweep().fired == {"carrier_command": 1}
    assert timers_sweep().fired == {}
    assert len(_ops(mock_carrier, "answer_call")) == 1


def test_a_live_sender_keeps_its_command_until_the_lease_expires(
    mock_carrier: Any, fake_clock: Any, configure: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure({"inboundPolicy": "open"})
    with monkeypatch.context() as crashed:
        crashed.setattr("calls.services.outbox.command_send", lambda pk: False)
        event_apply(provider="mock", event=_inbound())
    command = CarrierCommand.objects.get()
    # Another process claimed it and is sending it right now.
    CarrierCommand.objects.filter(pk=command.pk).update(
        lease_until=fake_clock.now() + LEASE, attempts=1
    )

    assert command_send(command.pk) is False
    assert timers_sweep().fired == {}
    fake_clock.advance(seconds=LEASE.total_seconds())
    assert timers_sweep().fired == {"carrier_command": 1}  # that process died: sent once
    assert len(_ops(mock_carrier, "answer_call")) == 1


def test_an_event_applied_again_owes_nothing_new(mock_carrier: Any, configure: Any) -> None:
    configure({"inboundPolicy": "open"})
    event_apply(provider="mock", event=_inbound(id_="i-1"))
    event_apply(provider="mock", event=_inbound(EventType.RINGING, id_="i-2"))
    assert CarrierCommand.objects.count() == 1
    assert len(_ops(mock_carrier, "answer_call")) == 1


def test_a_failure_while_applying_rolls_back_the_event_and_its_commands(
    mock_carrier: Any, configure: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure({"inboundPolicy": "open"})

    def explode(**kwargs: Any) -> Any:
        raise RuntimeError("disk full")

    monkeypatch.setattr("calls.services.inbound.inbound_screen", explode)
    with pytest.raises(RuntimeError):
        event_apply(provider="mock", event=_inbound())
    assert not Call.objects.exists() and not CarrierCommand.objects.exists()
    assert _ops(mock_carrier, "answer_call") == []


def test_speech_and_its_transcript_line_roll_back_together(
    mock_carrier: Any, make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    call = make_call(state="listening")
    speech = NormalizedEvent(
        type=EventType.SPEECH,
        id="s-1",
        call_id=call.call_id,
        provider_call_id=call.provider_call_id,
        transcript="yes",
    )

    def explode(**kwargs: Any) -> None:
        raise RuntimeError("crash after the transcript line")

    with monkeypatch.context() as crashing, pytest.raises(RuntimeError):
        crashing.setattr("calls.services.events.responder_schedule", explode)
        event_apply(provider="mock", event=speech)
    assert not CallEvent.objects.exists() and not TranscriptEntry.objects.exists()

    assert event_apply(provider="mock", event=speech).applied  # the redelivery is new
    assert list(TranscriptEntry.objects.values_list("text", flat=True)) == ["yes"]


def test_a_refused_stream_start_is_given_up_and_the_greeting_spoken_instead(
    mock_carrier: Any, configure: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure({"inboundPolicy": "open", "inboundGreeting": "Hello."})
    monkeypatch.setattr("calls.services.stream_plans.streaming_possible", lambda: True)
    monkeypatch.setattr(
        "calls.services.stream_plans.stream_url", lambda: "wss://v.example/voice/stream"
    )

    def refuse(target: Any) -> None:
        raise ProviderError("422 streaming not allowed")  # not retryable

    monkeypatch.setattr(mock_carrier, "start_stream", refuse)
    event_apply(provider="mock", event=_inbound())
    event_apply(provider="mock", event=_inbound(EventType.ANSWERED, "a"))

    kinds = dict(CarrierCommand.objects.values_list("kind", "failed_at"))
    assert kinds["stream.start"] is not None and kinds["greeting"] is None
    assert [f["text"] for f in _ops(mock_carrier, "play_text")] == ["Hello."]


def test_commands_sent_inside_a_unit_wait_for_its_end(mock_carrier: Any, configure: Any) -> None:
    configure({"inboundPolicy": "open"})
    with outbox_unit():
        event_apply(provider="mock", event=_inbound())
        assert _ops(mock_carrier, "answer_call") == []  # not before the unit commits
    assert len(_ops(mock_carrier, "answer_call")) == 1


def test_finished_commands_of_ended_calls_are_pruned(
    mock_carrier: Any, fake_clock: Any, configure: Any
) -> None:
    configure({"inboundPolicy": "open"})
    event_apply(provider="mock", event=_inbound())
    Call.objects.update(state="completed", ended_at=fake_clock.now())
    fake_clock.advance(days=1, seconds=1)
    timers_sweep()
    assert not CarrierCommand.objects.exists()


def test_the_lease_is_short_enough_for_a_redelivery_window() -> None:
    # Carriers retry a failed webhook within seconds to minutes; a command owed by a dead
    # process must be sent well within that.
    assert LEASE <= timedelta(seconds=30)


# -- owed ahead, and owed again (answering-machine detection) ------------------------------------


def _greeting_call(make_call: Any) -> Call:
    return make_call(mode="notify", metadata={"initialMessage": "Hello!"})


def test_a_command_owed_for_later_is_sent_by_the_sweep_once_due(
    mock_carrier: Any, make_call: Any, fake_clock: Any
) -> None:
    call = _greeting_call(make_call)
    command_owe(call, CarrierCommand.Kind.GREETING, due_at=fake_clock.now() + timedelta(seconds=6))
    timers_sweep()
    assert _ops(mock_carrier, "play_text") == []
    fake_clock.advance(seconds=6)
    timers_sweep()
    assert [op["text"] for op in _ops(mock_carrier, "play_text")] == ["Hello!"]


def test_a_done_command_is_sent_again_only_when_owed_again(
    mock_carrier: Any, make_call: Any
) -> None:
    call = _greeting_call(make_call)
    command_owe(call, CarrierCommand.Kind.GREETING)
    Call.objects.filter(pk=call.pk).update(metadata={"initialMessage": "Hello again!"})
    command_owe(call, CarrierCommand.Kind.GREETING, retry_now=True)  # done: not revived
    assert len(_ops(mock_carrier, "play_text")) == 1
    command_owe(call, CarrierCommand.Kind.GREETING, again=True)
    assert [op["text"] for op in _ops(mock_carrier, "play_text")] == ["Hello!", "Hello again!"]

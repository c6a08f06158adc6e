"""Durable `continue.start` operations and turn leases (calls/services/turns.py).

An operation is a row, not a thread: the process that applies the caller's answer settles
it, the sweep fails it at its deadline or when the call ends. A synchronous `continue`
holds its turn by a short renewed lease, so a process killed mid-turn frees it quickly and
the caller's late answer still reaches the transcript.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from calls.exceptions import CallConflict
from calls.models import Call, ContinueOperation, TranscriptEntry
from calls.services.events import event_apply
from calls.services.timers import timers_sweep
from calls.services.turns import (
    OPERATION_TTL,
    TURN_LEASE,
    call_continue,
    continue_start,
    turn_claim,
)
from providers.base import EventType, NormalizedEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_prompt_thread(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """The prompt thread never runs: as if the process died right after continue.start."""
    started: list[tuple[Any, ...]] = []

    class Dead:
        def __init__(self, *, target: Any, args: tuple[Any, ...], **kwargs: Any) -> None:
            started.append(args)

        def start(self) -> None:
            pass

    monkeypatch.setattr("calls.services.turns.threading.Thread", Dead)
    return started


def _answer(call: Call, text: str, turn_token: str | None, n: int = 1) -> None:
    event_apply(
        provider="mock",
        event=NormalizedEvent(
            type=EventType.SPEECH,
            id=f"speech-{n}",
            call_id=call.call_id,
            provider_call_id=call.provider_call_id,
            transcript=text,
            turn_token=turn_token,
        ),
    )


def test_an_answer_settles_the_operation_without_the_process_that_started_it(
    mock_carrier: Any, make_call: Any, no_prompt_thread: Any
) -> None:
    call = make_call(state="listening")
    operation = continue_start(call_id=call.call_id, message="Ready?")
    call.refresh_from_db()
    assert call.turn_token == operation.turn_token

    _answer(call, "ready", operation.turn_token)  # applied by any process, e.g. after restart

    operation.refresh_from_db()
    assert (operation.status, operation.result) == (
        "done",
        {"success": True, "transcript": "ready"},
    )
    call.refresh_from_db()
    assert call.turn_token is None and call.metadata["turnCount"] == 1
    entry = TranscriptEntry.objects.get()
    assert (entry.text, entry.turn_token) == ("ready", operation.turn_token)


def test_the_sweep_fails_an_operation_at_its_deadline_and_frees_the_turn(
    mock_carrier: Any, make_call: Any, fake_clock: Any, configure: Any, no_prompt_thread: Any
) -> None:
    configure({"transcriptTimeoutMs": 5000})
    call = make_call(state="listening")
    operation = continue_start(call_id=call.call_id, message="Ready?")

    fake_clock.advance(seconds=4)
    timers_sweep()
    operation.refresh_from_db()
    assert operation.status == "pending"

    fake_clock.advance(seconds=1)
    assert timers_sweep().fired.get("continue_operation") == 1
    operation.refresh_from_db()
    assert operation.result == {
        "success": False,
        "error": "Timed out waiting for transcript after 5000ms",
    }
    call.refresh_from_db()
    assert call.turn_token is None
    # The caller's late answer still lands in the transcript (answering no turn).
    _answer(call, "sorry, yes", operation.turn_token)
    assert TranscriptEntry.objects.get().text == "sorry, yes"


def test_an_operation_fails_when_its_call_ends(
    mock_carrier: Any, make_call: Any, no_prompt_thread: Any
) -> None:
    call = make_call(state="listening")
    operation = continue_start(call_id=call.call_id, message="Ready?")
    Call.objects.filter(pk=call.pk).update(state="hangup-user", end_reason="hangup-user")

    timers_sweep()

    operation.refresh_from_db()
    assert operation.result == {"success": False, "error": "Call ended: hangup-user"}


def test_a_refused_prompt_fails_the_operation_and_frees_the_turn(
    mock_carrier: Any, make_call: Any, no_prompt_thread: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from calls.services.turns import _say_prompt
    from providers.errors import ProviderError

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise ProviderError("carrier said no")

    monkeypatch.setattr(mock_carrier, "play_text", refuse)
    call = make_call(state="listening")
    operation = continue_start(call_id=call.call_id, message="Ready?")
    monkeypatch.setattr("calls.services.turns.close_old_connections", lambda: None)
    _say_prompt(*no_prompt_thread[0])

    operation.refresh_from_db()
    assert operation.result == {"success": False, "error": "carrier said no"}
    call.refresh_from_db()
    assert call.turn_token is None


def test_finished_operations_are_pruned_after_a_day(
    mock_carrier: Any, make_call: Any, fake_clock: Any, no_prompt_thread: Any
) -> None:
    call = make_call(state="listening")
    operation = continue_start(call_id=call.call_id, message="Ready?")
    _answer(call, "ready", operation.turn_token)

    fake_clock.advance(seconds=OPERATION_TTL.total_seconds() - 1)
    timers_sweep()
    assert ContinueOperation.objects.exists()
    fake_clock.advance(seconds=2)
    timers_sweep()
    assert not ContinueOperation.objects.exists()


# -- the turn lease of a synchronous continue ---------------------------------------------------


def test_a_turn_whose_process_died_is_freed_when_its_lease_expires(
    mock_carrier: Any, make_call: Any, fake_clock: Any
) -> None:
    call = make_call(state="listening")
    now = fake_clock.now()
    # What a `continue` left behind when kill -9 hit it mid-wait: a claimed turn whose
    # lease nobody renews any more (the transcript deadline is minutes away).
    turn_claim(
        call,
        token="dead-turn",
        started=now,
        deadline=now + timedelta(minutes=3),
        lease_until=now + TURN_LEASE,
    )
    with pytest.raises(CallConflict, match="Already waiting for transcript"):
        call_continue(call_id=call.call_id, message="Hello?")

    fake_clock.advance(seconds=TURN_LEASE.total_seconds())
    assert timers_sweep().fired.get("transcript_wait") == 1
    call.refresh_from_db()
    assert call.turn_token is None
    _answer(call, "late answer", "dead-turn")
    assert TranscriptEntry.objects.get().text == "late answer"


def test_a_waiting_continue_renews_its_lease(
    mock_carrier: Any, make_call: Any, fake_clock: Any
) -> None:
    call = make_call(state="listening")
    leases: list[Any] = []

    def caller_answers_late(clock: Any) -> None:
        row = Call.objects.get(pk=call.pk)
        leases.append(row.turn_lease_until)
        timers_sweep(now=clock.now())  # a sweeper running meanwhile must not free it
        if clock.now() - row.turn_started_at >= 3 * TURN_LEASE:
            _answer(row, "finally", row.turn_token, n=len(leases))

    fake_clock.on_sleep.append(caller_answers_late)
    result = call_continue(call_id=call.call_id, message="Still there?")

    assert result.transcript == "finally"
    assert max(leases) - min(leases) >= 2 * TURN_LEASE  # renewed all along


# -- guards and results ---------------------------------------------------------------------------


def test_a_continue_on_an_ended_call_is_refused_before_speaking(
    mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="completed", end_reason="completed")
    with pytest.raises(CallConflict, match="Call has ended"):
        call_continue(call_id=call.call_id, message="Hello?")
    assert mock_carrier.sent == []


def test_a_continue_start_that_cannot_claim_the_turn_is_a_failed_operation(
    mock_carrier: Any, make_call: Any, no_prompt_thread: Any
) -> None:
    call = make_call(state="listening", turn_token="someone-else")
    operation = continue_start(call_id=call.call_id, message="Ready?")
    assert (operation.status, operation.result) == (
        "failed",
        {"success": False, "error": "Already waiting for transcript"},
    )
    assert no_prompt_thread == []  # nothing was said
    assert Call.objects.get(pk=call.pk).turn_token == "someone-else"


def test_continue_result_finds_an_operation_by_its_id(
    mock_carrier: Any, make_call: Any, no_prompt_thread: Any
) -> None:
    from calls.exceptions import CallNotFound, InvalidRequest
    from calls.services.turns import continue_result

    operation = continue_start(call_id=make_call(state="listening").call_id, message="Ready?")
    assert continue_result(operation_id=str(operation.operation_id)) == operation
    with pytest.raises(InvalidRequest, match="operationId required"):
        continue_result(operation_id=None)
    for unknown in ("not-a-uuid", "00000000-0000-4000-8000-000000000000"):
        with pytest.raises(CallNotFound, match="Operation not found"):
            continue_result(operation_id=unknown)


def test_a_completed_turn_is_counted_with_its_latency(
    mock_carrier: Any, make_call: Any, fake_clock: Any
) -> None:
    call = make_call(state="listening")

    def caller_answers(clock: Any) -> None:
        row = Call.objects.get(pk=call.pk)
        if row.turn_token and not TranscriptEntry.objects.filter(speaker="user").exists():
            _answer(row, "here", row.turn_token)

    fake_clock.on_sleep.append(caller_answers)
    result = call_continue(call_id=call.call_id, message="Still there?")
    assert result.transcript == "here" and result.latency_ms == 100
    call.refresh_from_db()
    assert call.metadata["turnCount"] == 1 and call.metadata["lastTurnLatencyMs"] == 100
    assert call.turn_token is None  # released when the turn ended
    ops = [op for op, _ in mock_carrier.sent]
    assert ops[:2] == ["play_text", "start_listening"]

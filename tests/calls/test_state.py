"""The state machine, as rules and as conditional database updates.

docs/plugin-behaviour.md, "State machine".
"""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calls.models import Call
from calls.services.lifecycle import call_finalize, call_transition
from calls.state import NON_TERMINAL, TERMINAL, CallState, can_transition, predecessors

ORDER = ["initiated", "ringing", "answered", "active", "speaking"]
ALL = sorted(NON_TERMINAL | TERMINAL)


def test_it_moves_forward_in_order():
    for index, state in enumerate(ORDER):
        for later in ORDER[index + 1 :]:
            assert can_transition(state, later)


def test_it_never_moves_backwards():
    assert not can_transition("answered", "ringing")
    assert not can_transition("speaking", "active")
    assert not can_transition("listening", "answered")


def test_speaking_and_listening_alternate_freely():
    assert can_transition("speaking", "listening")
    assert can_transition("listening", "speaking")


def test_same_state_is_not_a_transition():
    assert not can_transition("ringing", "ringing")


@given(st.sampled_from(ALL), st.sampled_from(ALL))
def test_terminal_states_stick_and_any_live_state_may_end(current, new):
    if current in TERMINAL:
        assert not can_transition(current, new)
    elif new in TERMINAL:
        assert can_transition(current, new)


@given(st.sampled_from(ALL))
def test_predecessors_are_exactly_the_states_allowed_to_move_there(new):
    assert set(predecessors(new)) == {s for s in ALL if can_transition(s, new)}


@pytest.mark.django_db
def test_a_late_ringing_after_answered_changes_nothing(make_call):
    call = make_call(state="answered")
    assert not call_transition(call=call, state=CallState.RINGING)
    call.refresh_from_db()
    assert call.state == "answered"


@pytest.mark.django_db
def test_finalize_happens_once_and_the_first_reason_wins(make_call):
    call = make_call(state="listening")
    assert call_finalize(call=call, reason="hangup-user")
    assert not call_finalize(call=call, reason="timeout")
    call.refresh_from_db()
    assert (call.state, call.end_reason) == ("hangup-user", "hangup-user")
    assert call.ended_at is not None


@pytest.mark.django_db
def test_an_unknown_end_reason_is_recorded_as_completed(make_call):
    call = make_call(state="answered")
    call_finalize(call=call, reason="exploded")
    call.refresh_from_db()
    assert call.state == "completed"


@pytest.mark.django_db
def test_finalize_clears_every_deadline(make_call):
    from django.utils import timezone

    now = timezone.now()
    call = make_call(
        state="answered",
        max_duration_at=now,
        notify_hangup_at=now,
        ring_deadline_at=now,
        transcript_deadline_at=now,
    )
    call_finalize(call=call, reason="completed")
    call.refresh_from_db()
    assert [
        call.max_duration_at,
        call.notify_hangup_at,
        call.ring_deadline_at,
        call.transcript_deadline_at,
    ] == [None] * 4


@pytest.mark.django_db(transaction=True)
def test_two_threads_ending_one_call_finalize_it_exactly_once(make_call):
    call = make_call(state="listening")
    results: list[bool] = []
    barrier = threading.Barrier(2)

    def end(reason: str) -> None:
        from django.db import connection

        copy = Call.objects.get(pk=call.pk)
        barrier.wait()
        results.append(call_finalize(call=copy, reason=reason))
        connection.close()

    threads = [threading.Thread(target=end, args=(r,)) for r in ("completed", "hangup-bot")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, True]
    call.refresh_from_db()
    assert call.state in ("completed", "hangup-bot")

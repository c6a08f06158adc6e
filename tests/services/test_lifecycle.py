"""State changes of one call (calls/services/lifecycle.py), called directly.

Carrier timestamps are kept when they could be true; every write is conditional, so a
call never moves backwards, is finalized once, and concurrent metadata writers keep
each other's keys.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from calls.models import Call, CallEvent, TranscriptEntry
from calls.services.lifecycle import (
    call_finalize,
    call_identity_new,
    call_mark_answered,
    call_transition,
    event_record,
    metadata_update,
    plausible_time,
)
from providers.base import EventType, NormalizedEvent


@pytest.mark.parametrize(
    "stamp",
    [
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=23, minutes=59))),
        datetime(1999, 12, 31, tzinfo=UTC),
    ],
)
def test_impossible_stamps_give_our_clock(fake_clock: Any, stamp: datetime) -> None:
    assert plausible_time(stamp) == fake_clock.now()


def test_late_and_slightly_early_stamps_are_kept(fake_clock: Any) -> None:
    late = fake_clock.now() - timedelta(days=300)
    skewed = fake_clock.now() + timedelta(seconds=5)
    assert plausible_time(late) == late and plausible_time(skewed) == skewed
    assert plausible_time(None) == fake_clock.now()


# -- transitions, finalization, rows -------------------------------------------------------------


def test_a_transition_the_state_machine_forbids_changes_nothing(make_call: Any) -> None:
    call = make_call(state="listening")
    assert call_transition(call=call, state="ringing") is False
    assert call_transition(call=call, state="listening") is False  # same state: no transition
    assert Call.objects.get(pk=call.pk).state == "listening"
    assert call_transition(call=call, state="speaking", turn_token="t-1") is True
    row = Call.objects.get(pk=call.pk)
    assert (row.state, row.turn_token, call.turn_token) == ("speaking", "t-1", "t-1")


def test_finalize_keeps_a_plausible_carrier_end_time_and_records_the_end_once(
    make_call: Any, fake_clock: Any
) -> None:
    call = make_call(state="listening")
    ended = fake_clock.now() - timedelta(seconds=3)
    assert call_finalize(call=call, reason="hangup-user", ended_at=ended) is True
    assert call_finalize(call=call, reason="timeout") is False
    row = Call.objects.get(pk=call.pk)
    assert (row.state, row.end_reason, row.ended_at) == ("hangup-user", "hangup-user", ended)
    assert list(row.events.values_list("type", "payload")) == [
        ("call.ended", {"reason": "hangup-user", "by": "voicecall"})
    ]


def test_words_in_flight_when_an_answered_call_ends_are_written_interrupted(
    make_call: Any, fake_clock: Any
) -> None:
    words = [{"id": "u-1", "text": "Your table is", "hangUp": True}]
    call = make_call(
        state="speaking", answered_at=fake_clock.now(), metadata={"utterancesInFlight": words}
    )
    assert call_finalize(call=call, reason="hangup-user")
    lines = TranscriptEntry.objects.filter(call=call).values_list(
        "speaker", "text", "utterance_id", "interrupted"
    )
    assert list(lines) == [("bot", "Your table is", "u-1", True)]
    call.refresh_from_db()
    assert "utterancesInFlight" not in call.metadata


def test_words_in_flight_on_a_call_never_answered_were_never_heard(make_call: Any) -> None:
    words = [{"id": "u-1", "text": "Your parcel", "hangUp": True}]
    call = make_call(state="ringing", metadata={"utterancesInFlight": words})
    assert call_finalize(call=call, reason="no-answer")
    assert not TranscriptEntry.objects.exists()
    call.refresh_from_db()
    assert "utterancesInFlight" not in call.metadata


def test_a_carriers_own_end_is_not_recorded_twice(make_call: Any) -> None:
    call = make_call(state="listening")
    call_finalize(call=call, reason="completed", record=False)
    assert not CallEvent.objects.exists()


def test_answered_sets_the_answer_time_once(
    make_call: Any, fake_clock: Any, configure: Any
) -> None:
    configure({"maxDurationSeconds": 60})
    call = make_call(state="ringing")
    assert call_mark_answered(call=call) is True
    first = fake_clock.now()
    fake_clock.advance(seconds=5)
    assert call_mark_answered(call=call) is False
    row = Call.objects.get(pk=call.pk)
    assert (row.answered_at, row.max_duration_at) == (first, first + timedelta(seconds=60))


def test_metadata_updates_keep_other_keys(make_call: Any) -> None:
    call = make_call(metadata={"a": 1, "b": 2})
    stale = Call.objects.get(pk=call.pk)  # another writer's copy
    metadata_update(call=call, set_={"c": 3}, delete=("a",))
    metadata_update(call=stale, set_={"d": 4})
    assert Call.objects.get(pk=call.pk).metadata == {"b": 2, "c": 3, "d": 4}


def test_an_event_row_is_recorded_once_per_key(make_call: Any) -> None:
    call = make_call()
    event = NormalizedEvent(type=EventType.DTMF, id="e-1", digits="5")
    assert event_record(call, event) is True
    assert event_record(call, event) is False
    assert list(CallEvent.objects.values_list("type", "dedupe_key", "payload")) == [
        ("call.dtmf", "e-1", {"digits": "5"})
    ]


def test_a_new_identity_carries_its_webhook_url_and_session_key(db: Any, configure: Any) -> None:
    configure({"publicUrl": "https://v.example/voice/webhook"})
    identity = call_identity_new(other_party="+15550001111")
    call_id = identity["public_id"]
    assert identity["webhook_url"] == f"https://v.example/voice/webhook?callId={call_id}"
    assert identity["session_key"] == "agent:main:voice:15550001111"


def test_a_far_offset_is_kept_as_the_same_instant_in_utc(fake_clock: Any) -> None:
    # PostgreSQL refuses offsets past ±15:59; the instant is fine, so it is kept in UTC.
    stamp = (fake_clock.now() - timedelta(hours=1)).astimezone(
        timezone(timedelta(hours=-23, minutes=-59))
    )
    kept = plausible_time(stamp)
    assert kept == stamp and kept.utcoffset() == timedelta(0)


def test_an_event_row_that_fails_for_another_reason_is_not_taken_for_a_duplicate(
    make_call: Any,
) -> None:
    call = make_call(state="listening")
    # NaN is not JSON: SQLite's JSON check (IntegrityError) or PostgreSQL's JSONB refuses it.
    broken = NormalizedEvent(
        type=EventType.SPEECH,
        id="e-nan",
        call_id=call.call_id,
        transcript="yes",
        confidence=float("nan"),
    )
    with pytest.raises(Exception) as raised:
        event_record(call, broken)
    assert "duplicate" not in str(raised.value).lower()
    fine = NormalizedEvent(type=EventType.SPEECH, id="e-ok", call_id=call.call_id, transcript="yes")
    assert event_record(call, fine) is True
    assert event_record(call, fine) is False  # a true re-delivery


def test_an_event_with_a_nul_character_is_refused_before_the_database_and_the_unit_goes_on(
    make_call: Any,
) -> None:
    """PostgreSQL's jsonb refuses NUL; refused in a statement, it would abort the whole
    transaction the event shares with the rest of its webhook."""
    call = make_call(state="listening")
    nul = NormalizedEvent(
        type=EventType.SPEECH, id="e-nul", call_id=call.call_id, transcript="a\x00b"
    )

    with pytest.raises(ValueError, match="NUL"):
        event_record(call, nul)

    fine = NormalizedEvent(type=EventType.SPEECH, id="e-ok", call_id=call.call_id, transcript="ok")
    assert event_record(call, fine) is True
    # The six characters of an escape are only text.
    text = NormalizedEvent(
        type=EventType.SPEECH, id="e-text", call_id=call.call_id, transcript="say \\u0000"
    )
    assert event_record(call, text) is True

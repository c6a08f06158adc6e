"""Durable timers and restart restore (calls/services/timers.py).

Deadlines on the row, fired by the sweep, once, with a moved clock (docs/plugin-behaviour.md,
"Timers"; docs/architecture.md, "Timers and the sweep"); after a restart, unfinished calls
are checked with the carrier (docs/plugin-behaviour.md, "Restore after restart").
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from calls.models import Call, StreamLease
from calls.services.dialling import call_initiate
from calls.services.events import event_apply
from calls.services.stream_plans import STREAM_GRACE
from calls.services.timers import RING_GRACE, calls_restore, timers_sweep
from providers.base import CallStatus, EventType, NormalizedEvent
from providers.errors import ProviderUnavailable

pytestmark = pytest.mark.django_db


def _event(call: Call, type_: EventType, **fields) -> NormalizedEvent:
    return NormalizedEvent(
        type=type_,
        id=f"{type_}-{fields.pop('n', 0)}",
        call_id=call.call_id,
        provider_call_id=call.provider_call_id,
        **fields,
    )


def _hangups(carrier) -> int:
    return sum(1 for op, _ in carrier.sent if op == "hang_up")


def test_notify_call_hangs_up_after_the_delay_not_before(mock_carrier, fake_clock, configure):
    configure({"outbound": {"notifyHangupDelaySec": 3}})
    call = call_initiate(to="+15555550123", message="Hello", mode="notify")
    event_apply(provider="mock", event=_event(call, EventType.ANSWERED))
    fake_clock.advance(seconds=2)
    timers_sweep()
    call.refresh_from_db()
    assert call.state == "speaking"
    fake_clock.advance(seconds=1.5)
    report = timers_sweep()
    call.refresh_from_db()
    assert report.fired == {"notify_hangup": 1}
    assert call.state == "hangup-bot"
    assert _hangups(mock_carrier) == 1


def test_a_deadline_fires_once_even_when_swept_twice(mock_carrier, fake_clock, make_call):
    call = make_call(state="listening", max_duration_at=fake_clock.now())
    first, second = timers_sweep(), timers_sweep()
    assert first.fired == {"max_duration": 1}
    assert second.fired == {}
    assert _hangups(mock_carrier) == 1
    call.refresh_from_db()
    assert call.state == "timeout"


def test_max_duration_ends_the_call_with_timeout(mock_carrier, fake_clock, configure):
    configure({"maxDurationSeconds": 60})
    call = call_initiate(to="+15555550123", message="Hi", mode="conversation")
    event_apply(provider="mock", event=_event(call, EventType.ANSWERED))
    call.refresh_from_db()
    assert call.max_duration_at == fake_clock.now() + timedelta(seconds=60)
    fake_clock.advance(seconds=59)
    timers_sweep()
    call.refresh_from_db()
    assert call.state == "listening"
    fake_clock.advance(seconds=2)
    timers_sweep()
    call.refresh_from_db()
    assert (call.state, call.end_reason) == ("timeout", "timeout")
    assert call.metadata["endReason"] == "timeout"


def test_first_speech_starts_the_duration_timer_when_no_answer_event_came(
    mock_carrier, fake_clock, configure
):
    configure({"maxDurationSeconds": 30})
    call = call_initiate(to="+15555550123", message="Hi", mode="conversation")
    event_apply(provider="mock", event=_event(call, EventType.SPEECH, transcript="hello?"))
    call.refresh_from_db()
    assert call.max_duration_at == fake_clock.now() + timedelta(seconds=30)


def test_an_unanswered_call_ends_as_no_answer_after_the_ring_timeout(
    mock_carrier, fake_clock, configure
):
    configure({"ringTimeoutMs": 30000, "staleCallReaperSeconds": 0})
    call = call_initiate(to="+15555550123", message="Hi")
    event_apply(provider="mock", event=_event(call, EventType.RINGING))
    fake_clock.advance(seconds=30)
    timers_sweep()
    call.refresh_from_db()
    assert call.state == "ringing"
    fake_clock.advance(seconds=RING_GRACE.total_seconds() + 1)
    timers_sweep()
    call.refresh_from_db()
    assert call.state == "no-answer"
    assert _hangups(mock_carrier) == 1


def test_answering_cancels_the_ring_timeout(mock_carrier, fake_clock, configure):
    configure({"staleCallReaperSeconds": 0})
    call = call_initiate(to="+15555550123", message="Hi", mode="conversation")
    event_apply(provider="mock", event=_event(call, EventType.ANSWERED))
    fake_clock.advance(minutes=2)
    timers_sweep()
    call.refresh_from_db()
    assert call.ring_deadline_at is None
    assert not call.is_terminal


def test_stale_reaper_ends_only_never_answered_calls_outside_speaking_or_listening(
    mock_carrier, fake_clock, configure, make_call
):
    configure({"staleCallReaperSeconds": 120, "ringTimeoutMs": 600000})
    old = fake_clock.now() - timedelta(seconds=121)
    stale = make_call(state="initiated", started_at=old)
    talking = make_call(state="listening", started_at=old)
    answered = make_call(state="answered", started_at=old, answered_at=old)
    fresh = make_call(state="ringing", started_at=fake_clock.now())
    report = timers_sweep()
    states = {c.pk: Call.objects.get(pk=c.pk).state for c in (stale, talking, answered, fresh)}
    assert report.fired.get("stale_reaper") == 1
    assert states == {
        stale.pk: "hangup-bot",
        talking.pk: "listening",
        answered.pk: "answered",
        fresh.pk: "ringing",
    }


def test_stale_reaper_zero_disables_it(mock_carrier, fake_clock, configure, make_call):
    configure({"staleCallReaperSeconds": 0})
    call = make_call(state="initiated", started_at=fake_clock.now() - timedelta(hours=1))
    timers_sweep()
    call.refresh_from_db()
    assert call.state == "initiated"


def test_an_abandoned_turn_lock_is_freed_after_its_deadline(fake_clock, make_call, mock_carrier):
    call = make_call(state="listening", turn_token="t1", transcript_deadline_at=fake_clock.now())
    timers_sweep()
    call.refresh_from_db()
    assert call.turn_token == "t1"  # still inside the grace period
    fake_clock.advance(seconds=10)
    report = timers_sweep()
    call.refresh_from_db()
    assert call.turn_token is None
    assert report.fired["transcript_wait"] == 1


def test_a_failed_carrier_hangup_leaves_the_call_live_for_a_later_retry(
    mock_carrier, fake_clock, make_call, monkeypatch
):
    from providers.errors import ProviderError

    def refuse(target):
        raise ProviderError("carrier down", retryable=True)

    monkeypatch.setattr(mock_carrier, "hang_up", refuse)
    call = make_call(state="listening", max_duration_at=fake_clock.now())
    timers_sweep()
    call.refresh_from_db()
    assert call.state == "listening"
    assert call.hangup_claimed_at is None


def test_preconnect_dtmf_is_sent_on_answer_before_the_greeting(mock_carrier, fake_clock):
    call = call_initiate(
        to="+15555550123", message="Hi", mode="conversation", dtmf_sequence="ww123#"
    )
    event_apply(provider="mock", event=_event(call, EventType.ANSWERED))
    ops = [(op, fields.get("digits")) for op, fields in mock_carrier.sent]
    assert ops[1:3] == [("send_dtmf", "ww123#"), ("play_text", None)]
    call.refresh_from_db()
    assert "dtmfSequence" not in call.metadata


def test_an_end_we_cause_is_on_the_event_timeline_once(mock_carrier, fake_clock, make_call):
    call = make_call(state="listening", max_duration_at=fake_clock.now())
    timers_sweep()
    timers_sweep()
    ended = list(call.events.filter(type="call.ended").values_list("payload", flat=True))
    assert ended == [{"reason": "timeout", "by": "voicecall"}]


# -- restart restore (calls_restore) ------------------------------------------------------------


def test_a_call_the_carrier_reports_finished_is_finalized(mock_carrier, fake_clock, make_call):
    call = make_call(state="answered", provider_call_id="mock-ended-1")
    report = calls_restore()
    call.refresh_from_db()
    assert call.state == "completed"
    assert report.finalized == {"completed": 1}


def test_a_live_call_is_kept_with_its_remaining_max_duration(
    mock_carrier, fake_clock, make_call, configure
):
    configure({"maxDurationSeconds": 300})
    answered = fake_clock.now() - timedelta(seconds=100)
    call = make_call(state="listening", started_at=answered, answered_at=answered)
    report = calls_restore()
    call.refresh_from_db()
    assert report.kept == 1
    assert call.state == "listening"
    # The remaining 200 s, not a fresh 300 s (the v4.12 bug).
    assert call.max_duration_at == answered + timedelta(seconds=300)


def test_an_unknown_status_keeps_the_call_and_timers_stay_the_fallback(
    mock_carrier, fake_clock, make_call, monkeypatch, configure
):
    configure({"maxDurationSeconds": 300})

    def unknown(provider_call_id):
        raise ProviderUnavailable("carrier API 500")

    monkeypatch.setattr(mock_carrier, "get_call_status", unknown)
    call = make_call(state="speaking", started_at=fake_clock.now() - timedelta(seconds=10))
    assert calls_restore().kept == 1
    fake_clock.advance(seconds=291)
    timers_sweep()
    call.refresh_from_db()
    assert call.state == "timeout"


def test_a_call_older_than_max_duration_is_timed_out_and_hung_up(
    mock_carrier, fake_clock, make_call, configure
):
    configure({"maxDurationSeconds": 60})
    call = make_call(state="answered", started_at=fake_clock.now() - timedelta(seconds=61))
    calls_restore()
    call.refresh_from_db()
    assert call.state == "timeout"
    assert [op for op, _ in mock_carrier.sent] == ["hang_up"]


def test_a_call_never_dialled_is_failed_once_its_ring_window_passed(
    mock_carrier, fake_clock, make_call
):
    call = make_call(
        state="initiated", provider_call_id=None, started_at=fake_clock.now() - timedelta(minutes=5)
    )
    calls_restore()
    call.refresh_from_db()
    assert call.state == "failed"


def test_restore_uses_the_carrier_end_reason(mock_carrier, fake_clock, make_call, monkeypatch):
    monkeypatch.setattr(
        mock_carrier,
        "get_call_status",
        lambda pid: CallStatus(status="busy", is_terminal=True, end_reason="busy"),
    )
    call = make_call(state="ringing")
    calls_restore()
    call.refresh_from_db()
    assert call.state == "busy"


def test_an_unreachable_carrier_at_restore_is_one_warning_not_one_per_call(
    mock_carrier, fake_clock, make_call, monkeypatch, caplog
):
    monkeypatch.setattr(
        mock_carrier,
        "get_call_status",
        lambda pid: CallStatus.unknown(ProviderUnavailable("connection refused")),
    )
    calls = [make_call(state="listening", provider_call_id=f"mock-{i}") for i in range(40)]
    with caplog.at_level("WARNING"):
        report = calls_restore()
    assert (report.kept, report.unknown) == (40, 40)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "Carrier status unavailable for 40 restored call(s), kept for their timers: "
        "connection refused"
    ]
    assert all(Call.objects.get(pk=c.pk).state == "listening" for c in calls)


def test_restoring_twice_neither_loses_nor_doubles_a_timer(
    mock_carrier, fake_clock, make_call, configure
):
    configure({"maxDurationSeconds": 300})
    answered = fake_clock.now()
    call = make_call(state="listening", answered_at=answered)
    calls_restore()
    calls_restore()
    fake_clock.advance(seconds=301)
    first, second = timers_sweep(), timers_sweep()
    assert first.fired == {"max_duration": 1} and second.fired == {}
    call.refresh_from_db()
    assert call.state == "timeout"


def test_late_webhooks_cannot_resurrect_a_finished_call(mock_carrier, fake_clock, make_call):
    call = make_call(state="listening", provider_call_id="mock-ended-2")
    calls_restore()
    event = NormalizedEvent(
        type=EventType.ANSWERED,
        id="late-1",
        call_id=call.call_id,
        provider_call_id=call.provider_call_id,
    )
    outcome = event_apply(provider="mock", event=event)
    call.refresh_from_db()
    assert not outcome.applied
    assert call.state == "completed"
    assert not call.events.filter(dedupe_key="late-1").exists()


def test_calls_of_another_provider_are_left_alone(mock_carrier, fake_clock, make_call):
    other = make_call(state="answered", provider="twilio", provider_call_id="CAended")
    calls_restore()
    assert Call.objects.get(pk=other.pk).state == "answered"


def test_a_stream_whose_process_died_is_detached_once_its_lease_runs_out(
    mock_carrier, fake_clock, make_call
):
    """kill -9 of the stream's process: nothing ran stream_detach, but its lease expires."""
    now = fake_clock.now()
    dead = make_call(state="listening", stream_id="MZ-dead", provider_call_id="mock-1")
    alive = make_call(state="listening", stream_id="MZ-live", provider_call_id="mock-2")
    unleased = make_call(state="listening", stream_id="MZ-old", provider_call_id="mock-3")
    StreamLease.objects.create(
        holder="host:1:a", stream_id="MZ-dead", expires_at=now - timedelta(seconds=1)
    )
    StreamLease.objects.create(
        holder="host:2:b", stream_id="MZ-live", expires_at=now + timedelta(seconds=20)
    )

    timers_sweep()
    dead.refresh_from_db()
    assert (dead.stream_id, dead.stream_lost_at) == ("", now + STREAM_GRACE)
    assert Call.objects.get(pk=alive.pk).stream_id == "MZ-live"
    assert Call.objects.get(pk=unleased.pk).stream_id == "MZ-old"  # no lease: not judged

    fake_clock.advance(seconds=3)
    timers_sweep()
    dead.refresh_from_db()
    assert dead.state == "hangup-bot"
    assert Call.objects.get(pk=alive.pk).state == "listening"


def test_restore_keeps_calls_a_disabled_carrier_cannot_be_asked_about(configure, make_call):
    # enabled: false skips credential checks, so the carrier's adapter may not build:
    # start-up keeps the leftover call for its timers instead of crashing.
    configure({"enabled": False, "provider": "twilio", "fromNumber": "+15550001234"})
    call = make_call(provider="twilio", state="listening")

    report = calls_restore()

    assert (report.kept, report.unknown) == (1, 1)
    call.refresh_from_db()
    assert call.state == "listening"

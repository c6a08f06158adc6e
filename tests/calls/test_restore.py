"""Restart restore: unfinished calls are checked with the carrier.

docs/plugin-behaviour.md, "Restore after restart".
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from calls.models import Call
from calls.services.events import event_apply
from calls.services.timers import calls_restore, timers_sweep
from providers.base import CallStatus, EventType, NormalizedEvent
from providers.errors import ProviderUnavailable

pytestmark = pytest.mark.django_db


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

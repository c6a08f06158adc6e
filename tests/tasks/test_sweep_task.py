"""The Celery side of the timers (production).

Beat schedules the sweep; the task fires deadlines.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings

from calls.tasks import sweep_timers
from voicecall_project.celery import app


def test_beat_runs_the_sweep_every_interval() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["voicecall-sweep"]
    assert entry["task"] == "calls.tasks.sweep_timers"
    assert entry["schedule"] == settings.VOICECALL_SWEEP_INTERVAL_SECONDS
    assert "calls.tasks.sweep_timers" in app.tasks


@pytest.mark.django_db
def test_the_sweep_task_fires_a_due_deadline_once(
    mock_carrier: Any, fake_clock: Any, make_call: Any
) -> None:
    call = make_call(state="listening", max_duration_at=fake_clock.now())
    assert sweep_timers.delay().get() == {"max_duration": 1}
    assert sweep_timers.delay().get() == {}
    call.refresh_from_db()
    assert call.state == "timeout"

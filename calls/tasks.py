"""Celery tasks (production): thin wrappers over services."""
from __future__ import annotations

from celery import shared_task


@shared_task(name="calls.tasks.sweep_timers", ignore_result=True)
def sweep_timers() -> dict[str, int]:
    """Fire due call deadlines (Celery beat runs this every VOICECALL_SWEEP_INTERVAL_SECONDS)."""
    from calls.services import timers_sweep

    return timers_sweep().fired

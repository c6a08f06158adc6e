"""Celery tasks (production): thin wrappers over services."""

from __future__ import annotations

from celery import shared_task

from calls.services.auto_reply_worker import responder_run
from calls.services.retention import retention_purge
from calls.services.timers import timers_sweep


@shared_task(name="calls.tasks.sweep_timers", ignore_result=True)
def sweep_timers() -> dict[str, int]:
    """Fire due call deadlines (Celery beat runs this every VOICECALL_SWEEP_INTERVAL_SECONDS)."""
    return timers_sweep().fired


# No retries: a late automatic reply is worse than none (the caller has moved on).
@shared_task(name="calls.tasks.respond_to_caller", ignore_result=True)
def respond_to_caller(call_id: str, entry_id: int, said: str | None = None) -> None:
    """Speak the automatic reply to one caller line (the responder's production dispatch);
    `said`: the caller's words when the stored line is redacted."""
    if said is None:
        responder_run(call_id=call_id, entry_id=entry_id)
    else:
        responder_run(call_id=call_id, entry_id=entry_id, said=said)


@shared_task(name="calls.tasks.purge_history", ignore_result=True)
def purge_history() -> dict[str, object]:
    """Apply `retention` (beat runs it daily); the counts, as `voicecall purge` prints them."""
    return retention_purge().as_dict()

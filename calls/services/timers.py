"""Durable timers and restart restore.

docs/design.md, "8. Runtime modes and scale"; docs/plugin-behaviour.md, "Timers" and
"Restore after restart".

Each deadline is a column; the sweep claims a due deadline with a conditional UPDATE
that clears it, so two sweepers (or a restart) never fire one twice, and a crash
between claim and action leaves the call to the stale reaper and max-duration timer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Q

from calls import clock, metrics
from calls.call_metadata import END_REASON
from calls.carrier import get_provider
from calls.config import get_config
from calls.exceptions import CallError
from calls.models import ApiToken, Call, ReplayKey, StreamLease
from calls.services import lifecycle
from calls.services.actions import call_hang_up
from calls.services.idle import idle_sweep
from calls.services.outbox import commands_prune, commands_sweep
from calls.services.stream_plans import STREAM_GRACE, waiting_resume
from calls.services.turns import operations_sweep
from calls.state import CallState
from providers.base import CallStatus
from providers.errors import ProviderError

logger = logging.getLogger(__name__)

# Rows without a turn lease (made before leases existed) are freed this long past their
# transcript deadline.
TURN_LOCK_GRACE = timedelta(seconds=5)
# Sent or given-up carrier commands of ended calls are kept this long for inspection.
COMMAND_TTL = timedelta(days=1)
# Grace after ringTimeoutMs before we give up on a call the carrier never reported on.
RING_GRACE = timedelta(seconds=15)


@dataclass
class SweepReport:
    fired: dict[str, int] = field(default_factory=dict)

    def add(self, name: str) -> None:
        self.fired[name] = self.fired.get(name, 0) + 1


def timers_sweep(*, now: datetime | None = None) -> SweepReport:
    """Fire every due deadline once; safe to run concurrently on many processes."""
    now = now or clock.now()
    report = SweepReport()
    _fire(report, "notify_hangup", "notify_hangup_at", now, CallState.HANGUP_BOT)
    _fire(report, "max_duration", "max_duration_at", now, CallState.TIMEOUT)
    _fire(
        report,
        "ring_timeout",
        "ring_deadline_at",
        now - RING_GRACE,
        CallState.NO_ANSWER,
        only_states=(CallState.INITIATED, CallState.RINGING),
    )
    _end_lost_streams(report, now)
    _hang_up_idle(report, now)
    _resume_waiting(report)
    _send_owed_commands(report, now)
    _reap_stale(report, now)
    _settle_operations(report, now)
    _free_abandoned_turns(report, now)
    ReplayKey.objects.filter(expires_at__lte=now).delete()
    commands_prune(before=now - COMMAND_TTL)
    ApiToken.objects.filter(expires_at__lte=now - timedelta(days=1)).delete()
    return report


def _fire(
    report: SweepReport,
    name: str,
    column: str,
    due: datetime,
    reason: str,
    only_states: tuple[str, ...] | None = None,
) -> None:
    calls = Call.objects.active().filter(**{f"{column}__lte": due})
    if only_states:
        calls = calls.filter(state__in=only_states)
    for call in calls:
        claimed = Call.objects.filter(pk=call.pk, **{column: getattr(call, column)}).update(
            **{column: None}
        )
        if not claimed:
            continue  # another sweeper took it
        report.add(name)
        if reason == CallState.TIMEOUT:
            lifecycle.metadata_update(call=call, set_={END_REASON: "timeout"})
        _end(call, reason)


def _end(call: Call, reason: str) -> None:
    if not call.provider_call_id:
        lifecycle.call_finalize(call=call, reason=reason)
        return
    try:
        call_hang_up(call=call, reason=reason)
    except CallError as exc:
        # The carrier refused: the call is not finalized; the stale reaper retries.
        logger.warning("call=%s timer hang-up failed: %s", call.public_id, exc)


def _end_lost_streams(report: SweepReport, now: datetime) -> None:
    """A stream that closed and did not come back within the grace period ends its call."""
    _detach_orphaned_streams(now)
    lost = Call.objects.active().filter(stream_id="", stream_lost_at__lte=now)
    for call in lost:
        claimed = Call.objects.filter(
            pk=call.pk, stream_id="", stream_lost_at=call.stream_lost_at
        ).update(stream_lost_at=None)
        if claimed:
            report.add("stream_lost")
            _end(call, CallState.HANGUP_BOT)


def _hang_up_idle(report: SweepReport, now: datetime) -> None:
    """Realtime calls whose caller said nothing for realtime.idleHangupMs."""
    hung_up = idle_sweep(now=now)
    if hung_up:
        report.fired["realtime_idle"] = hung_up


def _detach_orphaned_streams(now: datetime) -> None:
    """Streams whose process died (kill -9) without detaching: their lease ran out and no
    live lease carries them. They get the detach that process never did, so the grace rule
    above ends the call (docs/architecture.md, "Admission across processes")."""
    live = StreamLease.objects.filter(expires_at__gt=now).values("stream_id")
    dead = StreamLease.objects.filter(expires_at__lte=now).exclude(stream_id="")
    orphaned = (
        Call.objects.active()
        .exclude(stream_id="")
        .filter(stream_id__in=dead.values("stream_id"))
        .exclude(stream_id__in=live)
    )
    for call in orphaned.only("pk", "stream_id", "public_id"):
        detached = Call.objects.filter(pk=call.pk, stream_id=call.stream_id).update(
            stream_id="", stream_lost_at=now + STREAM_GRACE
        )
        if detached:
            logger.warning(
                "call=%s stream %s lost with its process", call.public_id, call.stream_id
            )


def _resume_waiting(report: SweepReport) -> None:
    if waiting_resume():
        report.add("call_waiting")


def _send_owed_commands(report: SweepReport, now: datetime) -> None:
    """Carrier commands whose sender died, or which wait for a retry (the outbox)."""
    sent = commands_sweep(now=now)
    if sent:
        report.fired["carrier_command"] = sent


def _reap_stale(report: SweepReport, now: datetime) -> None:
    """The plugin's latest reaper: only never-answered calls not speaking/listening.

    The older reaper ended live conversations (plugin issue #79121).
    """
    seconds = get_config().stale_call_reaper_seconds
    if seconds <= 0:
        return
    stale = (
        Call.objects.active()
        .filter(
            answered_at__isnull=True,
            started_at__lte=now - timedelta(seconds=seconds),
        )
        .exclude(state__in=(CallState.SPEAKING, CallState.LISTENING))
    )
    for call in stale:
        report.add("stale_reaper")
        _end(call, CallState.HANGUP_BOT)


def _free_abandoned_turns(report: SweepReport, now: datetime) -> None:
    """Turns whose holder stopped renewing its lease (a `continue` on a dead process)."""
    freed = (
        Call.objects.filter(turn_token__isnull=False)
        .filter(
            Q(turn_lease_until__lte=now)
            # Rows from before leases existed: the old rule, deadline plus grace.
            | Q(turn_lease_until__isnull=True, transcript_deadline_at__lte=now - TURN_LOCK_GRACE),
        )
        .update(
            turn_token=None,
            turn_started_at=None,
            transcript_deadline_at=None,
            turn_lease_until=None,
        )
    )
    if freed:
        report.fired["transcript_wait"] = freed


def _settle_operations(report: SweepReport, now: datetime) -> None:
    settled = operations_sweep(now=now)
    if settled:
        report.fired["continue_operation"] = settled


@dataclass
class RestoreReport:
    kept: int = 0
    finalized: dict[str, int] = field(default_factory=dict)
    unknown: int = 0  # kept because the carrier could not be asked
    unknown_detail: str = ""  # the first such error

    def add(self, reason: str) -> None:
        self.finalized[reason] = self.finalized.get(reason, 0) + 1


def calls_restore(*, now: datetime | None = None) -> RestoreReport:
    """After a restart: check each unfinished call with the carrier; finalize, keep or time out."""
    now = now or clock.now()
    cfg = get_config()
    max_age = timedelta(seconds=cfg.max_duration_seconds)
    report = RestoreReport()
    for call in Call.objects.active().filter(provider=cfg.provider):
        reason = _restore_one(
            call, now=now, max_age=max_age, ring=cfg.ring_timeout_ms, report=report
        )
        if reason:
            report.add(reason)
        else:
            report.kept += 1
    logger.info("Restored %d active call(s) from store", report.kept)
    if report.unknown:
        # One line, not one per call: an unreachable carrier at startup would otherwise
        # log a warning for every restored call.
        logger.warning(
            "Carrier status unavailable for %d restored call(s), kept for their timers: %s",
            report.unknown,
            report.unknown_detail,
        )
    return report


def _restore_one(
    call: Call, *, now: datetime, max_age: timedelta, ring: int, report: RestoreReport
) -> str | None:
    if not call.provider_call_id:
        # The process died between admission and dial: without an id nobody can reach it.
        if now - call.started_at > timedelta(milliseconds=ring) + RING_GRACE:
            lifecycle.call_finalize(call=call, reason=CallState.FAILED)
            return CallState.FAILED
        return None
    if now - call.started_at > max_age:
        _end(call, CallState.TIMEOUT)
        lifecycle.call_finalize(call=call, reason=CallState.TIMEOUT)
        return CallState.TIMEOUT
    try:
        status = get_provider().get_call_status(call.provider_call_id)
    except (ProviderError, CallError) as exc:  # CallError: no adapter (enabled: false)
        if isinstance(exc, ProviderError):
            metrics.provider_error(provider=call.provider, kind="status")
        status = CallStatus.unknown(exc)
    if status.is_unknown:
        report.unknown += 1
        report.unknown_detail = report.unknown_detail or status.detail
    if status.is_terminal:
        lifecycle.call_finalize(call=call, reason=status.end_reason or CallState.COMPLETED)
        return status.end_reason or CallState.COMPLETED
    _ensure_deadline(call, max_age)
    return None


def _ensure_deadline(call: Call, max_age: timedelta) -> None:
    """Kept calls get their max-duration deadline at the remaining time (fixes the v4.12 bug)."""
    anchor = call.answered_at
    if anchor is None and call.state in (CallState.SPEAKING, CallState.LISTENING):
        anchor = call.started_at
    if anchor is not None and call.max_duration_at is None:
        Call.objects.filter(pk=call.pk, max_duration_at__isnull=True).update(
            max_duration_at=anchor + max_age
        )

"""Retention: delete the history `retention` says is old enough; never a live call.

`transcriptDays: N` deletes the transcript lines of calls that ended more than N days ago
(and the words their events and `continue` results carry); `callDays: N` deletes those
calls with everything recorded about them. Unset keeps for ever; 0 means every ended call.
Deletes run in batches, each its own short transaction, so a big purge never holds a long
lock (docs/architecture.md, "Retention and redaction").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Model, Q, QuerySet

from calls import clock
from calls.config import get_config
from calls.models import Call, CallEvent, ContinueOperation, TranscriptEntry, Turn
from calls.services.redaction import PAYLOAD_WORDS
from calls.state import TERMINAL

# Rows per delete or update statement: small enough that each transaction is short.
BATCH = 500


@dataclass(slots=True)
class PurgeCounts:
    """What a purge deleted, or with `dry_run` would delete."""

    dry_run: bool
    transcript_days: int | None
    call_days: int | None
    calls: int = 0
    events: int = 0
    turns: int = 0
    transcript_lines: int = 0
    event_transcripts: int = 0
    continue_results: int = 0

    def as_dict(self) -> dict[str, Any]:
        """camelCase, as every JSON we print (docs/design.md, "6. HTTP and websocket surface")."""
        return {_camel(key): value for key, value in asdict(self).items()}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def retention_purge(*, dry_run: bool = False, now: datetime | None = None) -> PurgeCounts:
    """Apply `retention` once: calls first (their lines go with them), then transcripts."""
    cfg = get_config().retention
    now = now or clock.now()
    counts = PurgeCounts(
        dry_run=dry_run, transcript_days=cfg.transcript_days, call_days=cfg.call_days
    )
    gone: QuerySet[Call] = Call.objects.none()
    if cfg.call_days is not None:
        gone = _ended_before(now - timedelta(days=cfg.call_days))
        _calls_purge(gone, counts, dry_run)
    if cfg.transcript_days is not None:
        # Calls the first rule took are not counted twice (a dry run still has them).
        ended = _ended_before(now - timedelta(days=cfg.transcript_days)).exclude(pk__in=gone)
        _transcripts_purge(ended, counts, dry_run)
    return counts


def _ended_before(cutoff: datetime) -> QuerySet[Call]:
    # Only terminal calls: a terminal state sticks, so a call chosen here cannot come back
    # to life between the select and the delete. A terminal call without ended_at (none
    # should exist) counts from its last change.
    ended = Q(ended_at__lt=cutoff) | Q(ended_at__isnull=True, updated_at__lt=cutoff)
    return Call.objects.filter(ended, state__in=TERMINAL)


def _calls_purge(calls: QuerySet[Call], counts: PurgeCounts, dry_run: bool) -> None:
    if dry_run:
        counts.calls += calls.count()
        counts.events += CallEvent.objects.filter(call__in=calls).count()
        counts.turns += Turn.objects.filter(call__in=calls).count()
        counts.transcript_lines += TranscriptEntry.objects.filter(call__in=calls).count()
        counts.continue_results += ContinueOperation.objects.filter(call__in=calls).count()
        return
    for deleted in _in_batches(calls):
        counts.calls += deleted.get("calls.Call", 0)
        counts.events += deleted.get("calls.CallEvent", 0)
        counts.turns += deleted.get("calls.Turn", 0)
        counts.transcript_lines += deleted.get("calls.TranscriptEntry", 0)
        counts.continue_results += deleted.get("calls.ContinueOperation", 0)


def _transcripts_purge(calls: QuerySet[Call], counts: PurgeCounts, dry_run: bool) -> None:
    lines = TranscriptEntry.objects.filter(call__in=calls)
    # A finished operation's result holds the caller's answer as said (pruned a day after
    # anyway); a pending one is the sweep's to fail.
    results = ContinueOperation.objects.filter(call__in=calls).exclude(
        status=ContinueOperation.Status.PENDING
    )
    events = CallEvent.objects.filter(call__in=calls).filter(_has_words())
    if dry_run:
        counts.transcript_lines += lines.count()
        counts.continue_results += results.count()
        counts.event_transcripts += events.count()
        return
    for deleted in _in_batches(lines):
        counts.transcript_lines += deleted.get("calls.TranscriptEntry", 0)
    for deleted in _in_batches(results):
        counts.continue_results += deleted.get("calls.ContinueOperation", 0)
    counts.event_transcripts += _event_words_strip(events)


def _has_words() -> Q:
    found = Q()
    for key in PAYLOAD_WORDS:
        found |= Q(payload__has_key=key)
    return found


def _in_batches[M: Model](rows: QuerySet[M]) -> list[dict[str, int]]:
    """Delete `rows` BATCH at a time; Django's per-model counts of each delete."""
    done = []
    while pks := list(rows.order_by("pk").values_list("pk", flat=True)[:BATCH]):
        with transaction.atomic():
            done.append(rows.filter(pk__in=pks).delete()[1])
    return done


def _event_words_strip(events: QuerySet[CallEvent]) -> int:
    """Drop the words from the events' payloads; the timeline keeps the events."""
    stripped = 0
    while batch := list(events.order_by("pk")[:BATCH]):
        for event in batch:
            event.payload = {k: v for k, v in event.payload.items() if k not in PAYLOAD_WORDS}
        with transaction.atomic():
            CallEvent.objects.bulk_update(batch, ["payload"])
        stripped += len(batch)
    return stripped


def retention_summary() -> str:
    """The retention settings in force, in one line (the admin shows it)."""
    cfg = get_config().retention

    def days(value: int | None) -> str:
        return "kept for ever" if value is None else f"{value} days after the call ended"

    redact = ", ".join(cfg.redact) or "nothing"
    return (
        f"Retention: transcripts {days(cfg.transcript_days)}; calls {days(cfg.call_days)}; "
        f"redacted when stored: {redact}"
    )

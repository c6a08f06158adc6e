"""State changes of one call: conditional transitions, finalization, transcript lines.

Every write here is a conditional UPDATE, so two processes applying events to one call
can never move it backwards or finalize it twice (docs/design.md, "5. Data model").
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from django.db import IntegrityError, connection, transaction

from calls import clock, metrics
from calls.call_metadata import (
    TURN_ANSWER,
    UTTERANCES_IN_FLIGHT,
    CallMetadata,
    MetadataKey,
    UtteranceInFlight,
)
from calls.carrier import call_webhook_url
from calls.config import RouteConfig, get_config
from calls.models import Call, CallEvent, TranscriptEntry
from calls.services.live import live_publish
from calls.services.machine_detection import voicemail_end_reason
from calls.services.redaction import redact_payload, redact_stored
from calls.services.routes import route_tts
from calls.services.sessions import agent_id, session_key_for
from calls.state import NON_TERMINAL, TERMINAL, CallState, predecessors
from providers.base import CallTarget, NormalizedEvent, StreamPlan
from providers.common import preferred_language, preferred_voice

logger = logging.getLogger(__name__)

# How far ahead of ours a carrier's event time may be; and the earliest we believe.
PLAUSIBLE_CLOCK_SKEW = timedelta(days=1)
EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)

_DEADLINES_CLEARED = {
    "max_duration_at": None,
    "ring_deadline_at": None,
    "notify_hangup_at": None,
    "transcript_deadline_at": None,
    "stream_lost_at": None,
}


def call_transition(*, call: Call, state: str, **fields: Any) -> bool:
    """Move the call to `state` if the state machine allows it; False when stale or same."""
    changed = Call.objects.filter(pk=call.pk, state__in=predecessors(state)).update(
        state=state, updated_at=clock.now(), **fields
    )
    if changed:
        logger.info("call=%s provider=%s state -> %s", call.public_id, call.provider, state)
        call.state = state
        for name, value in fields.items():
            setattr(call, name, value)
        live_publish(call_id=call.call_id)
    return changed == 1


def call_finalize(
    *, call: Call, reason: str, ended_at: datetime | None = None, record: bool = True
) -> bool:
    """End the call with `reason` (a terminal state); False if it had already ended.

    `record` adds a `call.ended` row to the event timeline; a carrier's own end event is
    already there, so its handler passes False.
    """
    if reason not in TERMINAL:
        logger.warning("call=%s unknown end reason %r, using completed", call.public_id, reason)
        reason = CallState.COMPLETED
    reason = voicemail_end_reason(call, reason)
    ended_at = plausible_time(ended_at)
    changed = Call.objects.filter(pk=call.pk, state__in=NON_TERMINAL).update(
        state=reason,
        end_reason=reason,
        ended_at=ended_at,
        updated_at=clock.now(),
        **_DEADLINES_CLEARED,
    )
    if changed:
        logger.info("call=%s provider=%s ended reason=%s", call.public_id, call.provider, reason)
        call.state, call.end_reason, call.ended_at = reason, reason, ended_at
        metrics.call_ended(
            provider=call.provider, direction=call.direction, mode=call.mode, end_reason=reason
        )
        if record:
            _record_end(call, reason, ended_at)
        _unfinished_words_close(call)
        live_publish(call_id=call.call_id)
    return changed == 1


def _unfinished_words_close(call: Call) -> None:
    """Carrier speech the carrier never reported finished when the call ended.

    On an answered call the caller may have heard some of it: its line is written, whole
    and flagged `interrupted` (how much was heard, carrier speech cannot tell). On a call
    never answered nobody heard anything: no line (docs/carriers.md, "What each carrier
    tells us about speech").
    """
    with transaction.atomic():
        row = Call.objects.select_for_update().only("metadata", "answered_at").get(pk=call.pk)
        flight = row.meta.get(UTTERANCES_IN_FLIGHT)
        if not flight and TURN_ANSWER not in row.meta:
            return
        # A waiting `continue` that died never took the caller's unredacted answer.
        metadata_update(call=call, delete=(UTTERANCES_IN_FLIGHT, TURN_ANSWER))
        if not flight or row.answered_at is None:
            return
        for entry in flight:
            utterance_line_add(call=call, entry=entry, interrupted=True)


def _record_end(call: Call, reason: str, ended_at: datetime, *, why: str | None = None) -> None:
    # Only the one finalize that changed the row gets here; the savepoint guards against
    # a carrier event that happened to use the same key.
    payload = {"reason": reason, "by": "voicecall"}
    if why:
        payload["why"] = why
    with contextlib.suppress(IntegrityError), transaction.atomic():
        CallEvent.objects.create(
            call=call,
            type="call.ended",
            created_at=ended_at,
            payload=payload,
            dedupe_key="voicecall:ended",
        )


def rejected_end_record(call: Call, why: str) -> None:
    """The timeline's end of an inbound call the screen refused: created ended, it never
    goes through `call_finalize` (docs/plugin-behaviour.md, "Inbound calls")."""
    _record_end(call, call.end_reason or call.state, call.ended_at or clock.now(), why=why)


def plausible_time(at: datetime | None) -> datetime:
    """A carrier's timestamp when it could be true, else our clock.

    Late deliveries keep their time, but a stamp from the future (past a day of clock
    skew) or from before telephony webhooks existed — 9999-12-31, year 1 — is not when
    anything happened, and would overflow the deadlines computed from it.
    """
    now = clock.now()
    if at is None:
        return now
    try:
        # In UTC: PostgreSQL refuses offsets past ±15:59, which a carrier string can carry.
        at = at.astimezone(UTC)
        return at if EARLIEST_EVENT_TIME <= at <= now + PLAUSIBLE_CLOCK_SKEW else now
    except (OverflowError, ValueError):
        return now


def call_mark_answered(*, call: Call, at: datetime | None = None) -> bool:
    """answered: set answeredAt and the max-duration deadline.

    docs/plugin-behaviour.md, "Normalized events".
    """
    at = plausible_time(at)
    deadline = at + timedelta(seconds=get_config().max_duration_seconds)
    changed = call_transition(call=call, state=CallState.ANSWERED, ring_deadline_at=None)
    Call.objects.filter(pk=call.pk, answered_at__isnull=True).update(
        answered_at=at, max_duration_at=deadline
    )
    if call.answered_at is None:
        call.answered_at, call.max_duration_at = at, deadline
    return changed


def call_ensure_duration_timer(*, call: Call) -> None:
    """Start the max-duration timer on first speech when no answered event came (latest)."""
    if call.max_duration_at is None and call.answered_at is None:
        deadline = clock.now() + timedelta(seconds=get_config().max_duration_seconds)
        Call.objects.filter(pk=call.pk, max_duration_at__isnull=True).update(
            max_duration_at=deadline
        )
        call.max_duration_at = deadline


def transcript_add(
    *,
    call: Call,
    speaker: str,
    text: str,
    is_final: bool = True,
    turn_token: str | None = None,
    interrupted: bool = False,
    utterance_id: str = "",
) -> TranscriptEntry:
    """Store one transcript line, redacted under `retention.redact`: every writer comes
    here, so no line reaches the record unredacted (docs/architecture.md, "Retention and
    redaction"). The returned entry holds the stored (redacted) text."""
    entry = TranscriptEntry.objects.create(
        call=call,
        speaker=speaker,
        text=redact_stored(call=call, text=text),
        is_final=is_final,
        turn_token=turn_token,
        interrupted=interrupted,
        utterance_id=utterance_id,
        created_at=clock.now(),
    )
    live_publish(call_id=call.call_id)  # the live view shows each call's latest line
    return entry


def utterance_line_add(
    *, call: Call, entry: UtteranceInFlight, interrupted: bool
) -> TranscriptEntry:
    """The bot line of carrier speech that was waiting for its report. Carrier speech has no
    word-level cut: cut-off words keep their whole text, flagged."""
    return transcript_add(
        call=call,
        speaker=TranscriptEntry.Speaker.BOT,
        text=entry["text"],
        interrupted=interrupted,
        utterance_id=entry["id"],
    )


def metadata_update(
    *, call: Call, set_: CallMetadata | None = None, delete: tuple[MetadataKey, ...] = ()
) -> None:
    """Read-modify-write of metadata under a row lock, so concurrent writers don't lose keys."""
    with transaction.atomic():
        row = Call.objects.select_for_update().only("metadata").get(pk=call.pk)
        data = dict(row.metadata or {})
        data.update(dict(set_ or {}))
        for key in delete:
            data.pop(key, None)
        Call.objects.filter(pk=call.pk).update(metadata=data, updated_at=clock.now())
    call.metadata = data


def call_target(
    call: Call,
    *,
    turn_token: str | None = None,
    stream: StreamPlan | None = None,
    command_key: str | None = None,
) -> CallTarget:
    return CallTarget(
        command_key=command_key,
        call_id=call.call_id,
        provider_call_id=call.provider_call_id or "",
        webhook_url=call.webhook_url,
        turn_token=turn_token,
        extra={
            "direction": call.direction,
            "mode": call.mode,
            "to": call.to_number,
            "from": call.from_number,
            # The dialled number's voice and language (config `numbers.<n>.tts`).
            "language": preferred_language(route_tts(call)),
            "voice": preferred_voice(route_tts(call)),
        },
        stream=stream,
    )


@dataclass(frozen=True, slots=True)
class EventOutcome:
    call: Call | None
    applied: bool
    rejected: bool = False
    accepted_inbound: bool = False


def event_record(call: Call, event: NormalizedEvent) -> bool:
    """Insert the event row; the (call, dedupe key) constraint turns re-delivery into False.

    One statement, `INSERT … ON CONFLICT (call, dedupe key) DO NOTHING RETURNING`: no
    savepoint and release around it (two round trips on every webhook and transcript;
    docs/performance.md, "Webhook path"). Only that constraint means "seen before".
    Without a savepoint a refused INSERT would abort the caller's whole transaction on
    PostgreSQL, so what a database would refuse in a payload — NaN or infinities, a NUL
    character (jsonb) — is refused here first, with ValueError, never taken for a duplicate.
    """
    # The caller's words ride in speech events too: stored redacted, as the line is.
    words = redact_payload(call=call, payload=event.payload())
    _storable_json_check(words)
    payload = CallEvent._meta.get_field("payload").get_db_prep_save(words, connection)
    now = connection.ops.adapt_datetimefield_value(clock.now())
    with connection.cursor() as cursor:
        cursor.execute(_event_insert_sql(), [call.pk, event.type, payload, event.key[:200], now])
        return cursor.fetchone() is not None


def _storable_json_check(payload: dict[str, Any]) -> None:
    json.dumps(payload, allow_nan=False)  # ValueError for NaN and infinities
    if _holds_nul(payload):
        raise ValueError("event payload holds a NUL character, which JSON storage refuses")


def _holds_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    return False


@cache
def _event_insert_sql() -> str:
    # Built once: it depends only on the database backend's quoting.
    q = connection.ops.quote_name
    columns = ", ".join(q(c) for c in ("call_id", "type", "payload", "dedupe_key", "created_at"))
    return (
        f"INSERT INTO {q(CallEvent._meta.db_table)} ({columns}) VALUES (%s, %s, %s, %s, %s) "
        f"ON CONFLICT ({q('call_id')}, {q('dedupe_key')}) DO NOTHING RETURNING {q('id')}"
    )


def call_identity_new(
    *, other_party: str | None = None, route: RouteConfig | None = None
) -> dict[str, object]:
    """A callId, the webhook URL for later commands and the session key.

    Inbound calls need the URL too (plugin PR #29121: the <Say> fallback had none).
    """
    public_id = uuid.uuid4()
    return {
        "public_id": public_id,
        "webhook_url": call_webhook_url(public_id),
        "session_key": session_key_for(
            call_id=public_id, other_party=other_party, agent=agent_id(route)
        ),
    }

"""Reads: finding calls by our id or the carrier's, lists, latency statistics."""

from __future__ import annotations

import math
import uuid
from typing import Any

from django.db.models import Count, QuerySet

from calls.config import get_config
from calls.exceptions import CallNotFound
from calls.models import ApiToken, Call, CallEvent, ServiceLock, TranscriptEntry
from providers.text import has_control


def call_find(call_id: str | None, *, provider: str | None = None) -> Call | None:
    """A call by our callId (UUID) or by the carrier's call id, as the plugin's status looks up.

    docs/plugin-behaviour.md, "Agent tool".
    """
    if not call_id or has_control(str(call_id)):
        return None  # no id holds one; PostgreSQL would refuse a NUL in the query
    try:
        public_id = uuid.UUID(str(call_id))
    except ValueError:
        public_id = None
    if public_id is not None:
        call = _one(Call.objects.filter(public_id=public_id))
        if call is not None:
            return call
    calls = Call.objects.filter(provider_call_id=call_id)
    if provider:
        calls = calls.filter(provider=provider)
    return _one(calls)


def calls_active_by_provider() -> dict[str, int]:
    """How many calls are live (not ended) per carrier, across every process: one query."""
    rows = Call.objects.active().order_by().values_list("provider").annotate(live=Count("id"))
    return dict(rows)


def _one(calls: QuerySet[Call]) -> Call | None:
    # Both lookups are unique; skip .first()'s ORDER BY (this runs on every webhook).
    return next(iter(calls.order_by()[:1]), None)


def conversation_history(
    *, call: Call, before: TranscriptEntry | None, limit: int
) -> list[tuple[str, str]]:
    """(speaker, text) of the last `limit` final lines before `before` (None: all so far),
    oldest first: what the responder is told of the conversation so far.

    `sessionScope` decides whose lines (docs/plugin-behaviour.md, "Session scope"):
    `per-call`, this call's; `per-phone` and `main`, those of every call filed under this
    call's session key, so a caller who rings back is remembered (per-phone), or every
    caller shares the agent's one conversation (main). An explicit `sessionKey` given when
    the call was placed joins that session the same way.
    """
    lines = TranscriptEntry.objects.filter(is_final=True)
    if before is not None:  # None: every line so far (a line not yet written answers)
        lines = lines.filter(pk__lt=before.pk)
    if get_config().session_scope == "per-call" or not call.session_key:
        lines = lines.filter(call=call)
    else:
        # Calls first, then their lines: session_key has no index, the call FK has.
        sharing = Call.objects.filter(session_key=call.session_key).values("pk")
        lines = lines.filter(call__in=sharing)
    return list(lines.order_by("-pk").values_list("speaker", "text")[:limit])[::-1]


def call_list(
    *,
    state: str | None = None,
    direction: str | None = None,
    provider: str | None = None,
    active: bool | None = None,
) -> QuerySet[Call]:
    calls = Call.objects.all()
    if state:
        calls = calls.filter(state=state)
    if direction:
        calls = calls.filter(direction=direction)
    if provider:
        calls = calls.filter(provider=provider)
    if active is True:
        calls = calls.active()
    elif active is False:
        calls = calls.finished()
    return calls


def event_list(*, call_id: str | None) -> QuerySet[CallEvent]:
    """Events of one call (by our id or the carrier's), or of all calls; CallNotFound."""
    events = CallEvent.objects.select_related("call")
    if call_id is None:
        return events
    call = call_find(call_id)
    if call is None:
        raise CallNotFound()
    return events.filter(call=call)


def api_tokens() -> QuerySet[ApiToken]:
    return ApiToken.objects.order_by("id")


def capacity_lock() -> None:
    """Serialize admissions: a row lock on PostgreSQL, the write lock on SQLite (IMMEDIATE)."""
    ServiceLock.objects.get_or_create(name="admission")
    ServiceLock.objects.select_for_update().get(name="admission")


def call_as_dict(call: Call) -> dict[str, Any]:
    """The plugin's trimmed status view (docs/plugin-behaviour.md, "RPC methods")."""
    data: dict[str, Any] = {
        "callId": call.call_id,
        "provider": call.provider,
        "direction": call.direction,
        "state": call.state,
        "mode": call.mode,
        "from": call.from_number,
        "to": call.to_number,
        "startedAt": iso_time(call.started_at),
    }
    optional = {
        "providerCallId": call.provider_call_id,
        "answeredAt": iso_time(call.answered_at),
        "endedAt": iso_time(call.ended_at),
        "endReason": call.end_reason or None,
        "sessionKey": call.session_key or None,
        # The answering-machine verdict (docs/carriers.md, "Answering-machine detection").
        "answeredBy": call.answered_by or None,
    }
    data.update({k: v for k, v in optional.items() if v})
    if call.machine_detection_ms is not None:
        data["machineDetectionMs"] = call.machine_detection_ms
    return data


def call_record(call: Call) -> dict[str, Any]:
    """The plugin's full CallRecord shape: status view plus transcript and metadata."""
    data = call_as_dict(call)
    data["transcript"] = [
        {
            "timestamp": iso_time(e.created_at),
            "speaker": e.speaker,
            "text": e.text,
            "isFinal": e.is_final,
            **({"interrupted": True} if e.interrupted else {}),
        }
        for e in call.transcript.all()
    ]
    data["metadata"] = call.metadata
    return data


def latency_stats(*, last: int) -> dict[str, Any]:
    """`voicecall latency`: nearest-rank p50/p95 over the last N calls' turn metrics."""
    records = list(
        Call.objects.order_by("-started_at", "-id").values_list("metadata", flat=True)[:last]
    )
    turn = [m["lastTurnLatencyMs"] for m in records if _number(m, "lastTurnLatencyMs")]
    wait = [m["lastTurnListenWaitMs"] for m in records if _number(m, "lastTurnListenWaitMs")]
    return {
        "recordsScanned": len(records),
        "turnLatency": _summary(turn),
        "listenWait": _summary(wait),
    }


def _number(metadata: Any, key: str) -> bool:
    return isinstance(metadata, dict) and isinstance(metadata.get(key), int | float)


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0, "minMs": 0, "maxMs": 0, "avgMs": 0, "p50Ms": 0, "p95Ms": 0}
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "minMs": ordered[0],
        "maxMs": ordered[-1],
        "avgMs": round(sum(ordered) / len(ordered), 2),
        "p50Ms": _nearest_rank(ordered, 50),
        "p95Ms": _nearest_rank(ordered, 95),
    }


def _nearest_rank(ordered: list[float], p: int) -> float:
    index = max(0, math.ceil(p / 100 * len(ordered)) - 1)
    return ordered[index]


def iso_time(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None

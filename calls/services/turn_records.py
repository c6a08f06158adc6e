"""Turn records: when each stage of every exchange happened, kept per call (docs/voice-path.md,
"Turns").

Each stage is stamped by the code that sees it happen — the caller's final line
(`turn_caller_spoke`), the reply text (`turn_reply_claim`), the first audio sent or the carrier
accepting our words (`turn_first_audio`), the words heard (`turn_heard`) — with conditional
updates that only fill what is still empty, so a retry or a late duplicate never rewrites a
stamp and an earlier turn is never touched by a later one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from math import ceil
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Exists, F, Max, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from calls import clock, metrics
from calls.exceptions import InvalidRequest
from calls.models import Call, TranscriptEntry, Turn
from calls.state import NON_TERMINAL

# Stage name -> (from, to): the stamps whose difference it is. `total` falls back to the
# first stamp we know when the caller's stop is unknown (carrier speech does not say).
STAGES: dict[str, tuple[str, str]] = {
    "endpointingMs": ("caller_stopped_at", "endpointed_at"),
    "transcriptMs": ("endpointed_at", "transcript_at"),
    "replyMs": ("transcript_at", "reply_ready_at"),
    "firstAudioMs": ("reply_ready_at", "first_audio_at"),
    "totalMs": ("caller_stopped_at", "first_audio_at"),
    "playedMs": ("first_audio_at", "heard_at"),
}
_TOTAL_STARTS = ("caller_stopped_at", "endpointed_at", "transcript_at")
# voicecall_turn_seconds observes each stage once, by the writer whose conditional update
# filled the stamp that completes it. `replyMs` waits for the first audio: its own stamp is
# written on the reply's critical path, where one more read would cost the caller.
_KNOWN_AT_OPEN = ("endpointingMs", "transcriptMs")
_KNOWN_AT_FIRST_AUDIO = ("replyMs", "firstAudioMs", "totalMs")
_KNOWN_AT_HEARD = ("playedMs",)


def turn_caller_spoke(
    *,
    call: Call,
    entry: TranscriptEntry,
    stopped_at: datetime | None = None,
    endpointed_at: datetime | None = None,
) -> Turn:
    """A caller turn opens with their final line; the stop and the endpointing decision
    when the speech recognizer told us (a stream's VAD), else the line's own time."""
    turn = _turn_new(
        call=call,
        initiator=Turn.Initiator.CALLER,
        caller_entry=entry,
        caller_stopped_at=stopped_at,
        endpointed_at=endpointed_at or entry.created_at,
        transcript_at=entry.created_at,
    )
    metrics.turn_stages_observed(turn_stages(turn), _KNOWN_AT_OPEN)
    return turn


def turn_prompted(*, call: Call, utterance_id: str, at: datetime | None = None) -> Turn:
    """A bot turn (a `continue` prompt) opens with our words ready to say."""
    return _turn_new(
        call=call,
        initiator=Turn.Initiator.BOT,
        reply_utterance_id=utterance_id,
        reply_ready_at=at or clock.now(),
    )


def turn_answered(*, call: Call, at: datetime | None = None) -> None:
    """The caller's final line answered the call's open bot turn (its `continue` prompt)."""
    latest = (
        Turn.objects.filter(call=call, initiator=Turn.Initiator.BOT, transcript_at__isnull=True)
        .order_by("-index")
        .values("pk")[:1]
    )
    _fill(Turn.objects.filter(pk__in=latest), transcript_at=at)


def turn_reply_claim(
    *, call: Call, entry_id: int, utterance_id: str, at: datetime | None = None
) -> bool:
    """The reply `utterance_id` is ready and takes the caller turn the line `entry_id` opened,
    if that line is still the one to answer: no newer caller line, the call live and no
    `continue` turn open, the turn not answered yet. False: the reply is stale and must not
    be said (plugin issue #112360).

    One statement for the check and the stamp: it sits between the model's answer and the
    words (docs/performance.md, "Reply latency"). A line without a caller turn (one a
    `continue` consumed) is never claimed.
    """
    newer = TranscriptEntry.objects.filter(
        call_id=call.pk, speaker=TranscriptEntry.Speaker.USER, pk__gt=entry_id
    )
    open_to_us = Call.objects.filter(pk=call.pk, state__in=NON_TERMINAL, turn_token__isnull=True)
    claimed = (
        Turn.objects.filter(caller_entry_id=entry_id, reply_utterance_id="")
        .filter(Exists(open_to_us), ~Exists(newer))
        .update(
            reply_utterance_id=utterance_id,
            reply_ready_at=Coalesce(F("reply_ready_at"), Value(at or clock.now())),
        )
    )
    return claimed == 1


def turn_first_audio(*, utterance_id: str, at: datetime | None = None) -> None:
    """The first audio of `utterance_id` went out (or the carrier accepted the words)."""
    if not utterance_id:
        return
    turns = Turn.objects.filter(reply_utterance_id=utterance_id)
    if _fill(turns, first_audio_at=at):
        _observe(turns, _KNOWN_AT_FIRST_AUDIO)


def turn_heard(*, utterance_id: str, at: datetime | None = None, interrupted: bool = False) -> None:
    """The caller heard `utterance_id` — all of it, or until they cut it off."""
    if not utterance_id:
        return
    turns = Turn.objects.filter(reply_utterance_id=utterance_id)
    filled = _fill(turns, heard_at=at)
    if interrupted:
        turns.update(interrupted=True)
    if filled:
        _observe(turns, _KNOWN_AT_HEARD)


def _fill(turns: QuerySet[Turn], **stamps: datetime | None) -> int:
    """Set each stamp where it is still empty: the first report of a stage wins. Returns
    how many stamps this call set (0: another writer had reported it)."""
    filled = 0
    for field, value in stamps.items():
        filled += turns.filter(**{f"{field}__isnull": True}).update(**{field: value or clock.now()})
    return filled


def _observe(turns: QuerySet[Turn], names: tuple[str, ...]) -> None:
    for turn in turns:
        metrics.turn_stages_observed(turn_stages(turn), names)


def _turn_new(*, call: Call, **fields: Any) -> Turn:
    # The next index is computed by the INSERT itself (no SELECT MAX round trip first: this
    # sits between the caller's last word and our reply; docs/performance.md, "Reply
    # latency"). Under the unique (call, index) constraint two writers racing for the same
    # index retry with the one after; the savepoint keeps the caller's transaction usable.
    following = Subquery(
        Turn.objects.filter(call=call).values("call").annotate(top=Max("index")).values("top")
    )
    for _ in range(3):
        try:
            with transaction.atomic():
                turn = Turn.objects.create(
                    call=call,
                    index=Coalesce(following, Value(0)) + 1,
                    created_at=clock.now(),
                    **fields,
                )
        except IntegrityError:
            continue
        # The number is the database's; read it only if someone asks (rarely: the admin,
        # the API read rows afresh).
        del turn.index
        return turn
    raise RuntimeError("could not number the turn")  # three lost races in a row: a bug


# --- reading -------------------------------------------------------------------------------


def turn_stages(turn: Turn) -> dict[str, int | None]:
    """The stage durations of one turn in ms; None where a stamp is missing."""
    stages: dict[str, int | None] = {}
    for name, (start, end) in STAGES.items():
        begin = getattr(turn, start)
        if name == "totalMs" and begin is None:
            begin = next((getattr(turn, f) for f in _TOTAL_STARTS if getattr(turn, f)), None)
        finish = getattr(turn, end)
        stages[name] = _ms(finish - begin) if begin and finish else None
    return stages


def turn_as_dict(turn: Turn) -> dict[str, Any]:
    stamps = {
        "callerStoppedAt": turn.caller_stopped_at,
        "endpointedAt": turn.endpointed_at,
        "transcriptAt": turn.transcript_at,
        "replyReadyAt": turn.reply_ready_at,
        "firstAudioAt": turn.first_audio_at,
        "heardAt": turn.heard_at,
    }
    return {
        "index": turn.index,
        "initiator": turn.initiator,
        "utteranceId": turn.reply_utterance_id or None,
        "interrupted": turn.interrupted,
        **{key: value.isoformat() if value else None for key, value in stamps.items()},
        **turn_stages(turn),
    }


_SINCE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
SINCE_ERROR = "since must be a number and a unit: 90s, 30m, 24h or 7d"


def since_parse(text: str) -> timedelta:
    """`24h`, `30m`, `7d`, `90s` as a timedelta; InvalidRequest otherwise."""
    value, unit = text.strip()[:-1], text.strip()[-1:].lower()
    if unit not in _SINCE_UNITS or not value.isdigit() or len(value) > 6:
        raise InvalidRequest(SINCE_ERROR)
    return timedelta(seconds=int(value) * _SINCE_UNITS[unit])


@dataclass(frozen=True, slots=True)
class LatencyFilter:
    since: timedelta | None = None
    provider: str | None = None
    direction: str | None = None
    call_id: str | None = None


def latency_summary(query: LatencyFilter) -> dict[str, Any]:
    """p50/p90/p99/count of every stage over the turns the filter selects (nearest rank)."""
    turns = Turn.objects.all()
    if query.since is not None:
        turns = turns.filter(created_at__gte=clock.now() - query.since)
    if query.provider:
        turns = turns.filter(call__provider=query.provider)
    if query.direction:
        turns = turns.filter(call__direction=query.direction)
    if query.call_id:
        turns = turns.filter(call__public_id=query.call_id)
    rows = list(turns)
    return {
        "turns": len(rows),
        "stages": {name: _percentiles(t[name] for t in map(turn_stages, rows)) for name in STAGES},
    }


def _percentiles(values: Iterable[int | None]) -> dict[str, int | None]:
    known = sorted(v for v in values if v is not None)
    if not known:
        return {"count": 0, "p50": None, "p90": None, "p99": None}
    return {
        "count": len(known),
        **{f"p{p}": known[max(0, ceil(p / 100 * len(known)) - 1)] for p in (50, 90, 99)},
    }


def _ms(delta: timedelta) -> int:
    return max(0, round(delta.total_seconds() * 1000))

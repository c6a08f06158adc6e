"""What the live view shows of a call: one small JSON object per call, numbers masked.

Read from the database each time a call changes, so every process's view agrees with the
rows, whichever process changed them.
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from calls.models import Call, TranscriptEntry, Turn
from calls.phone import mask_number
from calls.selectors import iso_time
from calls.services.turn_records import turn_stages

# The live view keeps to what fits on one line of a table.
LINE_CHARS = 120


def live_calls() -> list[dict[str, Any]]:
    """Every active call, the newest first."""
    # Two small queries per call: active calls are few (maxConcurrentCalls).
    return [live_row(call) for call in Call.objects.active().order_by("-started_at", "-id")]


def live_call(call_id: str) -> dict[str, Any] | None:
    """One call as the live view shows it; None when there is no such call."""
    call = Call.objects.filter(public_id=call_id).first()
    return None if call is None else live_row(call)


def live_row(call: Call) -> dict[str, Any]:
    return {
        "callId": call.call_id,
        "url": reverse("admin:calls_call_change", args=[call.pk]),
        "state": call.state,
        "ended": call.is_terminal,
        "direction": call.direction,
        "mode": call.mode,
        "provider": call.provider,
        "from": mask_number(call.from_number),
        "to": mask_number(call.to_number),
        "startedAt": iso_time(call.started_at),
        "answeredAt": iso_time(call.answered_at),
        "endedAt": iso_time(call.ended_at),
        "latencyMs": _latest_latency(call),
        "lastLine": _latest_line(call),
    }


def _latest_latency(call: Call) -> int | None:
    """The latest caller turn's total (caller stopped → first audio of the reply): the wait
    the caller felt. Bot turns (`continue` prompts) have no such wait."""
    turn = (
        Turn.objects.filter(
            call=call, initiator=Turn.Initiator.CALLER, first_audio_at__isnull=False
        )
        .order_by("-index")
        .first()
    )
    return None if turn is None else turn_stages(turn)["totalMs"]


def _latest_line(call: Call) -> dict[str, Any] | None:
    entry = TranscriptEntry.objects.filter(call=call).order_by("-id").first()
    if entry is None:
        return None
    text = entry.text if len(entry.text) <= LINE_CHARS else entry.text[: LINE_CHARS - 1] + "…"
    return {"speaker": entry.speaker, "text": text, "interrupted": entry.interrupted}

"""Admin pages beyond the model admin: the live view of active calls, and what the call page
and the call list show besides their fields (docs/operations.md, "Live view")."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from calls.live.routing import LIVE_PATH
from calls.live.snapshot import live_calls
from calls.models import Call, CallEvent, TranscriptEntry, Turn
from calls.phone import mask_numbers_in
from calls.services.turn_records import STAGES, LatencyFilter, latency_summary, turn_stages
from calls.state import TERMINAL

# The call list's percentile table covers this much recent history.
SUMMARY_WINDOW = timedelta(hours=24)


def live_calls_view(request: HttpRequest) -> HttpResponse:
    """`/admin/calls/live/`: the active calls; calls/static/calls/live.js keeps them current."""
    if not request.user.has_perm("calls.view_call"):
        raise PermissionDenied
    context = {
        **admin.site.each_context(request),
        "title": "Live calls",
        "calls": live_calls(),
        "socket_path": LIVE_PATH,
        "terminal_states": sorted(TERMINAL),
    }
    return TemplateResponse(request, "admin/calls/live.html", context)


def call_page_context(call: Call, *, numbers_visible: bool) -> dict[str, Any]:
    """The call page's conversation, event timeline and turns (admin/calls/call/
    change_form.html). Without `numbers_visible` every phone number in the words and the
    events is masked (docs/security.md, "Admin"); the rows are only shown, never saved."""
    turns = Turn.objects.filter(call=call).order_by("index")
    conversation = list(TranscriptEntry.objects.filter(call=call).order_by("created_at", "id"))
    timeline = list(CallEvent.objects.filter(call=call).order_by("created_at", "id"))
    if not numbers_visible:
        for line in conversation:
            line.text = mask_numbers_in(line.text)
        for event in timeline:
            payload = event.payload.items()
            event.payload = {key: mask_numbers_in(str(value)) for key, value in payload}
            event.dedupe_key = mask_numbers_in(event.dedupe_key)
    return {
        "conversation": conversation,
        "timeline": timeline,
        "turns": [(turn, list(turn_stages(turn).values())) for turn in turns],
        "stage_names": [_stage_label(name) for name in STAGES],
    }


def latency_table_context() -> dict[str, Any]:
    """p50/p90/p99 per stage over the last 24 h, for the call list (the figures
    `GET /api/latency/?since=24h` gives)."""
    summary = latency_summary(LatencyFilter(since=SUMMARY_WINDOW))
    return {
        "latency_turns": summary["turns"],
        "latency_rows": [(_stage_label(name), stats) for name, stats in summary["stages"].items()],
    }


def _stage_label(name: str) -> str:
    return name.removesuffix("Ms")

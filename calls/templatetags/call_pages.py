"""What the call page and the call list show besides the model admin's own parts, as
inclusion tags their templates call (templates/admin/calls/call/)."""

from __future__ import annotations

from typing import Any

from django import template

from calls.admin_live import call_page_context, latency_table_context
from calls.models import Call

register = template.Library()


@register.inclusion_tag("admin/calls/call/call_detail.html")
def call_detail(call: Call | None, numbers_visible: bool) -> dict[str, Any]:
    """The conversation, the event timeline and the turns of `call`; phone numbers masked
    unless `numbers_visible` (the user's calls.view_numbers permission)."""
    if call is None:
        return {}
    return call_page_context(call, numbers_visible=bool(numbers_visible))


@register.inclusion_tag("admin/calls/call/latency_summary.html")
def latency_summary_table() -> dict[str, Any]:
    """Per-stage p50/p90/p99 of the last 24 hours' turns."""
    return latency_table_context()

"""Per-dialled-number routes (`numbers`): overrides for inbound calls.

docs/plugin-behaviour.md, "Per-number routes".
"""

from __future__ import annotations

from typing import Any

from calls.config import get_config
from calls.models import Call
from calls.phone import digits_only

ROUTE_KEY = "numberRouteKey"


def number_route_key(to_number: str | None) -> str | None:
    """The `numbers` key for the dialled number: exact match first, then digits-only equality."""
    routes = get_config().data.get("numbers") or {}
    if not to_number or not routes:
        return None
    if to_number in routes:
        return to_number
    digits = digits_only(to_number)
    return next((key for key in routes if digits and digits_only(key) == digits), None)


def call_route(call: Call) -> dict[str, Any]:
    """The route chosen when the call arrived (stored once, reused); {} for none."""
    key = (call.metadata or {}).get(ROUTE_KEY)
    route = (get_config().data.get("numbers") or {}).get(key) if key else None
    return dict(route) if isinstance(route, dict) else {}

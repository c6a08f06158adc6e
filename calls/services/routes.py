"""Per-dialled-number routes (`numbers`): overrides for inbound calls.

docs/plugin-behaviour.md, "Per-number routes".
"""

from __future__ import annotations

from calls.call_metadata import ROUTE_KEY
from calls.config import RouteConfig, get_config
from calls.models import Call
from calls.phone import digits_only


def number_route_key(to_number: str | None) -> str | None:
    """The `numbers` key for the dialled number: exact match first, then digits-only equality."""
    routes = get_config().numbers
    if not to_number or not routes:
        return None
    if to_number in routes:
        return to_number
    digits = digits_only(to_number)
    return next((key for key in routes if digits and digits_only(key) == digits), None)


def call_route(call: Call) -> RouteConfig:
    """The route chosen when the call arrived (stored once, reused); no overrides for none."""
    key = call.meta.get(ROUTE_KEY)
    route = get_config().numbers.get(key) if key else None
    return route or RouteConfig()

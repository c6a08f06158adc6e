"""Per-dialled-number routes (`numbers`): overrides for inbound calls.

docs/plugin-behaviour.md, "Per-number routes".
"""

from __future__ import annotations

from typing import Any

from calls.call_metadata import ROUTE_KEY
from calls.config import RouteConfig, deep_merge, get_config
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


def route_tts(call: Call) -> dict[str, Any]:
    """The call's TTS settings: the merged `tts`, with its number route's `tts` deep-merged
    over it, as the plugin merges them (docs/plugin-behaviour.md, "Per-number routes").

    Config and the call's own metadata only, no query: cheap enough for every command.
    """
    merged = get_config().tts
    override = call_route(call).tts
    return deep_merge(merged, override) if override else merged


def call_route(call: Call) -> RouteConfig:
    """The route chosen when the call arrived (stored once, reused); no overrides for none."""
    key = call.meta.get(ROUTE_KEY)
    route = get_config().numbers.get(key) if key else None
    return route or RouteConfig()

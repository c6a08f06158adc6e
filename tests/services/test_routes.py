"""Per-dialled-number routes for inbound calls (docs/plugin-behaviour.md, "Per-number routes")."""

from __future__ import annotations

from typing import Any

import pytest

from calls.models import Call
from calls.services.events import event_apply
from calls.services.routes import call_route, number_route_key
from providers.base import EventType, NormalizedEvent

pytestmark = pytest.mark.django_db

ROUTES = {
    "inboundPolicy": "open",
    "inboundGreeting": "Hello from the main line.",
    "numbers": {
        "+15550000001": {"inboundGreeting": "Sales, how can I help?"},
        "+15550000002": {"responseModel": "openai/gpt-4o-mini"},
    },
}


def _ring(to: str, leg: str) -> Call:
    event_apply(
        provider="mock",
        event=NormalizedEvent(
            type=EventType.INITIATED,
            id=leg,
            call_id=leg,
            provider_call_id=leg,
            direction="inbound",
            from_number="+15550009999",
            to_number=to,
        ),
    )
    return Call.objects.get(provider_call_id=leg)


def test_a_route_matches_exactly_then_by_digits(configure: Any) -> None:
    configure(ROUTES)
    assert number_route_key("+15550000001") == "+15550000001"
    assert number_route_key("1 (555) 000-0001") == "+15550000001"
    assert number_route_key("+15550000003") is None
    assert number_route_key("5550000001") is None  # no country code, no match


def test_the_routes_greeting_greets_callers_of_that_number(
    configure: Any, mock_carrier: Any
) -> None:
    configure(ROUTES)
    sales = _ring("+15550000001", "leg-sales")
    other = _ring("+15550000002", "leg-other")
    main = _ring("+15550000009", "leg-main")
    assert sales.metadata["initialMessage"] == "Sales, how can I help?"
    assert sales.metadata["numberRouteKey"] == "+15550000001"
    assert other.metadata["initialMessage"] == "Hello from the main line."
    assert other.metadata["numberRouteKey"] == "+15550000002"
    assert main.metadata["initialMessage"] == "Hello from the main line."
    assert "numberRouteKey" not in main.metadata


def test_a_calls_route_is_the_one_chosen_when_it_arrived(configure: Any, make_call: Any) -> None:
    configure(ROUTES)
    routed = make_call(metadata={"numberRouteKey": "+15550000002"})
    unrouted = make_call(metadata={})
    gone = make_call(metadata={"numberRouteKey": "+15550000007"})  # removed from the config
    assert call_route(routed).response_model == "openai/gpt-4o-mini"
    assert call_route(unrouted).response_model is None
    assert call_route(gone).response_model is None
    assert call_route(unrouted).inbound_greeting is None


def test_no_routes_configured_means_no_key(configure: Any) -> None:
    configure({})
    assert number_route_key("+15550000001") is None
    assert number_route_key(None) is None

"""Session keys of calls (docs/plugin-behaviour.md, "Session scope")."""

from __future__ import annotations

from typing import Any

import pytest

from calls.exceptions import InvalidRequest
from calls.models import Call
from calls.services.dialling import call_initiate
from calls.services.events import event_apply
from calls.services.sessions import session_key_normalize
from providers.base import EventType, NormalizedEvent

pytestmark = pytest.mark.django_db


def test_per_phone_is_the_default_and_uses_the_other_partys_digits(
    mock_carrier: Any, configure: Any
) -> None:
    configure({"inboundPolicy": "open"})
    outbound = call_initiate(to="+15555550123", message="Hi")
    event_apply(
        provider="mock",
        event=NormalizedEvent(
            type=EventType.INITIATED,
            id="i",
            call_id="leg-9",
            provider_call_id="leg-9",
            direction="inbound",
            from_number="+15550001111",
            to_number="+15550000000",
        ),
    )
    inbound = Call.objects.get(provider_call_id="leg-9")
    assert outbound.session_key == "agent:main:voice:15555550123"
    assert inbound.session_key == "agent:main:voice:15550001111"


@pytest.mark.parametrize(
    ("scope", "expected"),
    [("per-call", "agent:ada:voice:call:{call_id}"), ("main", "agent:ada:main")],
)
def test_other_scopes(mock_carrier: Any, configure: Any, scope: str, expected: str) -> None:
    configure({"sessionScope": scope, "agentId": "Ada"})
    call = call_initiate(to="+15555550123", message="Hi")
    assert call.session_key == expected.format(call_id=call.call_id)


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("agent:main:work", "agent:main:work"),
        ("global", "global"),
        ("unknown", "unknown"),
        ("agent:other:secret", "agent:main:agent:other:secret"),
        ("crm-42", "agent:main:crm-42"),
    ],
)
def test_an_explicit_key_is_put_in_the_owner_agents_namespace(given: str, kept: str) -> None:
    assert session_key_normalize(given, agent="main") == kept


def test_an_empty_explicit_key_is_refused(mock_carrier: Any) -> None:
    with pytest.raises(InvalidRequest, match="Voice Call session key cannot be empty"):
        call_initiate(to="+15555550123", message="Hi", session_key="  ")
    assert not Call.objects.exists()


def test_a_number_longer_than_e164_keys_the_session_by_call(configure) -> None:
    from calls.services.sessions import session_key_for

    key = session_key_for(call_id="c-1", other_party="+" + "9" * 300, agent="main")
    assert key == "agent:main:voice:call:c-1"


def test_an_explicit_session_key_longer_than_its_column_is_refused() -> None:
    import pytest

    from calls.exceptions import InvalidRequest
    from calls.services.sessions import session_key_normalize

    with pytest.raises(InvalidRequest, match="too long"):
        session_key_normalize("k" * 200, agent="main")


def test_the_owner_agent_is_the_routes_then_the_configs_then_main(
    configure: Any, make_call: Any
) -> None:
    from calls.services.routes import call_route
    from calls.services.sessions import agent_id

    configure({})
    assert agent_id() == "main"
    configure({"agentId": "Ada", "numbers": {"+15550000001": {"agentId": "Front-Desk"}}})
    assert agent_id() == "ada"
    routed = make_call(metadata={"numberRouteKey": "+15550000001"})
    assert agent_id(call_route(routed)) == "front-desk"
    assert agent_id(call_route(make_call(metadata={}))) == "ada"

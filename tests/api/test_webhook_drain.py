"""Carrier webhooks on a draining process: a new call is refused 503, calls we track go on.

docs/architecture.md, "Graceful drain": nothing of a refused webhook is recorded, so the
carrier's retry on another process is applied as new; a webhook about an existing call is
applied as ever, so its events are never lost to a drain.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from calls.carrier import set_provider
from calls.drain import Drain
from calls.models import Call, CallEvent, ReplayKey
from calls.services.events import event_opens_call
from providers.base import EventType, NormalizedEvent
from providers.mock import MockProvider

pytestmark = pytest.mark.django_db

HOOK = "/voice/webhook"
CALLER = "+15550001111"
OUR_NUMBER = "+15550000000"


@pytest.fixture
def carrier(configure: Any) -> MockProvider:
    configure({"inboundPolicy": "open"})
    provider = MockProvider(settings={"simulate": False})
    set_provider(provider)
    return provider


@pytest.fixture
def drain(monkeypatch: pytest.MonkeyPatch) -> Drain:
    drain = Drain()
    monkeypatch.setattr("calls.drain.DRAIN", drain)
    return drain


def post(client: Client, *items: dict[str, Any]) -> Any:
    body = {"event": items[0]} if len(items) == 1 else {"events": list(items)}
    return client.post(HOOK, json.dumps(body), content_type="application/json")


def inbound(type_: str, provider_call_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": type_,
        "callId": provider_call_id,
        "direction": "inbound",
        "from": CALLER,
        "to": OUR_NUMBER,
        **fields,
    }


def test_a_new_inbound_call_is_refused_503_and_nothing_is_recorded(
    client: Client, carrier: MockProvider, drain: Drain
) -> None:
    drain.begin(seconds=30, now=0.0)

    response = post(client, inbound("call.initiated", "CA-new", id="evt-1"))

    assert response.status_code == 503
    assert not Call.objects.exists() and not CallEvent.objects.exists()
    assert not ReplayKey.objects.exists()
    assert carrier.sent == []


def test_the_carriers_retry_on_a_process_that_is_not_draining_is_applied_as_new(
    client: Client, carrier: MockProvider, drain: Drain, monkeypatch: pytest.MonkeyPatch
) -> None:
    drain.begin(seconds=30, now=0.0)
    assert post(client, inbound("call.initiated", "CA-new", id="evt-1")).status_code == 503
    monkeypatch.setattr("calls.drain.DRAIN", Drain())  # another process takes the retry

    response = post(client, inbound("call.initiated", "CA-new", id="evt-1"))

    assert response.status_code == 200
    call = Call.objects.get(provider_call_id="CA-new")
    assert call.direction == "inbound" and not call.is_terminal


def test_an_unknown_outbound_call_placed_elsewhere_is_refused_too(
    client: Client, carrier: MockProvider, drain: Drain
) -> None:
    drain.begin(seconds=30, now=0.0)

    response = post(client, {**inbound("call.ringing", "CA-ext"), "direction": "outbound"})

    assert response.status_code == 503
    assert not Call.objects.exists()


def test_events_of_a_call_we_track_are_applied_while_draining(
    client: Client, carrier: MockProvider, drain: Drain, make_call: Any
) -> None:
    call = make_call(state="ringing")
    drain.begin(seconds=30, now=0.0)

    answered = post(client, {"type": "call.answered", "callId": call.call_id})
    ended = post(client, {"type": "call.ended", "callId": call.call_id, "reason": "completed"})

    assert (answered.status_code, ended.status_code) == (200, 200)
    call.refresh_from_db()
    assert call.state == "completed" and call.answered_at is not None


def test_an_inbound_call_registered_before_the_drain_goes_on(
    client: Client, carrier: MockProvider, drain: Drain
) -> None:
    assert post(client, inbound("call.initiated", "CA-live", id="e1")).status_code == 200
    drain.begin(seconds=30, now=0.0)

    # Its next events name the carrier id with an inbound direction, like a new call would.
    response = post(client, inbound("call.answered", "CA-live", id="e2"))

    assert response.status_code == 200
    assert Call.objects.get(provider_call_id="CA-live").answered_at is not None


def test_an_event_that_would_create_no_call_is_not_refused(
    client: Client, carrier: MockProvider, drain: Drain
) -> None:
    # An end for a call nobody tracks is ignored as ever (200), not sent elsewhere.
    drain.begin(seconds=30, now=0.0)

    response = post(client, inbound("call.ended", "CA-gone"))

    assert response.status_code == 200
    assert not Call.objects.exists()


def test_without_a_drain_a_new_call_is_taken(client: Client, carrier: MockProvider) -> None:
    response = post(client, inbound("call.initiated", "CA-new", id="evt-1"))

    assert response.status_code == 200
    assert Call.objects.filter(provider_call_id="CA-new").exists()


@pytest.mark.parametrize(
    ("fields", "opens"),
    [
        ({"direction": "inbound"}, True),
        ({"direction": "outbound"}, True),
        ({"direction": None}, False),
        ({"direction": "inbound", "type": EventType.ENDED}, False),
        ({"direction": "inbound", "type": EventType.SPOKEN}, False),
        ({"direction": "inbound", "provider_call_id": None}, False),
        # Addressed by one of our call ids: that call is gone, never a new one.
        ({"direction": "inbound", "call_id": "0b6f6f0e-7a52-4c3c-9a51-1b9f1b1a2c3d"}, False),
    ],
)
def test_which_events_open_a_call(fields: dict[str, Any], opens: bool) -> None:
    values: dict[str, Any] = {
        "type": EventType.INITIATED,
        "id": "e",
        "call_id": "CA-x",
        "provider_call_id": "CA-x",
    }
    values.update(fields)
    event = NormalizedEvent(**values)
    assert event_opens_call(provider="mock", event=event) is opens


def test_a_tracked_call_opens_nothing(make_call: Any) -> None:
    call = make_call(state="ringing", provider_call_id="CA-known", direction="inbound")
    event = NormalizedEvent(
        type=EventType.ANSWERED,
        id="e",
        call_id="CA-known",
        provider_call_id="CA-known",
        direction="inbound",
    )
    assert call.provider_call_id == "CA-known"
    assert event_opens_call(provider="mock", event=event) is False

"""A carrier that refuses to start a stream leaves the call speaking by command, not silent."""

from __future__ import annotations

from typing import Any

import pytest

from calls.models import Call
from calls.services.events import event_apply
from providers.base import EventType, NormalizedEvent
from providers.errors import ProviderError

pytestmark = pytest.mark.django_db


def test_a_refused_stream_start_falls_back_to_speaking_the_greeting(
    mock_carrier: Any, configure: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure({"inboundPolicy": "open", "inboundGreeting": "Thanks for calling."})
    monkeypatch.setattr("calls.services.stream_plans.streaming_possible", lambda: True)
    monkeypatch.setattr(
        "calls.services.stream_plans.stream_url", lambda: "wss://v.example/voice/stream"
    )

    def refuse(target: Any) -> None:
        raise ProviderError("Telnyx API error: 422 streaming not allowed")

    monkeypatch.setattr(mock_carrier, "start_stream", refuse)
    inbound = dict(
        call_id="leg-1",
        provider_call_id="leg-1",
        direction="inbound",
        from_number="+15550001111",
        to_number="+15550000000",
    )
    event_apply(provider="mock", event=NormalizedEvent(type=EventType.INITIATED, id="i", **inbound))
    event_apply(provider="mock", event=NormalizedEvent(type=EventType.ANSWERED, id="a", **inbound))

    call = Call.objects.get(provider_call_id="leg-1")
    assert call.metadata.get("streamFailed") is True
    spoken = [fields["text"] for op, fields in mock_carrier.sent if op == "play_text"]
    assert spoken == ["Thanks for calling."]
    assert "initialMessage" not in call.metadata

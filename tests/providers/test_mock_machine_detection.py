"""The mock carrier's answering-machine verdicts: simulated by the dialled number's last two
digits, and its webhook JSON (docs/carriers.md, "Answering-machine detection")."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from calls.models import Call
from calls.services.dialling import call_initiate
from providers.base import EventType, MachineDetection, PlaceCall
from providers.errors import WebhookInvalid
from providers.mock import MockProvider
from tests.providers.test_mock import Recorder, _request, _wait_for


def _dial(carrier: MockProvider, to: str, mode: MachineDetection) -> None:
    carrier.place_call(
        PlaceCall(
            call_id="c1",
            to_number=to,
            from_number="+15550000000",
            webhook_url="http://x",
            mode="notify",
            machine_detection=mode,
        )
    )


@pytest.mark.parametrize(
    ("to", "mode", "answered_by", "greeting_ended"),
    [
        ("+15555550123", MachineDetection.HANGUP, "human", False),
        ("+15555550199", MachineDetection.HANGUP, "machine", False),
        ("+15555550199", MachineDetection.LEAVE_MESSAGE, "machine", True),
        ("+15555550198", MachineDetection.DETECT, "fax", False),
    ],
)
def test_the_simulated_verdict_follows_the_answer(
    to: str, mode: MachineDetection, answered_by: str, greeting_ended: bool
) -> None:
    carrier = Recorder(ringDelayMs=5, answerDelayMs=5, machineDetectionDelayMs=5)
    _dial(carrier, to, mode)
    assert _wait_for(carrier, 3) == ["call.ringing", "call.answered", "call.machine_detection"]
    verdict = carrier.posted[2]
    assert (verdict["answeredBy"], verdict["greetingEnded"], verdict["machineDetectionMs"]) == (
        answered_by,
        greeting_ended,
        5,
    )


def test_without_detection_no_verdict_is_simulated() -> None:
    carrier = Recorder(ringDelayMs=5, answerDelayMs=5, machineDetectionDelayMs=0)
    _dial(carrier, "+15555550199", MachineDetection.OFF)
    assert _wait_for(carrier, 2) == ["call.ringing", "call.answered"]
    carrier.posted_event.clear()
    assert not carrier.posted_event.wait(0.2)  # nothing more comes
    assert len(carrier.posted) == 2


def test_the_mock_webhook_carries_a_verdict() -> None:
    item = {
        "type": "call.machine_detection",
        "callId": "mock-1",
        "answeredBy": "machine",
        "greetingEnded": True,
        "machineDetectionMs": 1200,
    }
    [event] = MockProvider(settings={}).parse_webhook(_request({"event": item}))
    assert (event.type, event.answered_by, event.greeting_ended, event.detection_ms) == (
        EventType.MACHINE_DETECTION,
        "machine",
        True,
        1200,
    )


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"answeredBy": "robot"},
        {"answeredBy": ["machine"]},
        {"answeredBy": "human", "machineDetectionMs": -1},
        {"answeredBy": "human", "machineDetectionMs": 2**40},
        {"answeredBy": "human", "machineDetectionMs": "12"},
        {"answeredBy": "human", "machineDetectionMs": True},
    ],
)
def test_a_bad_mock_verdict_is_webhook_invalid(fields: dict[str, Any]) -> None:
    item = {"type": "call.machine_detection", "callId": "mock-1", **fields}
    with pytest.raises(WebhookInvalid):
        MockProvider(settings={}).parse_webhook(_request({"event": item}))


def _post(client: Client, **event: Any) -> Any:
    return client.post(
        "/voice/webhook", json.dumps({"event": event}), content_type="application/json"
    )


@pytest.fixture
def hangup_call(db: Any, configure: Any, mock_carrier: MockProvider) -> Call:
    """A notify call on the mock (no simulation) dialled with `hangup` detection."""
    configure({"outbound": {"machineDetection": "hangup"}})
    return call_initiate(to="+15555550199", message="Hello", mode="notify")


def test_a_mock_machine_verdict_hangs_up_as_voicemail(
    client: Client, hangup_call: Call, mock_carrier: MockProvider
) -> None:
    call = hangup_call
    assert _post(client, type="call.answered", callId=call.call_id).status_code == 200
    assert "play_text" not in [op for op, _ in mock_carrier.sent]  # held for the verdict
    response = _post(
        client, type="call.machine_detection", callId=call.call_id, answeredBy="machine"
    )
    assert response.status_code == 200
    call.refresh_from_db()
    assert (call.state, call.answered_by) == ("voicemail", "machine")
    assert call.machine_detection_ms is not None
    assert [op for op, _ in mock_carrier.sent].count("hang_up") == 1


def test_a_bad_mock_verdict_is_400_and_changes_nothing(client: Client, hangup_call: Call) -> None:
    response = _post(
        client, type="call.machine_detection", callId=hangup_call.call_id, answeredBy="x"
    )
    assert response.status_code == 400
    assert Call.objects.get(pk=hangup_call.pk).answered_by == ""

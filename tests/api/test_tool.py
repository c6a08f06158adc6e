"""GET/POST /api/tools/voice_call: the agent tool; errors are 200 {error}.

docs/plugin-behaviour.md, "Agent tool".
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest
from rest_framework.test import APIClient

from calls.carrier import set_provider
from calls.models import Call
from calls.services.events import event_apply
from providers.base import EventType, NormalizedEvent
from providers.mock import MockProvider

pytestmark = pytest.mark.django_db

TO = "+15555550123"
TOOL = "/api/tools/voice_call"


def tool(api: APIClient, arguments: Any) -> dict[str, Any]:
    """Run the tool; a failure must still be HTTP 200 (errors never raise to the agent)."""
    response = api.post(TOOL, arguments, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def ops(carrier: MockProvider, name: str) -> list[dict[str, Any]]:
    return [fields for op, fields in carrier.sent if op == name]


# --- definition --------------------------------------------------------------------------


def test_get_returns_the_voice_call_function_definition(api: APIClient) -> None:
    response = api.get(TOOL)

    assert response.status_code == 200
    definition = response.json()
    assert definition["type"] == "function"
    function = definition["function"]
    assert function["name"] == "voice_call"
    assert function["description"] == (
        "Make phone calls and have voice conversations via the voice-call plugin."
    )
    parameters = function["parameters"]
    assert parameters["type"] == "object"
    assert parameters["properties"]["action"]["enum"] == [
        "initiate_call",
        "continue_call",
        "speak_to_user",
        "send_dtmf",
        "end_call",
        "transfer_call",
        "get_status",
    ]
    for name in ("to", "message", "mode", "callId", "digits", "sid"):
        assert name in parameters["properties"]


# --- actions -----------------------------------------------------------------------------


def test_initiate_call_places_a_call(api: APIClient, mock_carrier: Any) -> None:
    result = tool(
        api, {"action": "initiate_call", "to": TO, "message": "Reminder: 3pm", "mode": "notify"}
    )

    assert result["initiated"] is True
    call = Call.objects.get(public_id=result["callId"])
    assert call.to_number == TO
    assert call.metadata["initialMessage"] == "Reminder: 3pm"
    assert ops(mock_carrier, "place_call") == [{"to": TO, "mode": "notify"}]


def test_initiate_call_without_a_message_is_an_error(api: APIClient, mock_carrier: Any) -> None:
    assert tool(api, {"action": "initiate_call", "to": TO}) == {"error": "message required"}
    assert Call.objects.count() == 0


def test_initiate_call_without_to_or_to_number_is_an_error(
    api: APIClient, mock_carrier: Any
) -> None:
    assert tool(api, {"action": "initiate_call", "message": "Hi"}) == {"error": "to required"}


def test_initiate_call_over_capacity_returns_the_managers_error(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    make_call(state="listening")

    result = tool(api, {"action": "initiate_call", "to": TO, "message": "Hi"})

    assert result == {"error": "Maximum concurrent calls (1) reached"}


def test_continue_call_without_call_id_or_message_is_an_error(
    api: APIClient, mock_carrier: Any
) -> None:
    assert tool(api, {"action": "continue_call", "callId": "x"}) == {
        "error": "callId and message required"
    }
    assert tool(api, {"action": "continue_call", "message": "Hi"}) == {
        "error": "callId and message required"
    }


def test_continue_call_returns_the_callers_reply(
    api: APIClient, mock_carrier: Any, make_call: Any, fake_clock: Any
) -> None:
    call = make_call(state="answered")

    def answer(clock: Any) -> None:
        fake_clock.on_sleep.remove(answer)
        token = Call.objects.values_list("turn_token", flat=True).get(pk=call.pk)
        event_apply(
            provider="mock",
            event=NormalizedEvent(
                type=EventType.SPEECH,
                id="reply-1",
                call_id=call.call_id,
                transcript="Sounds good",
                turn_token=token,
            ),
        )

    fake_clock.on_sleep.append(answer)

    result = tool(
        api, {"action": "continue_call", "callId": call.call_id, "message": "Friday then?"}
    )

    assert result == {"success": True, "transcript": "Sounds good"}


def test_speak_to_user_speaks(api: APIClient, mock_carrier: Any, make_call: Any) -> None:
    call = make_call(state="listening")

    result = tool(api, {"action": "speak_to_user", "callId": call.call_id, "message": "Okay"})

    assert result == {"success": True, "utteranceId": call.transcript.get().utterance_id}
    assert [f["text"] for f in ops(mock_carrier, "play_text")] == ["Okay"]


def test_speak_to_user_without_a_message_is_an_error(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call()

    assert tool(api, {"action": "speak_to_user", "callId": call.call_id}) == {
        "error": "callId and message required"
    }
    assert mock_carrier.sent == []


def test_send_dtmf_sends_the_digits(api: APIClient, mock_carrier: Any, make_call: Any) -> None:
    call = make_call()

    assert tool(api, {"action": "send_dtmf", "callId": call.call_id, "digits": "5#"}) == {
        "success": True
    }
    assert ops(mock_carrier, "send_dtmf") == [{"digits": "5#"}]


@pytest.mark.parametrize(
    "arguments", [{"action": "send_dtmf", "callId": "x"}, {"action": "send_dtmf", "digits": "1"}]
)
def test_send_dtmf_without_call_id_or_digits_is_an_error(
    api: APIClient, mock_carrier: Any, arguments: dict[str, Any]
) -> None:
    assert tool(api, arguments) == {"error": "callId and digits required"}


def test_send_dtmf_with_bad_digits_is_an_error(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call()

    assert tool(api, {"action": "send_dtmf", "callId": call.call_id, "digits": "1-2"}) == {
        "error": "digits may only contain digits, *, #, comma, w, p"
    }


def test_end_call_hangs_up(api: APIClient, mock_carrier: Any, make_call: Any) -> None:
    call = make_call()

    assert tool(api, {"action": "end_call", "callId": call.call_id}) == {"success": True}
    call.refresh_from_db()
    assert call.state == "hangup-bot"
    assert len(ops(mock_carrier, "hang_up")) == 1


def test_end_call_without_a_call_id_is_an_error(api: APIClient, mock_carrier: Any) -> None:
    assert tool(api, {"action": "end_call"}) == {"error": "callId required"}


def test_end_call_on_an_unknown_call_is_an_error(api: APIClient, mock_carrier: Any) -> None:
    assert tool(api, {"action": "end_call", "callId": str(uuid.uuid4())}) == {
        "error": "Call not found"
    }


def test_get_status_finds_a_call_by_call_id_or_provider_call_id(
    api: APIClient, make_call: Any
) -> None:
    call = make_call(state="listening")

    by_id = tool(api, {"action": "get_status", "callId": call.call_id})
    by_carrier_id = tool(api, {"action": "get_status", "callId": call.provider_call_id})

    assert by_id["found"] is True
    assert by_id["call"]["callId"] == call.call_id
    assert by_id["call"]["state"] == "listening"
    assert by_carrier_id["call"]["callId"] == call.call_id


def test_get_status_of_an_unknown_call_is_found_false(api: APIClient) -> None:
    assert tool(api, {"action": "get_status", "callId": "CA-unknown"}) == {"found": False}


def test_get_status_without_a_call_id_is_an_error(api: APIClient) -> None:
    assert tool(api, {"action": "get_status"}) == {"error": "callId required"}


def test_an_unknown_action_is_an_error(api: APIClient) -> None:
    assert tool(api, {"action": "launch_rocket"}) == {"error": "Unknown action: launch_rocket"}


def test_arguments_that_are_not_an_object_are_an_error(api: APIClient) -> None:
    assert tool(api, ["initiate_call"]) == {"error": "arguments must be a JSON object"}


def test_a_wrongly_typed_argument_is_an_error_not_a_crash(
    api: APIClient, mock_carrier: Any
) -> None:
    result = tool(api, {"action": "speak_to_user", "callId": 42, "message": "Hi"})

    assert result == {"error": "callId must be a string"}


# --- calls that are no longer active ------------------------------------------------------


@pytest.mark.parametrize("action", ["continue_call", "speak_to_user"])
def test_an_ended_call_is_reported_as_not_active_with_its_last_state(
    api: APIClient, mock_carrier: Any, make_call: Any, action: str
) -> None:
    call = make_call(state="hangup-user", end_reason="hangup-user")
    Call.objects.filter(pk=call.pk).update(ended_at=call.started_at)
    call.refresh_from_db()

    result = tool(api, {"action": action, "callId": call.call_id, "message": "Hello?"})

    error = result["error"]
    prefix = "call is not active (last state=hangup-user, endReason=hangup-user, endedAt="
    assert error.startswith(prefix)
    assert error.endswith(")")
    ended = datetime.fromisoformat(error[len(prefix) : -1].replace("Z", "+00:00"))
    assert ended == call.ended_at
    assert mock_carrier.sent == []


def test_an_unknown_call_is_reported_as_not_found_not_as_inactive(
    api: APIClient, mock_carrier: Any
) -> None:
    result = tool(api, {"action": "speak_to_user", "callId": str(uuid.uuid4()), "message": "Hi"})

    assert result == {"error": "Call not found"}


# --- legacy shape (no action) --------------------------------------------------------------


def test_legacy_status_without_sid_is_an_error(api: APIClient) -> None:
    assert tool(api, {"mode": "status"}) == {"error": "sid required for status"}


def test_legacy_status_with_sid_reports_the_call(api: APIClient, make_call: Any) -> None:
    call = make_call()

    result = tool(api, {"mode": "status", "sid": call.provider_call_id})

    assert result["found"] is True
    assert result["call"]["callId"] == call.call_id


def test_legacy_call_without_to_or_to_number_is_an_error(api: APIClient, mock_carrier: Any) -> None:
    assert tool(api, {"mode": "call", "message": "Hi"}) == {"error": "to required for call"}
    assert tool(api, {"message": "Hi"}) == {"error": "to required for call"}
    assert mock_carrier.sent == []


def test_legacy_call_places_a_call_in_the_default_mode(api: APIClient, mock_carrier: Any) -> None:
    result = tool(api, {"mode": "call", "to": TO, "message": "Legacy hello"})

    assert result["initiated"] is True
    call = Call.objects.get(public_id=result["callId"])
    assert call.mode == "notify"
    assert call.metadata["initialMessage"] == "Legacy hello"


def test_legacy_call_without_to_uses_the_configured_to_number(
    api: APIClient, configure: Any
) -> None:
    configure({"toNumber": "+15550009999"})
    carrier = MockProvider(settings={"simulate": False})
    set_provider(carrier)

    result = tool(api, {"mode": "call", "message": "Hi"})

    assert result["initiated"] is True
    assert ops(carrier, "place_call")[0]["to"] == "+15550009999"

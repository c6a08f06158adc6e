"""Cold transfer through every API surface: JSON-RPC, REST, the agent tool, the OpenAPI
document, the admin filter (docs/carriers.md, "Cold transfer")."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from providers.errors import ProviderError

pytestmark = pytest.mark.django_db

TARGET = "+15555550177"
UNKNOWN = "00000000-0000-4000-8000-000000000000"


def rpc(api: APIClient, params: Any) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 7, "method": "voicecall.transfer", "params": params}
    response = api.post("/api/rpc", body, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def transfers(carrier: Any) -> list[dict[str, Any]]:
    return [fields for op, fields in carrier.sent if op == "transfer"]


def _refuse(carrier: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(target: Any, transfer: Any) -> None:
        raise ProviderError("Telnyx API error: 422 Invalid destination")

    monkeypatch.setattr(carrier, "transfer", refused)


# -- JSON-RPC ---------------------------------------------------------------------------------
def test_rpc_transfers_and_answers_success(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="listening")
    reply = rpc(api, {"callId": call.call_id, "to": TARGET, "message": "One moment"})
    assert reply == {"jsonrpc": "2.0", "id": 7, "result": {"success": True}}
    assert transfers(mock_carrier)[0]["to"] == TARGET
    call.refresh_from_db()
    assert call.state == "transferred"


@pytest.mark.parametrize(
    ("params", "message", "code"),
    [
        ({"to": TARGET}, "callId and to required", "INVALID_REQUEST"),
        ({"callId": "x"}, "callId and to required", "INVALID_REQUEST"),
        ({"callId": "x", "to": 15555550177}, "to must be a string", "INVALID_REQUEST"),
        (
            {"callId": "x", "to": TARGET, "message": ["hi"]},
            "message must be a string",
            "INVALID_REQUEST",
        ),
        (
            {"callId": UNKNOWN, "to": "0800-FLOWERS"},
            "to: Expected E.164 format, e.g. +15550001234",
            "INVALID_REQUEST",
        ),
        ({"callId": UNKNOWN, "to": TARGET}, "Call not found", "NOT_FOUND"),
    ],
)
def test_rpc_errors_carry_the_message_and_code(
    api: APIClient, mock_carrier: Any, params: dict[str, Any], message: str, code: str
) -> None:
    reply = rpc(api, params)
    assert reply["error"]["message"] == message
    assert reply["error"]["data"]["code"] == code
    assert mock_carrier.sent == []


def test_rpc_an_ended_call_is_a_conflict(api: APIClient, mock_carrier: Any, make_call: Any) -> None:
    call = make_call(state="completed", end_reason="completed")
    reply = rpc(api, {"callId": call.call_id, "to": TARGET})
    assert (reply["error"]["message"], reply["error"]["data"]["code"]) == (
        "Call has ended",
        "CONFLICT",
    )


def test_rpc_a_carrier_refusal_is_an_error_and_the_call_goes_on(
    api: APIClient, mock_carrier: Any, make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    call = make_call(state="listening")
    _refuse(mock_carrier, monkeypatch)
    reply = rpc(api, {"callId": call.call_id, "to": TARGET})
    assert reply["error"]["message"] == "Telnyx API error: 422 Invalid destination"
    assert reply["error"]["data"]["code"] == "UNAVAILABLE"
    call.refresh_from_db()
    assert call.state == "listening"


# -- REST -------------------------------------------------------------------------------------
def url(call_id: str) -> str:
    return f"/api/calls/{call_id}/transfer/"


def test_rest_transfers_the_call(api: APIClient, mock_carrier: Any, make_call: Any) -> None:
    call = make_call()
    response = api.post(url(call.call_id), {"to": TARGET, "message": "Hold on"}, format="json")
    assert (response.status_code, response.json()) == (200, {"success": True})
    assert transfers(mock_carrier)[0]["message"] == "Hold on"
    detail = api.get(f"/api/calls/{call.call_id}/").json()
    assert (detail["state"], detail["endReason"]) == ("transferred", "transferred")
    assert detail["metadata"]["transfer"] == {"to": TARGET, "message": "Hold on"}
    listed = api.get("/api/calls/?state=transferred").json()
    assert [c["callId"] for c in listed["results"]] == [call.call_id]


def test_rest_a_blank_message_says_nothing(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call()
    response = api.post(url(call.call_id), {"to": TARGET, "message": ""}, format="json")
    assert response.status_code == 200
    assert transfers(mock_carrier)[0]["message"] is None


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 400),
        ({"to": ""}, 400),
        ({"to": "12345"}, 400),
        ({"to": TARGET, "message": "a\x00b"}, 400),
        ({"to": "+1" + "5" * 5000}, 400),
    ],
)
def test_rest_bad_input_is_a_400_and_sends_nothing(
    api: APIClient, mock_carrier: Any, make_call: Any, body: dict[str, Any], status: int
) -> None:
    call = make_call()
    response = api.post(url(call.call_id), body, format="json")
    assert response.status_code == status, response.content
    assert mock_carrier.sent == []


def test_rest_unknown_ended_and_refused(
    api: APIClient, mock_carrier: Any, make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert api.post(url(UNKNOWN), {"to": TARGET}, format="json").status_code == 404
    ended = make_call(state="hangup-user", end_reason="hangup-user")
    assert api.post(url(ended.call_id), {"to": TARGET}, format="json").status_code == 409
    live = make_call()
    _refuse(mock_carrier, monkeypatch)
    response = api.post(url(live.call_id), {"to": TARGET}, format="json")
    assert response.status_code == 502
    assert "Invalid destination" in json.dumps(response.json())


def test_rest_needs_the_api_token(mock_carrier: Any, make_call: Any) -> None:
    call = make_call()
    response = APIClient().post(url(call.call_id), {"to": TARGET}, format="json")
    assert response.status_code == 401
    assert mock_carrier.sent == []


# -- the agent tool ---------------------------------------------------------------------------
def tool(api: APIClient, arguments: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/api/tools/voice_call", arguments, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def test_tool_transfer_call(api: APIClient, mock_carrier: Any, make_call: Any) -> None:
    call = make_call()
    result = tool(api, {"action": "transfer_call", "callId": call.call_id, "to": TARGET})
    assert result == {"success": True}
    assert transfers(mock_carrier)[0]["to"] == TARGET


def test_tool_transfer_call_errors_come_back_as_error(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    assert tool(api, {"action": "transfer_call", "callId": "x"}) == {
        "error": "callId and to required"
    }
    ended = make_call(state="completed", end_reason="completed")
    error = tool(api, {"action": "transfer_call", "callId": ended.call_id, "to": TARGET})["error"]
    assert error.startswith("call is not active (last state=completed, endReason=completed")
    assert mock_carrier.sent == []


def test_the_tool_definition_offers_transfer_call(api: APIClient) -> None:
    properties = api.get("/api/tools/voice_call").json()["function"]["parameters"]["properties"]
    assert "transfer_call" in properties["action"]["enum"]
    assert "transfer" in properties["to"]["description"]


# -- OpenAPI and admin ------------------------------------------------------------------------
def test_the_openapi_document_has_the_transfer_endpoint(api: APIClient) -> None:
    response = api.get("/api/schema/?format=json")
    assert response.status_code == 200
    document = json.loads(response.content)
    operation = document["paths"]["/api/calls/{call_id}/transfer/"]["post"]
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert schema["required"] == ["to"] and set(schema["properties"]) == {"to", "message"}


def test_the_admin_filters_and_shows_transferred_calls(make_call: Any) -> None:
    User.objects.create_superuser("boss", "boss@example.com", "pw")
    browser = Client()
    browser.login(username="boss", password="pw")
    make_call(state="transferred", end_reason="transferred")
    make_call(state="completed", end_reason="completed")
    page = browser.get("/admin/calls/call/?state__exact=transferred")
    assert page.status_code == 200
    assert page.context["cl"].result_count == 1
    assert b"?state__exact=transferred" in page.content  # offered in the state filter

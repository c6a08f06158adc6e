"""The plugin's RPC params and `tts.maxTextLength` through real requests: each one is
honoured or refused by name, never accepted and ignored.

docs/plugin-behaviour.md, "RPC methods" and "Keys voicecall refuses".
"""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from calls.models import Call

pytestmark = pytest.mark.django_db

TO = "+15555550123"
INVALID_PARAMS = -32602


def rpc(api: APIClient, method: str, params: dict[str, Any]) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    response = api.post("/api/rpc", body, format="json")
    assert response.status_code == 200
    return response.json()


@pytest.mark.parametrize("name", ["agentId", "requesterSessionKey"])
@pytest.mark.parametrize(
    ("method", "params"),
    [("voicecall.initiate", {"to": TO, "message": "Hi"}), ("voicecall.start", {"to": TO})],
)
def test_placing_params_without_a_meaning_here_are_invalid_params_by_name(
    mock_carrier: Any, api: APIClient, method: str, params: dict[str, Any], name: str
) -> None:
    reply = rpc(api, method, {**params, name: "agent:ops:main"})

    assert reply["error"]["code"] == INVALID_PARAMS
    assert reply["error"]["message"] == f"{name} is not supported by voicecall"
    assert not Call.objects.exists()
    assert mock_carrier.sent == []


def test_a_null_agent_id_is_unset_and_the_call_is_placed(mock_carrier: Any, api: APIClient) -> None:
    reply = rpc(api, "voicecall.start", {"to": TO, "agentId": None})

    assert reply["result"]["initiated"] is True


def test_the_tool_refuses_them_too(mock_carrier: Any, api: APIClient) -> None:
    response = api.post(
        "/api/tools/voice_call",
        {"action": "initiate_call", "to": TO, "message": "Hi", "requesterSessionKey": "s"},
        format="json",
    )

    assert response.json() == {"error": "requesterSessionKey is not supported by voicecall"}


def speak(api: APIClient, call: Call, fallback: Any) -> dict[str, Any]:
    params = {"callId": call.call_id, "message": "Hi", "allowTwimlFallback": fallback}
    return rpc(api, "voicecall.speak", params)


def test_speak_without_twiml_fallback_refuses_carrier_speech(
    mock_carrier: Any, api: APIClient, make_call: Any
) -> None:
    call = make_call()  # no media stream holds it

    reply = speak(api, call, False)

    assert reply["error"]["message"] == "No media stream for call"
    assert mock_carrier.sent == []
    assert not call.transcript.exists()


def test_speak_with_twiml_fallback_uses_the_carriers_speech(
    mock_carrier: Any, api: APIClient, make_call: Any
) -> None:
    reply = speak(api, make_call(), True)

    assert reply["result"]["success"] is True
    assert [op for op, _ in mock_carrier.sent] == ["play_text"]


def test_a_null_twiml_fallback_is_the_default(
    mock_carrier: Any, api: APIClient, make_call: Any
) -> None:
    reply = speak(api, make_call(), None)

    assert reply["result"]["success"] is True


def test_a_non_boolean_twiml_fallback_is_invalid(
    mock_carrier: Any, api: APIClient, make_call: Any
) -> None:
    reply = speak(api, make_call(), "no")

    assert reply["error"]["code"] == INVALID_PARAMS
    assert reply["error"]["message"] == "allowTwimlFallback must be a boolean"
    assert mock_carrier.sent == []


# -- tts.maxTextLength ------------------------------------------------------------------


LONG = "word " * 5 + "end"  # 28 characters
TOO_LONG = "message is longer than tts.maxTextLength (20 characters)"


@pytest.fixture
def bounded(configure: Any, mock_carrier: Any) -> Any:
    configure({"tts": {"maxTextLength": 20}})
    return mock_carrier


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("voicecall.initiate", {"to": TO}),
        ("voicecall.speak", {}),
        ("voicecall.continue", {}),
        ("voicecall.continue.start", {}),
        ("voicecall.transfer", {"to": "+15555550199"}),
    ],
)
def test_words_over_max_text_length_are_refused_before_anything_is_said(
    bounded: Any, api: APIClient, make_call: Any, method: str, params: dict[str, Any]
) -> None:
    call = make_call()

    reply = rpc(api, method, {"callId": call.call_id, "message": LONG, **params})

    assert reply["error"]["code"] == INVALID_PARAMS
    assert reply["error"]["message"] == TOO_LONG
    assert bounded.sent == []
    assert Call.objects.count() == 1


def test_words_at_the_limit_are_said_whole(bounded: Any, api: APIClient, make_call: Any) -> None:
    call = make_call()

    reply = rpc(api, "voicecall.speak", {"callId": call.call_id, "message": "twenty characters ok"})

    assert reply["result"]["success"] is True
    assert bounded.sent[0][1]["text"] == "twenty characters ok"


def test_rest_create_refuses_them_with_400(bounded: Any, api: APIClient) -> None:
    response = api.post("/api/calls/", {"to": TO, "message": LONG}, format="json")

    assert response.status_code == 400
    assert response.json()["error"] == TOO_LONG

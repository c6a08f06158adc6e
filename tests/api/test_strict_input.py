"""Input the schema forbids is refused, not coerced or defaulted (docs/api-contract.md)."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from calls.models import Call

pytestmark = pytest.mark.django_db

DTMF_ERROR = "digits may only contain digits, *, #, comma, w, p"


def _refused(response: Any) -> dict[str, Any]:
    assert response.status_code == 400, response.content
    body = dict(response.json())
    assert body["code"] == "INVALID_REQUEST" and body["error"]
    return body


@pytest.mark.parametrize("digits", [0, 12, True, ["1"]])
def test_dtmf_digits_that_are_not_a_string_are_refused(
    api: APIClient, mock_carrier: Any, calls: dict[str, str], digits: Any
) -> None:
    url = f"/api/calls/{calls['live']}/dtmf/"

    body = _refused(api.post(url, {"digits": digits}, format="json"))

    assert body["error"] == "digits: Not a valid string."
    assert mock_carrier.sent == []


@pytest.mark.parametrize("digits", ["1\n", " 1", "1 "])
def test_dtmf_digits_are_matched_in_full_with_the_plugins_error(
    api: APIClient, mock_carrier: Any, calls: dict[str, str], digits: str
) -> None:
    url = f"/api/calls/{calls['live']}/dtmf/"

    assert _refused(api.post(url, {"digits": digits}, format="json"))["error"] == DTMF_ERROR
    assert mock_carrier.sent == []


@pytest.mark.parametrize(
    "body",
    [
        {"message": 5},
        {"message": "   "},
        {"message": "hi\x01there"},
        {"message": "hi", "to": 15555550123},
        {"message": "hi", "to": " +15555550123"},
        {"message": "hi", "to": "+1555\u0663"},  # an Arabic-Indic digit
        {"message": "hi", "sessionKey": "k" * 121},
    ],
)
def test_create_refuses_what_the_schema_forbids_and_dials_nothing(
    api: APIClient, calls: dict[str, str], body: dict[str, Any]
) -> None:
    before = Call.objects.count()

    _refused(api.post("/api/calls/", body, format="json"))

    assert Call.objects.count() == before


def test_create_keeps_tabs_and_newlines_in_a_message(api: APIClient, calls: dict[str, str]) -> None:
    body = {"message": "Hello,\n\tworld", "to": "+15555550123"}

    response = api.post("/api/calls/", body, format="json")

    assert response.status_code == 201, response.content


def test_a_form_encoded_body_is_refused_as_unsupported(
    api: APIClient, calls: dict[str, str]
) -> None:
    response = api.post("/api/calls/", {"message": "hi", "dtmfSequence": ""})  # multipart

    assert response.status_code == 415


@pytest.mark.parametrize(
    "query",
    [
        "offset=null",
        "offset=-1",
        "offset=10000000000",
        "limit=0",
        "limit=1001",
        "limit=abc",
        "active=null",
        "state=nope",
        "provider=nope",
        "direction=sideways",
    ],
)
def test_the_list_refuses_bad_filters_and_paging(
    api: APIClient, calls: dict[str, str], query: str
) -> None:
    _refused(api.get(f"/api/calls/?{query}"))


def test_the_list_still_reads_good_filters_and_paging(
    api: APIClient, calls: dict[str, str]
) -> None:
    response = api.get("/api/calls/?active=true&limit=1&offset=0&provider=mock")

    assert response.status_code == 200
    assert [r["callId"] for r in response.json()["results"]] == [calls["live"]]


def test_a_huge_limit_on_a_call_list_is_a_400_not_a_database_error(
    api: APIClient, calls: dict[str, str]
) -> None:
    _refused(api.get(f"/api/calls/{calls['live']}/transcript/?limit={10**27}"))


@pytest.mark.parametrize("query", ["callId=0", "since=%2090s", "since=soon", "provider=nope"])
def test_latency_refuses_bad_filters(api: APIClient, query: str) -> None:
    _refused(api.get(f"/api/latency/?{query}"))


@pytest.mark.parametrize("request_id", [{}, [], True])
def test_an_rpc_id_that_is_not_a_string_or_number_is_an_invalid_request(
    api: APIClient, request_id: Any
) -> None:
    body = {"jsonrpc": "2.0", "id": request_id, "method": "voicecall.status"}

    reply = api.post("/api/rpc", body, format="json").json()

    assert reply["id"] is None
    assert reply["error"]["code"] == -32600


def test_an_rpc_number_id_is_echoed(api: APIClient) -> None:
    body = {"jsonrpc": "2.0", "id": 2.5, "method": "voicecall.status"}

    assert api.post("/api/rpc", body, format="json").json()["id"] == 2.5


def test_a_bodyless_rpc_post_is_a_200_parse_error(api: APIClient) -> None:
    response = api.post("/api/rpc")

    assert response.status_code == 200
    assert response.json()["error"]["code"] == -32700


def test_a_tool_action_that_is_not_a_string_is_an_unknown_action(api: APIClient) -> None:
    response = api.post("/api/tools/voice_call", {"action": {}}, format="json")

    assert response.status_code == 200
    assert response.json() == {"error": "Unknown action: {}"}

"""The OpenAPI document says what the API does (docs/api-contract.md): the schema-side
guards of what scripts/api_contract.sh checks against a served process."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
from rest_framework.test import APIClient

from calls.api.methods import METHODS
from calls.api.tool import _ACTIONS
from calls.models import Call
from calls.state import CallState
from providers.registry import provider_names

pytestmark = pytest.mark.django_db


@pytest.fixture
def document(api: APIClient) -> dict[str, Any]:
    response = api.get("/api/schema/?format=json")
    assert response.status_code == 200
    return dict(json.loads(response.content))


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    return dict(document["components"]["schemas"][ref.rsplit("/", 1)[-1]])


def _body(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    content = document["paths"][path][method.lower()]["requestBody"]["content"]
    assert list(content) == ["application/json"]  # JSON only: no form alternatives
    return _resolve(document, content["application/json"]["schema"])


def _query(document: dict[str, Any], path: str) -> dict[str, dict[str, Any]]:
    parameters = document["paths"][path]["get"].get("parameters", [])
    return {p["name"]: p["schema"] for p in parameters if p["in"] == "query"}


def test_every_operation_documents_401_and_its_errors_have_the_error_shape(
    document: dict[str, Any],
) -> None:
    error = {"$ref": "#/components/schemas/Error"}
    for method, path, operation in _operations(document):
        responses = operation["responses"]
        assert "401" in responses, f"{method} {path}"
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                assert response["content"]["application/json"]["schema"] == error, status
        if "{call_id}" in path:
            assert "404" in responses, f"{method} {path}"
        parses = "requestBody" in operation or any(
            p["in"] == "query" for p in operation.get("parameters", [])
        )
        if parses and path != "/api/rpc":  # JSON-RPC answers bad input with 200
            assert "400" in responses, f"{method} {path}"


def test_the_rpc_documents_its_notification_204_and_no_400(document: dict[str, Any]) -> None:
    responses = document["paths"]["/api/rpc"]["post"]["responses"]
    assert {"200", "204", "401"} <= set(responses)
    assert "400" not in responses


@pytest.mark.parametrize(
    ("method", "path", "fields"),
    [
        ("POST", "/api/calls/", ["message"]),
        ("POST", "/api/calls/{call_id}/continue/", ["message"]),
        ("POST", "/api/calls/{call_id}/speak/", ["message"]),
        ("POST", "/api/calls/{call_id}/dtmf/", ["digits"]),
        ("POST", "/api/calls/{call_id}/transfer/", ["to"]),
    ],
)
def test_required_text_fields_have_a_min_length_and_a_pattern(
    document: dict[str, Any], method: str, path: str, fields: list[str]
) -> None:
    properties = _body(document, method, path)["properties"]
    for field in fields:
        assert properties[field]["minLength"] == 1, field
        assert properties[field]["pattern"], field


def test_a_dtmf_sequence_is_documented_as_needing_a_conversation(
    document: dict[str, Any],
) -> None:
    body = _body(document, "POST", "/api/calls/")
    conversation = body["anyOf"][1]
    assert body["anyOf"][0] == {"not": {"required": ["dtmfSequence"]}}
    assert conversation["required"] == ["mode"]
    assert re.fullmatch(conversation["properties"]["mode"]["pattern"], "conversation")
    assert not re.fullmatch(conversation["properties"]["mode"]["pattern"], "notify")


def _enum(document: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    return list(_resolve(document, schema)["enum"])


def test_list_and_latency_filters_are_enums(document: dict[str, Any]) -> None:
    for path in ("/api/calls/", "/api/latency/"):
        query = _query(document, path)
        assert sorted(_enum(document, query["provider"])) == provider_names(), path
        assert sorted(_enum(document, query["direction"])) == sorted(Call.Direction.values)
    calls = _query(document, "/api/calls/")
    assert sorted(_enum(document, calls["state"])) == sorted(s.value for s in CallState)
    assert calls["active"]["type"] == "boolean"
    assert calls["limit"]["minimum"] == 1 and calls["offset"]["minimum"] == 0
    assert _query(document, "/api/latency/")["callId"]["format"] == "uuid"


def test_the_rpc_request_has_one_alternative_per_method_with_its_params(
    document: dict[str, Any],
) -> None:
    body = _body(document, "POST", "/api/rpc")
    single, batch = body["oneOf"]
    assert batch["type"] == "array" and batch["minItems"] == 1
    by_method = {alt["properties"]["method"]["enum"][0]: alt for alt in single["oneOf"]}
    assert sorted(by_method) == sorted(METHODS)
    dtmf = by_method["voicecall.dtmf"]
    assert dtmf["required"] == ["jsonrpc", "method", "params"]
    assert dtmf["properties"]["params"]["required"] == ["callId", "digits"]
    assert "params" not in by_method["voicecall.status"]["required"]


def test_the_rpc_answer_is_a_result_or_an_error(document: dict[str, Any]) -> None:
    answer = document["paths"]["/api/rpc"]["post"]["responses"]["200"]
    single, batch = answer["content"]["application/json"]["schema"]["oneOf"]
    result, error = single["oneOf"]
    assert result["required"] == ["jsonrpc", "id", "result"]
    assert error["required"] == ["jsonrpc", "id", "error"]
    assert len(result["properties"]["result"]["anyOf"]) == len(METHODS)
    assert batch["type"] == "array"


def test_the_tool_request_has_one_alternative_per_action_with_its_required_fields(
    document: dict[str, Any],
) -> None:
    alternatives = _body(document, "POST", "/api/tools/voice_call")["oneOf"]
    actions = {
        alt["properties"]["action"]["enum"][0]: alt["required"]
        for alt in alternatives
        if "action" in alt["properties"]
    }
    assert sorted(actions) == sorted(_ACTIONS)
    assert actions["send_dtmf"] == ["action", "callId", "digits"]
    assert actions["get_status"] == ["action", "callId"]
    assert actions["transfer_call"] == ["action", "callId", "to"]
    legacy = [alt for alt in alternatives if "action" not in alt["properties"]]
    assert len(legacy) == 1 and legacy[0]["not"] == {"required": ["action"]}


def test_a_created_call_matches_the_documented_status_view(
    api: APIClient, document: dict[str, Any], calls: dict[str, str]
) -> None:
    body = {"message": "Hello", "to": "+15555550123"}
    created = api.post("/api/calls/", body, format="json")
    assert created.status_code == 201
    schema = {"$ref": "#/components/schemas/CallOutput", "components": document["components"]}
    required = document["components"]["schemas"]["CallOutput"]["required"]
    assert {"callId", "state", "from", "to", "metadata"} <= set(required)

    jsonschema.validate(created.json(), schema)
    listed = api.get("/api/calls/").json()["results"]
    for call in listed:
        jsonschema.validate(call, schema)

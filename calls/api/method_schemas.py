"""JSON Schemas of the `voicecall.*` methods' params and results, for the OpenAPI document.

One entry per method (calls/api/methods.py METHODS): the JSON-RPC request is a `oneOf` with
one alternative per method, and the voice_call tool's request one per action, each with the
fields that action requires (docs/plugin-behaviour.md, "RPC methods" and "Agent tool").
A test checks that every method has both entries.
"""

from __future__ import annotations

from typing import Any

from calls.api.contract import (
    BLANKABLE_TEXT_PATTERN,
    DTMF_NEEDS_CONVERSATION,
    DTMF_PATTERN,
    E164_PATTERN,
    SESSION_KEY_MAX,
    object_schema,
    string_schema,
)

_TEXT = string_schema()
_BLANKABLE = {"type": "string", "pattern": BLANKABLE_TEXT_PATTERN}
_E164 = string_schema(E164_PATTERN)
_MODE = {"type": "string", "enum": ["notify", "conversation"]}
_BOOL = {"type": "boolean"}
_PLACE = {
    "to": {**_E164, "description": "default: the configured toNumber"},
    "message": _TEXT,
    "mode": _MODE,
    "sessionKey": {**_BLANKABLE, "maxLength": SESSION_KEY_MAX},
    "dtmfSequence": {**string_schema(DTMF_PATTERN), "description": "needs mode conversation"},
}
_CALL_MESSAGE = object_schema({"callId": _TEXT, "message": _TEXT}, ("callId", "message"))

PARAMS: dict[str, dict[str, Any]] = {
    "voicecall.initiate": object_schema(_PLACE, ("message",), **DTMF_NEEDS_CONVERSATION),
    "voicecall.start": object_schema(_PLACE, ("to",), **DTMF_NEEDS_CONVERSATION),
    "voicecall.continue": _CALL_MESSAGE,
    "voicecall.continue.start": _CALL_MESSAGE,
    "voicecall.continue.result": object_schema({"operationId": _TEXT}, ("operationId",)),
    "voicecall.speak": object_schema(
        {
            "callId": _TEXT,
            "message": _TEXT,
            "wait": _BOOL,
            "allowTwimlFallback": {**_BOOL, "nullable": True},
        },
        ("callId", "message"),
    ),
    "voicecall.dtmf": object_schema(
        {"callId": _TEXT, "digits": string_schema(DTMF_PATTERN)}, ("callId", "digits")
    ),
    "voicecall.end": object_schema({"callId": _TEXT}, ("callId",)),
    "voicecall.transfer": object_schema(
        {"callId": _TEXT, "to": _E164, "message": _BLANKABLE}, ("callId", "to")
    ),
    "voicecall.status": object_schema(
        {"callId": _TEXT, "sid": {**_TEXT, "description": "legacy name of callId"}}
    ),
}

_STRING = {"type": "string"}
_SUCCESS = object_schema({"success": _BOOL}, ("success",))
_PLACED = object_schema({"callId": _STRING, "initiated": _BOOL}, ("callId", "initiated"))

RESULTS: dict[str, dict[str, Any]] = {
    "voicecall.initiate": _PLACED,
    "voicecall.start": _PLACED,
    "voicecall.continue": object_schema(
        {"success": _BOOL, "transcript": _STRING}, ("success", "transcript")
    ),
    "voicecall.continue.start": object_schema({"operationId": _STRING}, ("operationId",)),
    "voicecall.continue.result": object_schema(
        {"operationId": _STRING, "status": _STRING},
        ("operationId", "status"),
        description="pending, or the final status with the turn's result",
    ),
    "voicecall.speak": object_schema(
        {"success": _BOOL, "utteranceId": _STRING, "heard": _BOOL, "interrupted": _BOOL},
        ("success", "utteranceId"),
    ),
    "voicecall.dtmf": _SUCCESS,
    "voicecall.end": _SUCCESS,
    "voicecall.transfer": _SUCCESS,
    "voicecall.status": object_schema(
        {
            "found": _BOOL,
            "call": {"type": "object"},
            "calls": {"type": "array", "items": {"type": "object"}},
        },
        ("found",),
    ),
}


def any_result() -> dict[str, Any]:
    """A result of some method. anyOf, not oneOf: `{success: true}` is several methods'."""
    return {"anyOf": list(RESULTS.values())}


_ID = {
    "anyOf": [{"type": "string"}, {"type": "number"}],
    "nullable": True,
    "description": "Absent for a notification, which is answered 204 with no body",
}


def rpc_request_schema() -> dict[str, Any]:
    """One JSON-RPC request (one alternative per method) or a batch of them."""
    single = {
        "oneOf": [
            object_schema(
                {
                    "jsonrpc": {"type": "string", "enum": ["2.0"]},
                    "id": _ID,
                    "method": {"type": "string", "enum": [method]},
                    "params": params,
                },
                ("jsonrpc", "method", *(["params"] if params.get("required") else [])),
            )
            for method, params in PARAMS.items()
        ]
    }
    return {"oneOf": [single, {"type": "array", "items": single, "minItems": 1}]}


def rpc_response_schema() -> dict[str, Any]:
    """A result or an error object; an array of them for a batch."""
    error = object_schema(
        {
            "code": {"type": "integer", "description": "-32700, -32600, -32601, -32602, -32000"},
            "message": {"type": "string", "description": "The plugin's error string"},
            "data": object_schema({"code": _STRING}, ("code",)),
        },
        ("code", "message"),
    )
    envelope = {"jsonrpc": {"type": "string", "enum": ["2.0"]}, "id": _ID}
    single = {
        "oneOf": [
            object_schema({**envelope, "result": any_result()}, ("jsonrpc", "id", "result")),
            object_schema({**envelope, "error": error}, ("jsonrpc", "id", "error")),
        ]
    }
    return {"oneOf": [single, {"type": "array", "items": single}]}

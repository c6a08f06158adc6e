"""GET/POST /api/tools/voice_call: the agent tool; errors never raise.

docs/plugin-behaviour.md, "Agent tool".
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from calls.api import methods
from calls.api.contract import object_schema
from calls.api.method_schemas import PARAMS, any_result
from calls.config import get_config
from calls.exceptions import CallError
from calls.selectors import call_as_dict, call_find

DESCRIPTION = "Make phone calls and have voice conversations via the voice-call plugin."

_STR = {"type": "string"}
TOOL_SCHEMA: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "voice_call",
        "description": DESCRIPTION,
        "parameters": {
            "type": "object",
            "properties": {
                "action": {
                    "type": "string",
                    "enum": [
                        "initiate_call",
                        "continue_call",
                        "speak_to_user",
                        "send_dtmf",
                        "end_call",
                        "transfer_call",
                        "get_status",
                    ],
                },
                "to": {
                    **_STR,
                    "description": "E.164 number to call (default: toNumber), or to "
                    "transfer the call to (transfer_call)",
                },
                "message": {**_STR, "description": "What to say"},
                "wait": {
                    "type": "boolean",
                    "description": "speak_to_user: return once the words were heard or cut off",
                },
                "mode": {"type": "string", "enum": ["notify", "conversation", "call", "status"]},
                "callId": {**_STR, "description": "callId returned by initiate_call"},
                "digits": {**_STR, "description": "DTMF digits: 0-9 * # , w p"},
                "sessionKey": _STR,
                "dtmfSequence": {**_STR, "description": "Digits sent right after connect"},
                "sid": {**_STR, "description": "Legacy: call id for mode=status"},
            },
        },
    },
}

# action -> (RPC method, error when it fails without a message, required fields error)
_ACTIONS: dict[str, tuple[str, str]] = {
    "initiate_call": ("voicecall.initiate", "initiate failed"),
    "continue_call": ("voicecall.continue", "continue failed"),
    "speak_to_user": ("voicecall.speak", "speak failed"),
    "send_dtmf": ("voicecall.dtmf", "dtmf failed"),
    "end_call": ("voicecall.end", "end failed"),
    "transfer_call": ("voicecall.transfer", "transfer failed"),
    "get_status": ("voicecall.status", "status failed"),
}


def _action_schema(action: str, method: str) -> dict[str, Any]:
    params = PARAMS[method]
    required = ["action", *params.get("required", [])]
    if action == "get_status":
        required.append("callId")  # the tool needs one; voicecall.status would list calls
    properties = {"action": {"type": "string", "enum": [action]}, **params["properties"]}
    constraints = {k: v for k, v in params.items() if k not in ("properties", "required")}
    return object_schema(properties, tuple(required), **constraints)


def tool_request_schema() -> dict[str, Any]:
    """One alternative per action with the fields it requires, and the legacy shape."""
    legacy = object_schema(
        {
            "mode": {"type": "string", "enum": ["call", "status"]},
            "to": TOOL_SCHEMA["function"]["parameters"]["properties"]["to"],
            "message": _STR,
            "sid": _STR,
        }
    )
    legacy["not"] = {"required": ["action"]}
    actions = [_action_schema(action, method) for action, (method, _) in _ACTIONS.items()]
    return {"oneOf": [*actions, legacy]}


def tool_response_schema() -> dict[str, Any]:
    failed = object_schema({"error": {"type": "string"}}, ("error",))
    return {"anyOf": [any_result(), failed]}


def run_tool(params: dict[str, Any]) -> dict[str, Any]:
    """Run one tool action; every failure comes back as {"error": message}."""
    action = params.get("action")
    if action is None:
        return _legacy(params)
    if not isinstance(action, str) or action not in _ACTIONS:  # {} is not even hashable
        return {"error": f"Unknown action: {action}"}
    if action == "get_status" and not params.get("callId"):
        return {"error": "callId required"}
    method, fallback = _ACTIONS[action]
    try:
        result = methods.call_method(method, params)
    except CallError as exc:
        return {"error": _inactive_detail(params, exc.message) or fallback}
    if action == "get_status" and result.get("found"):
        return {"found": True, "call": result["call"]}
    return result


def _inactive_detail(params: dict[str, Any], message: str) -> str:
    if message != "Call has ended":
        return message
    call = call_find(params.get("callId"))
    if call is None:
        return message
    ended = call_as_dict(call).get("endedAt")
    return (
        f"call is not active (last state={call.state}, endReason={call.end_reason or None}, "
        f"endedAt={ended})"
    )


def _legacy(params: dict[str, Any]) -> dict[str, Any]:
    """The pre-action shape {mode?: "call"|"status", to?, sid?, message?}."""
    if params.get("mode") == "status":
        if not params.get("sid"):
            return {"error": "sid required for status"}
        return run_tool({"action": "get_status", "callId": params["sid"]})
    if not params.get("to") and not _configured_to():
        return {"error": "to required for call"}
    return run_tool({**params, "action": "initiate_call", "mode": None})


def _configured_to() -> str | None:
    return get_config().to_number


class ToolApi(APIView):
    @extend_schema(
        responses={200: {"type": "object"}},
        description="The voice_call tool definition (OpenAI function-calling shape).",
    )
    def get(self, request: Request) -> Response:
        return Response(TOOL_SCHEMA)

    @extend_schema(
        request={"application/json": tool_request_schema()},
        responses={
            200: OpenApiResponse(tool_response_schema(), description="The action's result"),
        },
        description='Run a tool action; failures are {"error": "…"} with 200 (an agent reads '
        "them), only a body that is not JSON is answered 400.",
    )
    def post(self, request: Request) -> Response:
        if not isinstance(request.data, dict):
            return Response({"error": "arguments must be a JSON object"})
        return Response(run_tool(dict(request.data)))

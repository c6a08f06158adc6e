"""The plugin's `voicecall.*` RPC methods: parse params, call one service, shape the result.

docs/plugin-behaviour.md, "RPC methods".

Shared by the JSON-RPC endpoint and the CLI's in-process mode, so both give the same
payloads and the same error strings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from calls.exceptions import CallError, CallNotFound, InvalidRequest
from calls.models import Call
from calls.selectors import call_as_dict, call_find, call_list
from calls.services import turns
from calls.services.actions import call_end, call_send_dtmf, call_speak
from calls.services.dialling import call_initiate
from calls.services.speech import Spoken
from calls.services.transfer import call_transfer

Params = Mapping[str, Any]


def _text(params: Params, key: str) -> str:
    value = params.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRequest(f"{key} must be a string")
    return value.strip()


def _mode(params: Params) -> str | None:
    mode = params.get("mode")
    if mode in (None, ""):
        return None
    if mode not in Call.Mode.values:
        raise InvalidRequest('mode must be "notify" or "conversation"')
    return str(mode)


def initiate(params: Params) -> dict[str, Any]:
    message = _text(params, "message")
    if not message:
        raise InvalidRequest("message required")
    call = _place(params, message=message)
    return {"callId": call.call_id, "initiated": True}


def start(params: Params) -> dict[str, Any]:
    if not _text(params, "to"):
        raise InvalidRequest("to required")
    call = _place(params, message=_text(params, "message") or None)
    return {"callId": call.call_id, "initiated": True}


def _unsupported(params: Params, *names: str) -> None:
    """Plugin params voicecall has no meaning for: refused by name, never ignored.

    `agentId` (the plugin takes it only from trusted in-process callers; one agent owns
    every call here) and `requesterSessionKey` (where the plugin reports back to; nothing
    here reports to a session). docs/plugin-behaviour.md, "RPC methods".
    """
    for name in names:
        if params.get(name) is not None:
            raise InvalidRequest(f"{name} is not supported by voicecall")


def _place(params: Params, *, message: str | None) -> Call:
    _unsupported(params, "agentId", "requesterSessionKey")
    dtmf = params.get("dtmfSequence")
    if dtmf is not None and not isinstance(dtmf, str):
        raise InvalidRequest("dtmfSequence must be a string")
    return call_initiate(
        to=_text(params, "to") or None,
        message=message,
        mode=_mode(params),
        session_key=_text(params, "sessionKey") or None,
        dtmf_sequence=dtmf,
    )


def _call_and_message(params: Params) -> tuple[str, str]:
    call_id, message = _text(params, "callId"), _text(params, "message")
    if not call_id or not message:
        raise InvalidRequest("callId and message required")
    return call_id, message


def continue_(params: Params) -> dict[str, Any]:
    call_id, message = _call_and_message(params)
    result = turns.call_continue(call_id=call_id, message=message)
    return {"success": True, "transcript": result.transcript}


def continue_start(params: Params) -> dict[str, Any]:
    call_id, message = _call_and_message(params)
    operation = turns.continue_start(call_id=call_id, message=message)
    return {"operationId": str(operation.operation_id)}


def continue_result(params: Params) -> dict[str, Any]:
    operation = turns.continue_result(operation_id=_text(params, "operationId") or None)
    if operation.status == operation.Status.PENDING:
        return {"operationId": str(operation.operation_id), "status": "pending"}
    return {
        "operationId": str(operation.operation_id),
        "status": operation.status,
        **operation.result,
    }


def speak(params: Params) -> dict[str, Any]:
    call_id, message = _call_and_message(params)
    wait, fallback = params.get("wait", False), params.get("allowTwimlFallback")
    fallback = True if fallback is None else fallback  # null means unset, as in the plugin
    if not isinstance(wait, bool):
        raise InvalidRequest("wait must be a boolean")
    if not isinstance(fallback, bool):
        raise InvalidRequest("allowTwimlFallback must be a boolean")
    spoken = call_speak(call_id=call_id, message=message, wait=wait, carrier_speech=fallback)
    return spoken_result(spoken)


def spoken_result(spoken: Spoken) -> dict[str, Any]:
    """`{success, utteranceId}`, plus `heard`/`interrupted` when a wait learned them."""
    result: dict[str, Any] = {"success": True, "utteranceId": spoken.utterance_id}
    if spoken.heard is not None:
        result.update(heard=spoken.heard, interrupted=bool(spoken.interrupted))
    return result


def dtmf(params: Params) -> dict[str, Any]:
    call_id, digits = _text(params, "callId"), _text(params, "digits")
    if not call_id or not digits:
        raise InvalidRequest("callId and digits required")
    call_send_dtmf(call_id=call_id, digits=digits)
    return {"success": True}


def end(params: Params) -> dict[str, Any]:
    call_id = _text(params, "callId")
    if not call_id:
        raise InvalidRequest("callId required")
    call_end(call_id=call_id)
    return {"success": True}


def transfer(params: Params) -> dict[str, Any]:
    """Cold transfer (ours): `{callId, to, message?}` -> `{success: true}` once the carrier
    took it (docs/carriers.md, "Cold transfer")."""
    call_id, to = _text(params, "callId"), _text(params, "to")
    if not call_id or not to:
        raise InvalidRequest("callId and to required")
    call_transfer(call_id=call_id, to=to, message=_text(params, "message") or None)
    return {"success": True}


def status(params: Params) -> dict[str, Any]:
    call_id = _text(params, "callId") or _text(params, "sid")
    if not call_id:
        calls = call_list(active=True)
        return {"found": True, "calls": [call_as_dict(c) for c in calls]}
    call = call_find(call_id)
    if call is None:
        return {"found": False}
    return {"found": True, "call": call_as_dict(call)}


METHODS: dict[str, Callable[[Params], dict[str, Any]]] = {
    "voicecall.initiate": initiate,
    "voicecall.start": start,
    "voicecall.continue": continue_,
    "voicecall.continue.start": continue_start,
    "voicecall.continue.result": continue_result,
    "voicecall.speak": speak,
    "voicecall.dtmf": dtmf,
    "voicecall.end": end,
    "voicecall.transfer": transfer,
    "voicecall.status": status,
}


class MethodNotFound(CallError):
    code = "METHOD_NOT_FOUND"
    http_status = 404


def call_method(method: str, params: Params) -> dict[str, Any]:
    """Run one RPC method; raises CallError (with the plugin's message) on failure."""
    handler = METHODS.get(method)
    if handler is None:
        raise MethodNotFound(f"Method not found: {method}")
    if not isinstance(params, Mapping):
        raise InvalidRequest("params must be an object")
    return handler(params)


__all__ = ["METHODS", "CallNotFound", "MethodNotFound", "call_method"]

"""Plivo Voice callbacks -> normalized events, and the Plivo XML reply.

docs/carriers.md, "Plivo: webhooks".

Every callback comes to the one serve path; ours are told apart by the query we put in the
URLs we hand Plivo: `callId`, and `flow` = answer (answer_url), hangup (hangup_url),
getinput (GetInput action, with the turn's `turnToken`), xml-speak / xml-listen (documents
fetched after a REST transfer), spoken (the <Redirect> after our <Speak>, with its
`utteranceId`: the words were said). Plivo posts form fields (POST) or a query string (GET).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from typing import Any

from plivo import plivoxml

from providers.base import (
    AnsweredBy,
    EventType,
    MachineDetection,
    NormalizedEvent,
    PlaceCall,
    Reply,
    ReplyContext,
    WebhookRequest,
)
from providers.common import TERMINAL_STATES, with_query
from providers.errors import WebhookInvalid
from providers.plivo import xml
from providers.plivo.signature import form_params
from providers.webhook_security import webhook_base

ANSWER, HANGUP, GETINPUT = "answer", "hangup", "getinput"
XML_SPEAK, XML_LISTEN = "xml-speak", "xml-listen"
# The document a cold transfer points the call at: the message, then <Dial>.
XML_TRANSFER = "xml-transfer"
SPOKEN = "spoken"
MACHINE = "machine"  # the machine_detection_url callback
# Make-a-call `machine_detection_time`: 2000-10000 ms of analysis, 5000 by default (SDK
# `calls.create`); sent explicitly because a held greeting's deadline is counted from it.
MACHINE_DETECTION_MS = 5000
FETCH_FLOWS = frozenset({XML_SPEAK, XML_LISTEN})
# Plivo runs our reply as the call's next XML only for these; hangup bodies are ignored.
DOCUMENT_FLOWS = frozenset({ANSWER, GETINPUT, XML_SPEAK, XML_LISTEN, SPOKEN, XML_TRANSFER})
# Plivo's GetInput posts the words as `Speech`; the others are seen with other products
# and in the plugin's list, first non-empty wins (docs/carriers.md, "Plivo: webhooks").
SPEECH_FIELDS = (
    "Speech",
    "Transcription",
    "TranscriptionText",
    "SpeechResult",
    "RecognizedSpeech",
    "Text",
)
_STATUS_EVENTS = {"ringing": EventType.RINGING, "in-progress": EventType.ANSWERED}
# The plugin maps the first four (docs/plugin-behaviour.md, "End reasons"); `cancel` is a
# request we withdrew (DELETE /Request/), `timeout` is ring time running out, `machine` an
# AMD hang-up.
END_REASONS = {
    "completed": "completed",
    "busy": "busy",
    "no-answer": "no-answer",
    "failed": "failed",
    "timeout": "no-answer",
    "cancel": "hangup-bot",
    "machine": "voicemail",
    "hangup": "completed",
}
_NUMBER = re.compile(r"^\+?[1-9]\d{1,14}$")


# -- parsing -------------------------------------------------------------------------------
def callback_params(request: WebhookRequest) -> dict[str, str]:
    """The first value of each Plivo field: the form body of a POST, the query of a GET."""
    if request.method.upper() == "GET":
        return {key: values[0] for key, values in request.query.items() if values}
    parsed = form_params(request.body)
    if parsed is None:
        raise WebhookInvalid("Body is not valid form data")
    return {key: values[0] for key, values in parsed.items()}


def parse_events(request: WebhookRequest) -> list[NormalizedEvent]:
    flow = request.query_value("flow")
    if flow in FETCH_FLOWS or flow == XML_TRANSFER:
        return []  # a document fetch after our own transfer: nothing happened on the call
    params = callback_params(request)
    call_id = request.query_value("callId") or None
    provider_call_id = _first(params, "CallUUID", "RequestUUID")
    if not (call_id or provider_call_id):
        raise WebhookInvalid("Missing CallUUID")
    if flow == SPOKEN:
        classified = _spoken(request)
    elif flow == MACHINE:
        classified = _machine_verdict(params)
    else:
        classified = _classify(params, flow=flow)
    if classified is None:
        return []
    type_, details = classified
    direction = params.get("Direction", "").strip().lower()
    return [
        NormalizedEvent(
            type=type_,
            id=_event_id(params, request),
            call_id=call_id,
            provider_call_id=provider_call_id,
            turn_token=request.query_value("turnToken") or None,
            direction=direction if direction in ("inbound", "outbound") else None,
            from_number=to_e164(params.get("From")),
            to_number=to_e164(params.get("To")),
            **details,
        )
    ]


def _classify(
    params: Mapping[str, str], *, flow: str | None
) -> tuple[EventType, dict[str, Any]] | None:
    """Digits, then words, then the call status (docs/carriers.md, "Plivo: webhooks")."""
    digits = params.get("Digits", "").strip()
    if digits:
        return EventType.DTMF, {"digits": digits}
    speech = _first(params, *SPEECH_FIELDS)
    if speech:
        return EventType.SPEECH, {
            "transcript": speech,
            "is_final": True,
            "confidence": _confidence(params.get("SpeechConfidenceScore")),
        }
    status = params.get("CallStatus", "").strip().lower()
    if status in END_REASONS:
        return EventType.ENDED, {"reason": END_REASONS[status]}
    if flow == GETINPUT:
        return EventType.SILENCE, {}  # the turn heard nothing; the call is still ours
    # The answer fetch: our reply answers the call, also an inbound one still "ringing".
    if params.get("Event", "").strip() == "StartApp" and params.get("CallUUID", "").strip():
        return EventType.ANSWERED, {}
    if status in _STATUS_EVENTS:
        return _STATUS_EVENTS[status], {}
    return None


def _spoken(request: WebhookRequest) -> tuple[EventType, dict[str, Any]] | None:
    """The <Redirect> after our <Speak>: Plivo reached it, so the words were said in full.
    The utterance is ours, from the URL we put in the document."""
    utterance_id = request.query_value("utteranceId")
    if not utterance_id:
        return None
    return EventType.SPOKEN, {"utterance_id": utterance_id}


def _machine_verdict(params: Mapping[str, str]) -> tuple[EventType, dict[str, Any]]:
    """The machine_detection_url callback: `Machine` "true" or "false"
    (plivo.com/docs/voice/api/call/asynchronous-machine-detection). Plivo documents it for
    a detected machine; a "false" is read as a person. It reports no detection time and no
    end of the greeting. Anything else is refused (400)."""
    machine = params.get("Machine", "").strip().lower()
    if machine not in ("true", "false"):
        raise WebhookInvalid("Missing or invalid Machine")
    verdict = AnsweredBy.MACHINE if machine == "true" else AnsweredBy.HUMAN
    return EventType.MACHINE_DETECTION, {"answered_by": verdict.value}


def machine_detection_fields(request: PlaceCall) -> dict[str, Any]:
    """Make-a-call `machine_detection` ("true": report, never Plivo's own "hangup", so the
    end reason is ours), with its callback to our webhook (`flow=machine`)."""
    if request.machine_detection == MachineDetection.OFF:
        return {}
    return {
        "machine_detection": "true",
        "machine_detection_time": MACHINE_DETECTION_MS,
        "machine_detection_url": with_query(request.webhook_url, flow=MACHINE),
        "machine_detection_method": "POST",
    }


def _first(params: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = params.get(name, "").strip()
        if value:
            return value
    return None


def _confidence(value: str | None) -> float | None:
    try:
        confidence = float(value or "")
    except ValueError:
        return None
    return confidence if math.isfinite(confidence) and 0 <= confidence <= 1 else None


def _event_id(params: Mapping[str, str], request: WebhookRequest) -> str:
    """The same Plivo delivery gives the same id, whatever nonce it was signed with."""
    parts = [
        params.get("CallUUID", ""),
        params.get("CallStatus", ""),
        request.query_value("flow") or "",
        params.get("Digits", ""),
        _first(params, *SPEECH_FIELDS) or "",
        request.query_value("turnToken") or "",
    ]
    if utterance_id := request.query_value("utteranceId"):
        parts.append(utterance_id)  # each utterance's report is its own event
    if request.query_value("flow") == MACHINE:
        parts.append(params.get("Machine", ""))
    return "plivo:evt:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()


def to_e164(value: str | None) -> str | None:
    """Plivo sends `14155550100`; we keep `+14155550100`. SIP URIs and names stay as sent."""
    raw = (value or "").strip()
    if not raw:
        return None
    compact = re.sub(r"[\s().-]", "", raw)
    if _NUMBER.match(compact):
        return compact if compact.startswith("+") else f"+{compact}"
    return raw


# -- replies -------------------------------------------------------------------------------
def is_document_fetch(request: WebhookRequest) -> bool:
    """True when Plivo runs our reply: our flows, or an Application answer URL (no flow)."""
    flow = request.query_value("flow")
    if flow:
        return flow in DOCUMENT_FLOWS
    try:
        params = callback_params(request)
    except WebhookInvalid:
        return False
    return params.get("Event", "").strip() == "StartApp"


def fetch_call_id(request: WebhookRequest) -> str | None:
    if request.query_value("flow") in FETCH_FLOWS:
        return request.query_value("callId") or None
    return None


def transfer_fetch_call_id(request: WebhookRequest) -> str | None:
    if request.query_value("flow") == XML_TRANSFER:
        return request.query_value("callId") or None
    return None


def render(request: WebhookRequest, context: ReplyContext, settings: Mapping[str, Any]) -> Reply:
    document = xml.render(decide(request, context, settings))
    return Reply(status=200, body=document.encode(), content_type="text/xml")


def decide(
    request: WebhookRequest, context: ReplyContext, settings: Mapping[str, Any]
) -> plivoxml.ResponseElement:
    """The reply policy: what the services decided, then what keeps a live call open."""
    if context.replay:
        return xml.empty()  # the first delivery already got the real answer
    if context.rejected:
        return xml.reject()
    if not is_document_fetch(request):
        return xml.empty()  # hangup and status bodies are not executed
    if request.query_value("flow") == XML_TRANSFER:
        # Nothing else may answer it: with no transfer waiting on the call the document is
        # empty and Plivo ends the leg, rather than holding the caller in silence.
        return _transfer_reply(context) if context.transfer else xml.empty()
    if context.hang_up_after is not None:
        # A notify message was just heard: the delay, then the end (no timer estimate).
        return xml.wait_then_hangup(context.hang_up_after)
    if context.stream is not None:
        return xml.stream(context.stream.url, token=context.stream.token)
    if context.speech is not None:
        return _speech_reply(request, context, settings)
    flow = request.query_value("flow")
    if flow in FETCH_FLOWS and request.query_value("callId"):
        # These fetches carry no events, so the context knows no call: Plivo only fetches
        # them for the live call we transferred, and an empty document would hang it up.
        return _listen_reply(request, settings) if flow == XML_LISTEN else xml.keep_alive()
    if context.known and context.state not in TERMINAL_STATES:
        if flow == SPOKEN and request.query_value("listen"):
            return _listen_reply(request, settings)  # the words were said: listen now
        return xml.keep_alive()
    return xml.empty()


def _speech_reply(
    request: WebhookRequest, context: ReplyContext, settings: Mapping[str, Any]
) -> plivoxml.ResponseElement:
    speech = context.speech
    assert speech is not None
    if speech.utterance_id:
        # Report when the words were said; the reply to that listens or holds.
        url = spoken_action(
            webhook_base(request, settings),
            call_id=context.call_id or request.query_value("callId"),
            utterance_id=speech.utterance_id,
            listen=speech.listen,
            turn_token=speech.turn_token,
        )
        return xml.speak(
            speech.text, language=speech.language, spoken_url=url, after_beep=speech.after_beep
        )
    action = None
    if speech.listen:
        action = getinput_action(
            webhook_base(request, settings),
            call_id=context.call_id or request.query_value("callId"),
            turn_token=speech.turn_token,
        )
    return xml.speak(speech.text, language=speech.language, listen_action=action)


def _transfer_reply(context: ReplyContext) -> plivoxml.ResponseElement:
    transfer = context.transfer
    assert transfer is not None
    return xml.transfer(
        transfer.to_number,
        message=transfer.message,
        language=transfer.language,
        caller_id=transfer.caller_id,
    )


def _listen_reply(request: WebhookRequest, settings: Mapping[str, Any]) -> plivoxml.ResponseElement:
    action = getinput_action(
        webhook_base(request, settings),
        call_id=request.query_value("callId"),
        turn_token=request.query_value("turnToken"),
    )
    return xml.listen(action)


def getinput_action(base: str, *, call_id: str | None, turn_token: str | None) -> str:
    return with_query(base, callId=call_id, flow=GETINPUT, turnToken=turn_token)


def spoken_action(
    base: str, *, call_id: str | None, utterance_id: str, listen: bool, turn_token: str | None
) -> str:
    """The <Redirect> after our <Speak>: `base` + callId/flow=spoken/utteranceId, and
    listen=1 with the turn's token when the words open a turn."""
    return with_query(
        base,
        callId=call_id,
        flow=SPOKEN,
        utteranceId=utterance_id,
        listen="1" if listen else None,
        turnToken=turn_token if listen else None,
    )

"""Twilio Programmable Voice webhooks: request parameters -> normalized events, and the TwiML reply.

Every webhook comes to the one serve path; ours are told apart by the query we put in the
URLs we hand Twilio: `callId`, `type=status` (status callbacks), `flow=gather` (Gather
actions, with the turn's `turnToken`), `flow=spoken` (the <Redirect> after our <Say>, with
its `utteranceId`: the words were said), `type=amd` (the async answering-machine verdict).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qs

from twilio.twiml.voice_response import VoiceResponse

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
from providers.common import TERMINAL_STATES, preferred_voice, with_query
from providers.errors import WebhookInvalid
from providers.twilio import twiml
from providers.webhook_security import webhook_base

DEFAULT_CONFIDENCE = 0.9
GATHER_FLOW = "gather"
HOLD_FLOW = "hold"
SPOKEN_FLOW = "spoken"
STATUS_TYPE = "status"
AMD_TYPE = "amd"
# Callbacks whose reply Twilio ignores: status callbacks and the async AMD verdict.
_NOT_FETCHES = frozenset({STATUS_TYPE, AMD_TYPE})

# AnsweredBy -> ours, and whether the machine's greeting ended with the verdict
# (twilio.com/docs/voice/answering-machine-detection, "Webhook parameters"; the seven values
# are also the SDK's Insights `CallSummariesInstance.AnsweredBy`). With
# MachineDetection=DetectMessageEnd a machine is reported only at the end of its greeting,
# as machine_end_beep / _silence / _other; with Enable as machine_start.
ANSWERED_BY: dict[str, tuple[AnsweredBy, bool]] = {
    "human": (AnsweredBy.HUMAN, False),
    "machine_start": (AnsweredBy.MACHINE, False),
    "machine_end_beep": (AnsweredBy.MACHINE, True),
    "machine_end_silence": (AnsweredBy.MACHINE, True),
    "machine_end_other": (AnsweredBy.MACHINE, True),
    "fax": (AnsweredBy.FAX, False),
    "unknown": (AnsweredBy.UNKNOWN, False),
}

_STATUS_EVENTS = {
    "queued": EventType.INITIATED,
    "initiated": EventType.INITIATED,
    "ringing": EventType.RINGING,
    "in-progress": EventType.ANSWERED,
}
# docs/plugin-behaviour.md, "End reasons". `canceled` means we withdrew the call before it
# was answered.
END_REASONS = {
    "completed": "completed",
    "failed": "failed",
    "busy": "busy",
    "no-answer": "no-answer",
    "canceled": "hangup-bot",
}
_DIRECTIONS = {"inbound": "inbound", "outbound-api": "outbound", "outbound-dial": "outbound"}


# -- parsing -------------------------------------------------------------------------------
def form_params(request: WebhookRequest) -> dict[str, str]:
    """First value of each field; JSON-bodied deliveries (bodySHA256) are read as objects."""
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebhookInvalid("Body is not valid UTF-8") from exc
    if _is_json(request):
        return _json_params(text)
    try:
        parsed = parse_qs(text, keep_blank_values=True, errors="strict")
    except ValueError as exc:
        raise WebhookInvalid("Body is not valid form data") from exc
    return {key: values[0] for key, values in parsed.items()}


def _is_json(request: WebhookRequest) -> bool:
    content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
    return content_type == "application/json" or "bodySHA256" in request.query


def _json_params(text: str) -> dict[str, str]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # deeply nested JSON overflows the parser
        raise WebhookInvalid("Body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise WebhookInvalid("JSON body must be an object")
    return {str(k): str(v) for k, v in data.items() if isinstance(v, str | int | float)}


def parse_events(request: WebhookRequest) -> list[NormalizedEvent]:
    params = form_params(request)
    call_sid = params.get("CallSid", "").strip()
    if not call_sid:
        raise WebhookInvalid("Missing CallSid")
    direction = _DIRECTIONS.get(params.get("Direction", "").strip().lower())
    flow = request.query_value("flow")
    classified: tuple[EventType, dict[str, Any]] | None
    if request.query_value("type") == AMD_TYPE:
        classified = _machine_verdict(params)
    elif flow == SPOKEN_FLOW:
        classified = _spoken(request)
    else:
        classified = _classify(params, flow=flow, direction=direction)
    if classified is None:
        return []
    type_, details = classified
    return [
        NormalizedEvent(
            type=type_,
            id=_event_id(params, request),
            call_id=request.query_value("callId") or None,
            provider_call_id=call_sid,
            timestamp=_timestamp(params.get("Timestamp")),
            turn_token=request.query_value("turnToken") or None,
            direction=direction,
            from_number=params.get("From") or None,
            to_number=params.get("To") or None,
            **details,
        )
    ]


def _classify(
    params: Mapping[str, str], *, flow: str | None, direction: str | None
) -> tuple[EventType, dict[str, Any]] | None:
    """The plugin's priority: speech, digits, (empty Gather), status, bare inbound.

    docs/carriers.md, "Twilio: webhooks".
    """
    speech = params.get("SpeechResult", "").strip()
    if speech:
        return EventType.SPEECH, {
            "transcript": speech,
            "is_final": True,
            "confidence": _confidence(params.get("Confidence")),
        }
    digits = params.get("Digits", "").strip()
    if digits:
        return EventType.DTMF, {"digits": digits}
    if flow == GATHER_FLOW:
        return EventType.SILENCE, {}
    status = params.get("CallStatus", "").strip().lower()
    if status in _STATUS_EVENTS:
        return _STATUS_EVENTS[status], {}
    if status in END_REASONS:
        return EventType.ENDED, {"reason": END_REASONS[status]}
    if not status and direction == "inbound":
        return EventType.INITIATED, {}
    return None


def _spoken(request: WebhookRequest) -> tuple[EventType, dict[str, Any]] | None:
    """The <Redirect> after our <Say>: Twilio reached it, so the words before it were said
    in full (a caller who hangs up mid-<Say> never gets here). The utterance is ours, from
    the URL we signed into the document."""
    utterance_id = request.query_value("utteranceId")
    if not utterance_id:
        return None
    return EventType.SPOKEN, {"utterance_id": utterance_id}


def _machine_verdict(params: Mapping[str, str]) -> tuple[EventType, dict[str, Any]]:
    """The AsyncAmdStatusCallback: `AnsweredBy` and `MachineDetectionDuration` (ms). A
    value we do not know is refused (400) rather than guessed."""
    answered_by = params.get("AnsweredBy", "").strip()
    if answered_by not in ANSWERED_BY:
        raise WebhookInvalid("Missing or unknown AnsweredBy")
    verdict, greeting_ended = ANSWERED_BY[answered_by]
    duration = params.get("MachineDetectionDuration", "").strip()
    return EventType.MACHINE_DETECTION, {
        "answered_by": verdict.value,
        "greeting_ended": greeting_ended,
        "detection_ms": int(duration) if duration.isdigit() and len(duration) < 10 else None,
    }


def machine_detection_fields(request: PlaceCall) -> dict[str, Any]:
    """Async AMD on the Calls API create (SDK `calls.create` machine_detection, async_amd,
    async_amd_status_callback[_method]); the verdict comes to our webhook with `type=amd`.
    `leaveMessage` asks for DetectMessageEnd, so a machine's verdict comes at the beep."""
    if request.machine_detection == MachineDetection.OFF:
        return {}
    leave = request.machine_detection == MachineDetection.LEAVE_MESSAGE
    return {
        "machine_detection": "DetectMessageEnd" if leave else "Enable",
        "async_amd": "true",
        "async_amd_status_callback": with_query(request.webhook_url, type=AMD_TYPE),
        "async_amd_status_callback_method": "POST",
    }


def _confidence(value: str | None) -> float:
    try:
        confidence = float(value or "")
    except ValueError:
        return DEFAULT_CONFIDENCE
    return confidence if math.isfinite(confidence) else DEFAULT_CONFIDENCE


def _timestamp(value: str | None) -> datetime | None:
    # A malformed Timestamp loses only the carrier's clock: the services use their own,
    # rather than answering 400 and losing the status change.
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else None


def _event_id(params: Mapping[str, str], request: WebhookRequest) -> str:
    """Same Twilio delivery -> same id, whatever retry headers it carries."""
    parts = [
        params.get("CallSid", ""),
        params.get("CallStatus", ""),
        params.get("SequenceNumber", ""),
        request.query_value("flow") or "",
        request.query_value("turnToken") or "",
        params.get("SpeechResult", ""),
        params.get("Digits", ""),
    ]
    if utterance_id := request.query_value("utteranceId"):
        parts.append(utterance_id)  # each utterance's report is its own event
    if request.query_value("type") == AMD_TYPE:
        parts += [AMD_TYPE, params.get("AnsweredBy", "")]
    return "twilio:evt:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()


# -- replies -------------------------------------------------------------------------------
def is_twiml_fetch(request: WebhookRequest) -> bool:
    """Twilio executes our reply unless this is a status or AMD callback (body ignored)."""
    return request.query_value("type") not in _NOT_FETCHES


def render(request: WebhookRequest, context: ReplyContext, settings: Mapping[str, Any]) -> Reply:
    document = twiml.render(decide(request, context, settings))
    return Reply(status=200, body=document.encode(), content_type="application/xml")


def decide(
    request: WebhookRequest, context: ReplyContext, settings: Mapping[str, Any]
) -> VoiceResponse:
    """The plugin's TwiML policy, driven by what the services decided.

    docs/carriers.md, "Twilio: TwiML replies".
    """
    if context.replay or not is_twiml_fetch(request):
        # A replay's first delivery already got the real answer; status bodies are ignored.
        return twiml.empty()
    if context.rejected:
        return twiml.reject()
    if context.hang_up_after is not None:
        # A notify message was just heard: the delay, then the end (no timer estimate).
        return twiml.pause_then_hangup(context.hang_up_after)
    if context.speech is not None:
        return _speech_reply(request, context, settings)
    if context.hold:
        return twiml.hold_queue()
    if context.stream is not None:
        return twiml.connect_stream(context.stream.url, token=context.stream.token)
    if context.state in TERMINAL_STATES:
        # Explicit, so a call we consider over ends even if our REST hang-up failed.
        return twiml.hangup()
    if not (context.known or context.call_id):
        # Not our call: nothing to run. An empty document ends it, as Twilio does anyway.
        return twiml.empty()
    if request.query_value("flow") == GATHER_FLOW and not _heard_anything(request):
        return _listen(request, context, settings, attempt=_attempt(request) + 1)
    if request.query_value("flow") == SPOKEN_FLOW and request.query_value("listen"):
        return _listen(request, context, settings)
    return twiml.keep_alive(_hold_url(request, context, settings))


def _hold_url(
    request: WebhookRequest, context: ReplyContext, settings: Mapping[str, Any]
) -> str | None:
    """Where a held call comes back to after its pause (flow=hold keeps it ours)."""
    call_id = context.call_id or request.query_value("callId")
    if not call_id:
        return None
    return with_query(webhook_base(request, settings), callId=call_id, flow=HOLD_FLOW)


def _heard_anything(request: WebhookRequest) -> bool:
    """A Gather result with words or digits ends the turn; the next TwiML comes by REST."""
    try:
        params = form_params(request)
    except WebhookInvalid:
        return True
    return bool(params.get("SpeechResult", "").strip() or params.get("Digits", "").strip())


def _speech_reply(
    request: WebhookRequest, context: ReplyContext, settings: Mapping[str, Any]
) -> VoiceResponse:
    speech = context.speech
    assert speech is not None
    voice = twiml.say_voice(speech.voice or preferred_voice(settings.get("tts")))
    if speech.utterance_id:
        # Report when the words were said; the reply to that listens or holds.
        url = spoken_action(
            webhook_base(request, settings),
            call_id=context.call_id or request.query_value("callId"),
            utterance_id=speech.utterance_id,
            listen=speech.listen,
            turn_token=speech.turn_token,
            language=speech.language,
        )
        return twiml.say_then_report(
            speech.text, voice=voice, language=speech.language, spoken_url=url
        )
    if not speech.listen:
        return twiml.say_then_hold(
            speech.text,
            voice=voice,
            language=speech.language,
            redirect_url=_hold_url(request, context, settings),
        )
    action = gather_action(
        webhook_base(request, settings),
        call_id=context.call_id or request.query_value("callId"),
        turn_token=speech.turn_token,
        language=speech.language,
    )
    return twiml.say_then_listen(speech.text, voice=voice, language=speech.language, action=action)


def _listen(
    request: WebhookRequest,
    context: ReplyContext,
    settings: Mapping[str, Any],
    *,
    attempt: int | None = None,
) -> VoiceResponse:
    """The turn of this request's callId/turnToken listens (now, or again).

    Again, after nothing was heard: the attempt counter makes each re-issued action URL (and
    so its signature and replay key) unique; Twilio's empty-result callbacks are otherwise
    identical, and the second one would be taken for a replay, answered empty, and the call
    would end. Now: the words before our <Redirect> were said, and the turn they opened
    listens.
    """
    language = request.query_value("lang")
    action = gather_action(
        webhook_base(request, settings),
        call_id=request.query_value("callId") or context.call_id,
        turn_token=request.query_value("turnToken"),
        language=language,
        attempt=attempt,
    )
    return twiml.listen(action=action, language=language)


def _attempt(request: WebhookRequest) -> int:
    value = request.query_value("attempt") or ""
    return int(value) if value.isdigit() and len(value) < 6 else 1


def gather_action(
    base: str,
    *,
    call_id: str | None,
    turn_token: str | None,
    language: str | None = None,
    attempt: int | None = None,
) -> str:
    """`base` + callId/flow=gather/turnToken (+ lang when not the default, + attempt)."""
    lang = language if language and language != twiml.DEFAULT_LANGUAGE else None
    return with_query(
        base, callId=call_id, flow=GATHER_FLOW, turnToken=turn_token, lang=lang, attempt=attempt
    )


def spoken_action(
    base: str,
    *,
    call_id: str | None,
    utterance_id: str,
    listen: bool,
    turn_token: str | None,
    language: str | None = None,
) -> str:
    """The <Redirect> after our <Say>: `base` + callId/flow=spoken/utteranceId, and what
    comes after the words (listen=1 with the turn's token and language, else hold)."""
    lang = language if listen and language and language != twiml.DEFAULT_LANGUAGE else None
    return with_query(
        base,
        callId=call_id,
        flow=SPOKEN_FLOW,
        utteranceId=utterance_id,
        listen="1" if listen else None,
        turnToken=turn_token if listen else None,
        lang=lang,
    )

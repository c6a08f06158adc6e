"""Telnyx Call Control v2 webhooks -> normalized events, the plugin's mapping fixed.

Envelope `{"data": {"event_type", "id", "occurred_at", "payload": {…}}}`
(docs/carriers.md, "Telnyx: webhooks"). Fixes over the plugin: `direction`/`from`/`to`
are kept, so inbound calls register (plugin issue #58231); transcripts are read from
`payload.transcription_data` (where the SDK's `Transcription` model puts them, not
`payload.transcription`); `client_state` carries the turn token, and the utterance of a
`speak`, whose `call.speak.ended` reports the words said. Unknown event types give no events
and the services answer 200.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from providers.base import AnsweredBy, EventType, NormalizedEvent
from providers.common import json_finite_number
from providers.errors import WebhookInvalid
from providers.telnyx import clientstate

logger = logging.getLogger(__name__)

_DIRECTIONS = {"incoming": "inbound", "outgoing": "outbound"}
_PLAIN = {
    "call.initiated": EventType.INITIATED,
    "call.ringing": EventType.RINGING,
    "call.answered": EventType.ANSWERED,
    "call.bridged": EventType.ACTIVE,
}

# The plugin's Telnyx `hangup_cause` table (docs/plugin-behaviour.md, "End reasons").
END_REASONS: dict[str, str] = {
    "normal_clearing": "completed",
    "normal_unspecified": "completed",
    "originator_cancel": "hangup-bot",
    "call_rejected": "busy",
    "user_busy": "busy",
    "no_answer": "no-answer",
    "no_user_response": "no-answer",
    "destination_out_of_order": "failed",
    "network_out_of_order": "failed",
    "service_unavailable": "failed",
    "recovery_on_timer_expire": "failed",
    "machine_detected": "voicemail",
    "fax_detected": "voicemail",
    "user_hangup": "hangup-user",
    "subscriber_absent": "hangup-user",
}
# Causes the SDK's CallHangup model documents but the plugin's table lacks (it would log
# them as unknown and say "completed"). `timeout` is the dial's `timeout_secs` running out
# before answer (docs/carriers.md, "Telnyx: commands"), i.e. nobody answered; `time_limit`
# is the leg's `time_limit_secs` cap; `not_found` is an unreachable destination.
SDK_END_REASONS: dict[str, str] = {
    "timeout": "no-answer",
    "time_limit": "timeout",
    "not_found": "failed",
    "unspecified": "completed",
}


def end_reason(cause: object) -> str:
    key = str(cause or "").strip().lower()
    reason = END_REASONS.get(key) or SDK_END_REASONS.get(key)
    if reason is None:
        logger.warning("telnyx hangup_cause %r unknown; treating the call as completed", cause)
        return "completed"
    return reason


def parse_events(body: bytes) -> list[NormalizedEvent]:
    try:
        document = json.loads(body or b"")
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise WebhookInvalid("Invalid JSON body") from exc
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict) or not data.get("event_type"):
        return []
    event_type = str(data["event_type"])
    payload = found if isinstance(found := data.get("payload"), dict) else {}
    if clientstate.is_transfer_leg(payload.get("client_state")):
        return []  # the new party of a cold transfer: not a call of ours
    classified = _classify(event_type, payload)
    if classified is None:
        return []
    type_, details = classified
    return [_event(type_, data, payload, details)]


def _event(
    type_: EventType, data: Mapping[str, Any], payload: Mapping[str, Any], details: dict[str, Any]
) -> NormalizedEvent:
    call_id, turn_token, utterance_id = clientstate.decode_all(payload.get("client_state"))
    if type_ == EventType.SPOKEN:
        details = {"utterance_id": utterance_id, **details}
    event_id = _text(data.get("id"))
    return NormalizedEvent(
        type=type_,
        id=event_id or str(uuid.uuid4()),
        call_id=call_id,
        provider_call_id=_text(payload.get("call_control_id")),
        timestamp=_timestamp(data.get("occurred_at")),
        # Telnyx redelivers an event with the same data.id: that id is the event's identity.
        dedupe_key=f"telnyx:{event_id}" if event_id else None,
        turn_token=turn_token,
        direction=_DIRECTIONS.get(str(payload.get("direction") or "").lower()),
        from_number=_text(payload.get("from")),
        to_number=_text(payload.get("to")),
        **details,
    )


def _classify(
    event_type: str, payload: Mapping[str, Any]
) -> tuple[EventType, dict[str, Any]] | None:
    if event_type in _PLAIN:
        return _PLAIN[event_type], {}
    handler = _DETAILED.get(event_type)
    return handler(payload) if handler else None


def _speaking(payload: Mapping[str, Any]) -> tuple[EventType, dict[str, Any]] | None:
    # call.speak.started carries no text; the services already recorded what we said.
    return EventType.SPEAKING, {"text": _text(payload.get("payload")) or ""}


def _spoken(payload: Mapping[str, Any]) -> tuple[EventType, dict[str, Any]] | None:
    """call.speak.ended: the speak finished. `status` (CallSpeakEnded) is `completed` when
    the words were said to the end; `call_hangup` (the call ended first) and
    `cancelled_amd` cut them off. No word-level cut is known: the line keeps its text,
    flagged interrupted."""
    status = _text(payload.get("status"))
    return EventType.SPOKEN, {"interrupted": status not in (None, "completed")}


def _speech(payload: Mapping[str, Any]) -> tuple[EventType, dict[str, Any]] | None:
    data = payload.get("transcription_data")
    data = data if isinstance(data, dict) else {}
    if data.get("transcription_track") == "outbound":
        return None  # our own prompt transcribed (tracks "both"), not the caller
    transcript = data.get("transcript", payload.get("transcription"))
    return EventType.SPEECH, {
        "transcript": transcript if isinstance(transcript, str) else "",
        # Missing is_final means final, as in the plugin (`is_final ?? true`).
        "is_final": data.get("is_final") is not False,
        "confidence": _confidence(data.get("confidence")),
    }


def _dtmf(payload: Mapping[str, Any]) -> tuple[EventType, dict[str, Any]] | None:
    return EventType.DTMF, {"digits": _text(payload.get("digit")) or ""}


def _ended(payload: Mapping[str, Any]) -> tuple[EventType, dict[str, Any]] | None:
    return EventType.ENDED, {"reason": end_reason(payload.get("hangup_cause"))}


# `payload.result` of the machine-detection events (telnyx SDK types
# call_machine_[premium_]detection_ended.py and call_machine_[premium_]greeting_ended.py):
# standard human | machine | not_sure; premium human_residence | human_business | machine |
# silence | fax_detected | not_sure. Silence (nobody spoke) cannot tell a person from a
# machine: unknown.
_VERDICTS = {
    "human": AnsweredBy.HUMAN,
    "human_residence": AnsweredBy.HUMAN,
    "human_business": AnsweredBy.HUMAN,
    "machine": AnsweredBy.MACHINE,
    "fax_detected": AnsweredBy.FAX,
    "not_sure": AnsweredBy.UNKNOWN,
    "silence": AnsweredBy.UNKNOWN,
}
# Greeting ended: standard beep_detected | ended | not_sure, premium beep_detected |
# no_beep_detected. Every one ends the wait: a message left late beats none.
_GREETING_RESULTS = frozenset({"beep_detected", "ended", "not_sure", "no_beep_detected"})


def _machine_verdict(payload: Mapping[str, Any]) -> tuple[EventType, dict[str, Any]] | None:
    result = _text(payload.get("result"))
    if result not in _VERDICTS:
        raise WebhookInvalid("Missing or unknown machine detection result")
    return EventType.MACHINE_DETECTION, {"answered_by": _VERDICTS[result].value}


def _machine_greeting(payload: Mapping[str, Any]) -> tuple[EventType, dict[str, Any]] | None:
    # Only a machine has a greeting that ends: a premium beep before any verdict is one.
    if _text(payload.get("result")) not in _GREETING_RESULTS:
        raise WebhookInvalid("Missing or unknown machine greeting result")
    return EventType.MACHINE_DETECTION, {
        "answered_by": AnsweredBy.MACHINE.value,
        "greeting_ended": True,
    }


_DETAILED: dict[str, Callable[[Mapping[str, Any]], tuple[EventType, dict[str, Any]] | None]] = {
    "call.speak.started": _speaking,
    "call.speak.ended": _spoken,
    "call.transcription": _speech,
    "call.dtmf.received": _dtmf,
    "call.hangup": _ended,
    "call.machine.detection.ended": _machine_verdict,
    "call.machine.premium.detection.ended": _machine_verdict,
    "call.machine.greeting.ended": _machine_greeting,
    "call.machine.premium.greeting.ended": _machine_greeting,
}


def _text(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _confidence(value: object) -> float | None:
    confidence = json_finite_number(value)
    return confidence if confidence is not None and 0 <= confidence <= 1 else None


def _timestamp(value: object) -> datetime | None:
    """ISO 8601 `occurred_at`; an unreadable one is dropped (carrier input never fails us)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

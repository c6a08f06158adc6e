"""Applying normalized carrier events to calls, once each.

docs/plugin-behaviour.md, "Normalized events" and "Inbound calls".
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.db import IntegrityError, transaction

from calls import clock
from calls.config import get_config
from calls.exceptions import CallError
from calls.faults import crash_point
from calls.models import Call, CallEvent, CarrierCommand, TranscriptEntry
from calls.phone import mask_number, to_e164
from calls.runtime import call_webhook_url, get_provider
from calls.selectors import call_find
from calls.services import lifecycle
from calls.services.carrier_commands import (
    HUNG_UP,
    STREAM_FAILED,
    greeting_record_delivered,
    greeting_say,
)
from calls.services.inbound import DEFAULT_GREETING, effective_policy, inbound_screen
from calls.services.operations import operation_settle
from calls.services.outbox import command_owe, outbox_unit
from calls.services.responder import responder_schedule
from calls.services.routes import ROUTE_KEY, number_route_key
from calls.services.sessions import agent_id, session_key_for
from calls.services.speech import InlineReply
from calls.services.stream_plans import stream_plan, streaming_possible
from calls.state import CallState
from providers.base import EventType, NormalizedEvent

logger = logging.getLogger(__name__)

Kind = CarrierCommand.Kind


@dataclass(frozen=True, slots=True)
class EventOutcome:
    call: Call | None
    applied: bool
    rejected: bool = False
    accepted_inbound: bool = False


def event_apply(
    *, provider: str, event: NormalizedEvent, inline: InlineReply | None = None
) -> EventOutcome:
    """Apply one event; duplicates, stale moves and finished calls change nothing.

    `inline` is given when the reply to the current webhook can carry speech. The event
    row, its effects on the call and the commands it owes the carrier commit together
    (calls/services/outbox.py); the commands are sent after that.
    """
    with outbox_unit():
        return _apply(provider, event, inline)


def _apply(provider: str, event: NormalizedEvent, inline: InlineReply | None) -> EventOutcome:
    call = _resolve(provider, event)
    if call is None:
        return _unknown_call(provider, event, inline)
    if call.is_terminal:
        _retry_rejected_hang_up(call)
        return EventOutcome(call, applied=False, rejected=_was_rejected(call))
    if _stale_turn(call, event):
        logger.info("Ignoring speech event with mismatched turn token call=%s", call.public_id)
        return EventOutcome(call, applied=False)
    if not _record(call, event):
        return EventOutcome(call, applied=False)
    _upgrade_provider_call_id(call, event)
    _APPLY[event.type](call, event, inline)
    crash_point("event.applied")
    return EventOutcome(call, applied=True)


def _resolve(provider: str, event: NormalizedEvent) -> Call | None:
    call = call_find(event.call_id, provider=provider)
    if call is None and event.provider_call_id:
        call = call_find(event.provider_call_id, provider=provider)
    return call if call is None or call.provider == provider else None


def _record(call: Call, event: NormalizedEvent) -> bool:
    """Insert the event row; the (call, dedupe key) constraint turns re-delivery into False."""
    try:
        with transaction.atomic():
            CallEvent.objects.create(
                call=call,
                type=event.type,
                payload=event.payload(),
                dedupe_key=event.key[:200],
                created_at=clock.now(),
            )
    except IntegrityError:
        return False
    return True


def _stale_turn(call: Call, event: NormalizedEvent) -> bool:
    # A replayed or late Gather callback of an older turn must not complete this one.
    return (
        event.type == EventType.SPEECH
        and bool(call.turn_token)
        and bool(event.turn_token)
        and event.turn_token != call.turn_token
    )


def _upgrade_provider_call_id(call: Call, event: NormalizedEvent) -> None:
    """Plivo's request UUID -> CallUUID: a call addressed by our callId takes the new id."""
    new_id = event.provider_call_id
    if (
        not new_id
        or new_id in (call.provider_call_id, call.call_id)
        or event.call_id != call.call_id
    ):
        return
    try:
        with transaction.atomic():
            Call.objects.filter(pk=call.pk).update(provider_call_id=new_id)
    except IntegrityError:
        logger.warning("call=%s provider id %s already in use", call.public_id, new_id)
        return
    call.provider_call_id = new_id


Handler = Callable[[Call, NormalizedEvent, InlineReply | None], None]


def _to(state: str) -> Handler:
    def handler(call: Call, event: NormalizedEvent, inline: InlineReply | None) -> None:
        lifecycle.call_transition(call=call, state=state)

    return handler


def _on_answered(call: Call, event: NormalizedEvent, inline: InlineReply | None) -> None:
    if not lifecycle.call_mark_answered(call=call, at=event.timestamp or clock.now()):
        return
    if (call.metadata or {}).get("dtmfSequence"):
        command_owe(call, Kind.PRECONNECT_DTMF)
    # Reply-document carriers (TwiML, Plivo XML) get the stream with the answer and
    # outbound calls with the dial; an inbound call answered by command (Telnyx) starts it
    # by command.
    if inline is None and call.direction == Call.Direction.INBOUND and stream_plan(call):
        command_owe(call, Kind.STREAM_START)
    _greet(call, inline)


def _on_speaking(call: Call, event: NormalizedEvent, inline: InlineReply | None) -> None:
    lifecycle.call_ensure_duration_timer(call=call)
    lifecycle.call_transition(call=call, state=CallState.SPEAKING)


def _on_speech(call: Call, event: NormalizedEvent, inline: InlineReply | None) -> None:
    lifecycle.call_ensure_duration_timer(call=call)
    text = event.transcript.strip()
    if event.is_final and text:
        # Only speech stamped with the open turn's token answers it; token-less speech (a
        # late reply to the greeting) is kept in the transcript but answers no prompt.
        answers = call.turn_token if event.turn_token == call.turn_token else None
        entry = lifecycle.transcript_add(
            call=call, speaker=TranscriptEntry.Speaker.USER, text=text, turn_token=answers
        )
        if answers:
            operation_settle(call=call, turn_token=answers, transcript=text)
        responder_schedule(call=call, entry=entry)
    lifecycle.call_transition(call=call, state=CallState.LISTENING)


def _on_nothing(call: Call, event: NormalizedEvent, inline: InlineReply | None) -> None:
    """silence and DTMF change no state; the event row is the record."""


def _on_ended(call: Call, event: NormalizedEvent, inline: InlineReply | None) -> None:
    lifecycle.call_finalize(call=call, reason=event.reason, ended_at=event.timestamp, record=False)


def _on_error(call: Call, event: NormalizedEvent, inline: InlineReply | None) -> None:
    if not event.retryable:
        lifecycle.metadata_update(call=call, set_={"error": event.error})
        lifecycle.call_finalize(
            call=call, reason=CallState.ERROR, ended_at=event.timestamp, record=False
        )


_APPLY: dict[EventType, Handler] = {
    EventType.INITIATED: _to(CallState.INITIATED),
    EventType.RINGING: _to(CallState.RINGING),
    EventType.ANSWERED: _on_answered,
    EventType.ACTIVE: _to(CallState.ACTIVE),
    EventType.SPEAKING: _on_speaking,
    EventType.SPEECH: _on_speech,
    EventType.SILENCE: _on_nothing,
    EventType.DTMF: _on_nothing,
    EventType.ENDED: _on_ended,
    EventType.ERROR: _on_error,
}


def _greet(call: Call, inline: InlineReply | None) -> None:
    """On answer: the greeting/message goes in this reply, on the stream, or by command."""
    metadata = call.metadata or {}
    message = metadata.get("initialMessage")
    if not message or not call.provider_call_id:
        return
    if metadata.get("initialMessageInline"):
        greeting_record_delivered(call, message)
        return
    if call.mode == Call.Mode.CONVERSATION and _streams_for(call):
        # The greeting waits for the media stream to attach (docs/plugin-behaviour.md,
        # "Conversation calls").
        return
    if inline is None and not call.stream_id:
        command_owe(call, Kind.GREETING)  # a carrier REST command: after commit
        return
    try:
        greeting_say(call, inline=inline)
    except CallError as exc:
        # initialMessage stays, so the next trigger retries it (docs/plugin-behaviour.md,
        # "Notify calls").
        logger.warning("call=%s initial message failed: %s", call.public_id, exc)


def _streams_for(call: Call) -> bool:
    return streaming_possible() and not (call.metadata or {}).get(STREAM_FAILED)


def _unknown_call(
    provider: str, event: NormalizedEvent, inline: InlineReply | None
) -> EventOutcome:
    """A carrier call we don't track: a new inbound call, an externally placed one, or noise.

    An event that ends a call, or one addressed to a callId of ours that no longer exists,
    never creates a row: it would be a ghost (or a phantom live call holding capacity).
    """
    ours = _looks_like_call_id(event.call_id)
    if event.type == EventType.ENDED or ours or not event.provider_call_id:
        logger.info("event %s for unknown call ignored", event.type)
        return EventOutcome(None, applied=False)
    if event.direction == "inbound":
        return _inbound_call(provider, event, inline)
    if event.direction == "outbound":
        return _register_external_outbound(provider, event, inline)
    logger.info("event %s for unknown call ignored", event.type)
    return EventOutcome(None, applied=False)


def _looks_like_call_id(value: str | None) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _inbound_call(
    provider: str, event: NormalizedEvent, inline: InlineReply | None
) -> EventOutcome:
    """A new inbound call: screen it; accepted ones are greeted, rejected ones hung up once."""
    from_number = to_e164(event.from_number or "") or (event.from_number or "")
    to_number = to_e164(event.to_number or "") or (event.to_number or "")
    screen = inbound_screen(from_number=from_number)
    route_key = number_route_key(to_number)
    route = (get_config().data.get("numbers") or {}).get(route_key) or {}
    fields = {
        **_new_call_identity(other_party=from_number, route=route),
        "provider": provider,
        "provider_call_id": event.provider_call_id,
        "direction": Call.Direction.INBOUND,
        "mode": Call.Mode.CONVERSATION,
        "from_number": from_number[:32],
        "to_number": to_number[:32],
    }
    if screen.accepted:
        _, greeting = effective_policy()
        metadata = {
            "initialMessage": route.get("inboundGreeting") or greeting or DEFAULT_GREETING,
            "mode": Call.Mode.CONVERSATION,
        }
        if route_key:
            metadata[ROUTE_KEY] = route_key
        fields.update(state=CallState.RINGING, metadata=metadata)
    else:
        fields.update(
            state=CallState.HANGUP_BOT,
            end_reason=CallState.HANGUP_BOT,
            ended_at=clock.now(),
            metadata={"rejectionReason": "inbound-policy", "screen": screen.reason},
        )
    try:
        with transaction.atomic():
            call = Call.objects.create(**fields)
    except IntegrityError:  # another process registered the same carrier call first
        existing = call_find(event.provider_call_id, provider=provider)
        return EventOutcome(
            existing, applied=False, rejected=bool(existing and _was_rejected(existing))
        )
    _record(call, event)
    if not screen.accepted:
        _retry_rejected_hang_up(call)
        return EventOutcome(call, applied=True, rejected=True)
    logger.info("call=%s inbound from %s accepted", call.public_id, mask_number(from_number))
    if inline is not None or event.type == EventType.ANSWERED:
        # Returning a document answers the call; the greeting rides in it (plugin issues
        # #29101, #32902: greetings never spoken, calls never answered).
        _on_answered(call, event, inline)
    else:
        command_owe(call, Kind.ANSWER)
    return EventOutcome(call, applied=True, accepted_inbound=True)


def _new_call_identity(
    *, other_party: str | None = None, route: dict[str, object] | None = None
) -> dict[str, object]:
    """A callId, the webhook URL for later commands and the session key.

    Inbound calls need the URL too (plugin PR #29121: the <Say> fallback had none).
    """
    public_id = uuid.uuid4()
    return {
        "public_id": public_id,
        "webhook_url": call_webhook_url(public_id),
        "session_key": session_key_for(
            call_id=public_id, other_party=other_party, agent=agent_id(route)
        ),
    }


def _was_rejected(call: Call) -> bool:
    return (call.metadata or {}).get("rejectionReason") == "inbound-policy"


def _retry_rejected_hang_up(call: Call) -> None:
    """Hang up a rejected inbound call exactly once; a re-delivery retries a failed attempt."""
    if not _was_rejected(call) or (call.metadata or {}).get(HUNG_UP):
        return
    if get_provider().rejects_in_reply:
        # The webhook reply itself refuses the call (<Reject/>); no REST hang-up needed.
        lifecycle.metadata_update(call=call, set_={HUNG_UP: True})
        return
    command_owe(call, Kind.REJECT_HANG_UP, retry_now=True)


def _register_external_outbound(
    provider: str, event: NormalizedEvent, inline: InlineReply | None
) -> EventOutcome:
    """An outbound call placed outside voicecall against our webhook: tracked, no policy."""
    try:
        with transaction.atomic():
            call = Call.objects.create(
                **_new_call_identity(other_party=event.to_number),
                provider=provider,
                provider_call_id=event.provider_call_id,
                direction=Call.Direction.OUTBOUND,
                mode=get_config().default_mode,
                state=CallState.INITIATED,
                from_number=(to_e164(event.from_number or "") or "")[:32],
                to_number=(to_e164(event.to_number or "") or "")[:32],
                metadata={"external": True},
            )
    except IntegrityError:
        return EventOutcome(call_find(event.provider_call_id, provider=provider), applied=False)
    _record(call, event)
    _APPLY[event.type](call, event, inline)
    return EventOutcome(call, applied=True)

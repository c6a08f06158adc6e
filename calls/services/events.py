"""Applying normalized carrier events to calls (reference §3.3), once each."""
from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction

from calls import clock
from calls.config import get_config
from calls.exceptions import CallError
from calls.models import Call, CallEvent, TranscriptEntry
from calls.phone import mask_number, to_e164
from calls.runtime import call_webhook_url, get_provider
from calls.selectors import call_find
from calls.services import lifecycle
from calls.services.inbound import DEFAULT_GREETING, effective_policy, inbound_screen
from calls.services.lifecycle import call_target
from calls.services.routes import ROUTE_KEY, number_route_key
from calls.services.sessions import agent_id, session_key_for
from calls.services.responder import responder_schedule
from calls.services.speech import InlineReply, speak
from calls.state import CallState
from providers.base import EventType, NormalizedEvent
from providers.errors import ProviderError

logger = logging.getLogger(__name__)

# metadata flag: the carrier refused to start this call's media stream.
STREAM_FAILED = "streamFailed"
# About 150 words a minute, the pace of carrier and neural TTS voices.
SPOKEN_CHARS_PER_SECOND = 15

# metadata flag: an accepted inbound call whose answer command failed; the sweep retries it.
ANSWER_PENDING = "answerPending"


@dataclass(frozen=True, slots=True)
class EventOutcome:
    call: Call | None
    applied: bool
    rejected: bool = False
    accepted_inbound: bool = False


def event_apply(*, provider: str, event: NormalizedEvent,
                inline: InlineReply | None = None) -> EventOutcome:
    """Apply one event; duplicates, stale moves and finished calls change nothing.

    `inline` is given when the reply to the current webhook can carry speech.
    """
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
            CallEvent.objects.create(call=call, type=event.type, payload=event.payload(),
                                     dedupe_key=event.key[:200], created_at=clock.now())
    except IntegrityError:
        return False
    return True


def _stale_turn(call: Call, event: NormalizedEvent) -> bool:
    # A replayed or late Gather callback of an older turn must not complete this one.
    return (event.type == EventType.SPEECH and bool(call.turn_token)
            and bool(event.turn_token) and event.turn_token != call.turn_token)


def _upgrade_provider_call_id(call: Call, event: NormalizedEvent) -> None:
    """Plivo's request UUID -> CallUUID: a call addressed by our callId takes the new id."""
    new_id = event.provider_call_id
    if (not new_id or new_id in (call.provider_call_id, call.call_id)
            or event.call_id != call.call_id):
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
    if lifecycle.call_mark_answered(call=call, at=event.timestamp or clock.now()):
        _send_preconnect_dtmf(call)
        if inline is None and call.direction == Call.Direction.INBOUND:
            _start_stream(call)
        speak_initial_message(call, inline=inline)


def _start_stream(call: Call) -> None:
    """Connect an answered inbound call's media stream by carrier command (Telnyx).

    Reply-document carriers (TwiML, Plivo XML) got theirs with the answer and outbound calls
    with the dial; for them start_stream does nothing.
    """
    from calls.services.streams import stream_plan  # streams applies events too

    plan = stream_plan(call)
    if plan is None:
        return
    try:
        get_provider().start_stream(call_target(call, stream=plan))
    except ProviderError as exc:
        # Not a silent call: the greeting and turns fall back to the carrier's own
        # speak/transcription commands.
        logger.warning("call=%s provider=%s stream start failed, speaking by command: %s",
                       call.public_id, call.provider, exc)
        lifecycle.metadata_update(call=call, set_={STREAM_FAILED: True})


def _send_preconnect_dtmf(call: Call) -> None:
    """Digits the dial request could not carry go out first thing on answer (never dropped, #152577)."""
    digits = (call.metadata or {}).get("dtmfSequence")
    if not digits:
        return
    lifecycle.metadata_update(call=call, delete=("dtmfSequence",))
    try:
        get_provider().send_dtmf(call_target(call), digits)
    except ProviderError as exc:
        logger.warning("call=%s pre-connect DTMF failed: %s", call.public_id, exc)
        lifecycle.metadata_update(call=call, set_={"dtmfError": str(exc)[:200]})


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
        entry = lifecycle.transcript_add(call=call, speaker=TranscriptEntry.Speaker.USER,
                                         text=text, turn_token=answers)
        responder_schedule(call=call, entry=entry)
    lifecycle.call_transition(call=call, state=CallState.LISTENING)


def _on_nothing(call: Call, event: NormalizedEvent, inline: InlineReply | None) -> None:
    """silence and DTMF change no state; the event row is the record."""


def _on_ended(call: Call, event: NormalizedEvent, inline: InlineReply | None) -> None:
    lifecycle.call_finalize(call=call, reason=event.reason, ended_at=event.timestamp,
                            record=False)


def _on_error(call: Call, event: NormalizedEvent, inline: InlineReply | None) -> None:
    if not event.retryable:
        lifecycle.metadata_update(call=call, set_={"error": event.error})
        lifecycle.call_finalize(call=call, reason=CallState.ERROR, ended_at=event.timestamp,
                                record=False)


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


def speak_initial_message(call: Call, *, inline: InlineReply | None = None) -> None:
    """On answer: speak the greeting/message; notify calls then hang up after the delay."""
    metadata = call.metadata or {}
    message = metadata.get("initialMessage")
    if not message or not call.provider_call_id:
        return
    if metadata.get("initialMessageInline"):
        # The carrier got the message with the dial request (and hangs up itself):
        # record it, never speak it twice (reference §1.2, PR #29121).
        lifecycle.transcript_add(call=call, speaker=TranscriptEntry.Speaker.BOT, text=message)
        lifecycle.metadata_update(call=call, delete=("initialMessage",))
        return
    conversation = call.mode == Call.Mode.CONVERSATION
    if conversation and _streams_for(call):
        return  # the greeting waits for the media stream to attach (reference §1.3)
    try:
        speak(call, message, listen_after=conversation, inline=inline)
    except CallError as exc:
        # initialMessage stays, so the next trigger retries it (reference §1.2 step 5).
        logger.warning("call=%s initial message failed: %s", call.public_id, exc)
        return
    lifecycle.metadata_update(call=call, delete=("initialMessage",))
    if conversation:
        lifecycle.call_transition(call=call, state=CallState.LISTENING)
        return
    # The delay counts from the end of the message, not from sending it: carriers that
    # speak by command (Telnyx, Plivo transfer) would otherwise cut a long message off.
    speaking = timedelta(seconds=len(message) / SPOKEN_CHARS_PER_SECOND)
    due = clock.now() + speaking + timedelta(seconds=get_config().notify_hangup_delay_sec)
    Call.objects.filter(pk=call.pk, notify_hangup_at__isnull=True).update(notify_hangup_at=due)


def _streams_for(call: Call) -> bool:
    from calls.services.streams import streaming_possible  # streams applies events too

    return streaming_possible() and not (call.metadata or {}).get(STREAM_FAILED)


def _unknown_call(provider: str, event: NormalizedEvent,
                  inline: InlineReply | None) -> EventOutcome:
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


def _inbound_call(provider: str, event: NormalizedEvent,
                  inline: InlineReply | None) -> EventOutcome:
    """A new inbound call: screen it; accepted ones are greeted, rejected ones hung up once."""
    from_number = to_e164(event.from_number or "") or (event.from_number or "")
    to_number = to_e164(event.to_number or "") or (event.to_number or "")
    screen = inbound_screen(from_number=from_number)
    route_key = number_route_key(to_number)
    route = (get_config().data.get("numbers") or {}).get(route_key) or {}
    fields = {
        **_new_call_identity(other_party=from_number, route=route),
        "provider": provider, "provider_call_id": event.provider_call_id,
        "direction": Call.Direction.INBOUND, "mode": Call.Mode.CONVERSATION,
        "from_number": from_number[:32], "to_number": to_number[:32],
    }
    if screen.accepted:
        _, greeting = effective_policy()
        metadata = {"initialMessage": route.get("inboundGreeting") or greeting
                    or DEFAULT_GREETING, "mode": Call.Mode.CONVERSATION}
        if route_key:
            metadata[ROUTE_KEY] = route_key
        fields.update(state=CallState.RINGING, metadata=metadata)
    else:
        fields.update(state=CallState.HANGUP_BOT, end_reason=CallState.HANGUP_BOT,
                      ended_at=clock.now(),
                      metadata={"rejectionReason": "inbound-policy", "screen": screen.reason})
    try:
        with transaction.atomic():
            call = Call.objects.create(**fields)
    except IntegrityError:  # another process registered the same carrier call first
        existing = call_find(event.provider_call_id, provider=provider)
        return EventOutcome(existing, applied=False,
                            rejected=bool(existing and _was_rejected(existing)))
    _record(call, event)
    if not screen.accepted:
        _retry_rejected_hang_up(call)
        return EventOutcome(call, applied=True, rejected=True)
    logger.info("call=%s inbound from %s accepted", call.public_id, mask_number(from_number))
    _answer_inbound(call, event, inline)
    return EventOutcome(call, applied=True, accepted_inbound=True)


def _new_call_identity(*, other_party: str | None = None,
                       route: dict[str, object] | None = None) -> dict[str, object]:
    """A callId, the webhook URL for later commands (#29121) and the session key."""
    public_id = uuid.uuid4()
    return {"public_id": public_id, "webhook_url": call_webhook_url(public_id),
            "session_key": session_key_for(call_id=public_id, other_party=other_party,
                                           agent=agent_id(route))}


def _answer_inbound(call: Call, event: NormalizedEvent, inline: InlineReply | None) -> None:
    """Answer an accepted caller: by this very reply (TwiML/XML) or by a carrier command."""
    if inline is not None or event.type == EventType.ANSWERED:
        # Returning a document answers the call; the greeting rides in it (#29101, #32902).
        _on_answered(call, event, inline)
        return
    inbound_answer(call)


def inbound_answer(call: Call) -> bool:
    """Send the carrier's answer command; a failure is retried by the timer sweep."""
    try:
        get_provider().answer_call(call_target(call))
    except ProviderError as exc:
        logger.warning("call=%s answer failed (will retry): %s", call.public_id, exc)
        lifecycle.metadata_update(call=call, set_={ANSWER_PENDING: True})
        return False
    if (call.metadata or {}).get(ANSWER_PENDING):
        lifecycle.metadata_update(call=call, delete=(ANSWER_PENDING,))
    return True


def _was_rejected(call: Call) -> bool:
    return (call.metadata or {}).get("rejectionReason") == "inbound-policy"


def _retry_rejected_hang_up(call: Call) -> None:
    """Hang up a rejected inbound call exactly once; a failed attempt may be retried later."""
    if not _was_rejected(call) or (call.metadata or {}).get("hungUp"):
        return
    provider = get_provider()
    if provider.rejects_in_reply:
        # The webhook reply itself refuses the call (<Reject/>); no REST hang-up needed.
        lifecycle.metadata_update(call=call, set_={"hungUp": True})
        return
    if not Call.objects.filter(pk=call.pk, hangup_claimed_at__isnull=True).update(
            hangup_claimed_at=clock.now()):
        return
    try:
        provider.hang_up(call_target(call))
    except ProviderError as exc:
        logger.warning("call=%s rejected-call hang-up failed: %s", call.public_id, exc)
        Call.objects.filter(pk=call.pk).update(hangup_claimed_at=None)
        return
    lifecycle.metadata_update(call=call, set_={"hungUp": True})


def _register_external_outbound(provider: str, event: NormalizedEvent,
                                inline: InlineReply | None) -> EventOutcome:
    """An outbound call placed outside voicecall against our webhook: tracked, no policy."""
    try:
        with transaction.atomic():
            call = Call.objects.create(
                **_new_call_identity(other_party=event.to_number),
                provider=provider, provider_call_id=event.provider_call_id,
                direction=Call.Direction.OUTBOUND, mode=get_config().default_mode,
                state=CallState.INITIATED,
                from_number=(to_e164(event.from_number or "") or "")[:32],
                to_number=(to_e164(event.to_number or "") or "")[:32],
                metadata={"external": True})
    except IntegrityError:
        return EventOutcome(call_find(event.provider_call_id, provider=provider), applied=False)
    _record(call, event)
    _APPLY[event.type](call, event, inline)
    return EventOutcome(call, applied=True)

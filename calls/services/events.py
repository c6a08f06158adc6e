"""Applying normalized carrier events to calls, once each.

docs/plugin-behaviour.md, "Normalized events" and "Inbound calls".
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from django.db import IntegrityError, transaction

from calls.call_metadata import ERROR, EXTERNAL
from calls.config import get_config
from calls.faults import crash_point
from calls.models import Call, TranscriptEntry
from calls.phone import to_e164
from calls.selectors import call_find
from calls.services import lifecycle
from calls.services.answering import call_answered
from calls.services.auto_reply import responder_schedule
from calls.services.inbound import (
    inbound_call_arrive,
    inbound_rejection_hang_up,
    inbound_was_rejected,
)
from calls.services.lifecycle import EventOutcome
from calls.services.live import live_publish
from calls.services.machine_verdicts import machine_verdict_apply
from calls.services.outbox import outbox_unit
from calls.services.speech import InlineReply, utterance_finished
from calls.services.turn_records import turn_answered, turn_caller_spoke
from calls.services.turns import operation_settle
from calls.state import CallState
from providers.base import EventType, NormalizedEvent

logger = logging.getLogger(__name__)


def event_apply(
    *,
    provider: str,
    event: NormalizedEvent,
    inline: InlineReply | None = None,
    call: Call | None = None,
) -> EventOutcome:
    """Apply one event; duplicates, stale moves and finished calls change nothing.

    `inline` is given when the reply to the current webhook can carry speech. `call`: the
    event's call as its caller just read it (a stream's own transcript), saving the lookup.
    The event row, its effects on the call and the commands it owes the carrier commit
    together (calls/services/outbox.py); the commands are sent after that.
    """
    with outbox_unit():
        return _apply(provider, event, inline, call)


def _apply(
    provider: str, event: NormalizedEvent, inline: InlineReply | None, known: Call | None
) -> EventOutcome:
    call = known or _resolve(provider, event)
    if call is None:
        return _unknown_call(provider, event, inline)
    if call.is_terminal:
        inbound_rejection_hang_up(call)
        return EventOutcome(call, applied=False, rejected=inbound_was_rejected(call))
    if _stale_turn(call, event):
        logger.info("Ignoring speech event with mismatched turn token call=%s", call.public_id)
        return EventOutcome(call, applied=False)
    if not lifecycle.event_record(call, event):
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
            turn_answered(call=call, at=entry.created_at)
            operation_settle(call=call, turn_token=answers, transcript=text)
        else:
            turn_caller_spoke(
                call=call,
                entry=entry,
                stopped_at=event.speech_stopped_at,
                endpointed_at=event.endpointed_at,
            )
        responder_schedule(call=call, entry=entry, said=text)
    lifecycle.call_transition(call=call, state=CallState.LISTENING)


def _on_nothing(call: Call, event: NormalizedEvent, inline: InlineReply | None) -> None:
    """silence and DTMF change no state; the event row is the record."""


def _on_ended(call: Call, event: NormalizedEvent, inline: InlineReply | None) -> None:
    lifecycle.call_finalize(call=call, reason=event.reason, ended_at=event.timestamp, record=False)


def _on_error(call: Call, event: NormalizedEvent, inline: InlineReply | None) -> None:
    if not event.retryable:
        lifecycle.metadata_update(call=call, set_={ERROR: event.error})
        lifecycle.call_finalize(
            call=call, reason=CallState.ERROR, ended_at=event.timestamp, record=False
        )


_APPLY: dict[EventType, Handler] = {
    EventType.INITIATED: _to(CallState.INITIATED),
    EventType.RINGING: _to(CallState.RINGING),
    EventType.ANSWERED: call_answered,
    EventType.ACTIVE: _to(CallState.ACTIVE),
    EventType.SPEAKING: _on_speaking,
    EventType.SPEECH: _on_speech,
    EventType.SILENCE: _on_nothing,
    EventType.DTMF: _on_nothing,
    EventType.ENDED: _on_ended,
    EventType.ERROR: _on_error,
    EventType.SPOKEN: utterance_finished,
    EventType.MACHINE_DETECTION: machine_verdict_apply,
}


def _unknown_call(
    provider: str, event: NormalizedEvent, inline: InlineReply | None
) -> EventOutcome:
    """A carrier call we don't track: a new inbound call, an externally placed one, or noise.

    An event that ends a call or reports words said, or one addressed to a callId of ours
    that no longer exists, never creates a row: it would be a ghost (or a phantom live call
    holding capacity).
    """
    if not _may_open_call(event):
        logger.info("event %s for unknown call ignored", event.type)
        return EventOutcome(None, applied=False)
    if event.direction == "inbound":
        return inbound_call_arrive(provider, event, inline)
    return _register_external_outbound(provider, event, inline)


# An end, words said, or a machine verdict for a call we don't track: never a new call.
_NEVER_OPENS = frozenset({EventType.ENDED, EventType.SPOKEN, EventType.MACHINE_DETECTION})


def _may_open_call(event: NormalizedEvent) -> bool:
    """Whether this event, for a call we don't track, would register one."""
    ours = _looks_like_call_id(event.call_id)
    # Words said on a call we don't track were not ours either: never a new call.
    if event.type in _NEVER_OPENS or ours or not event.provider_call_id:
        return False
    return event.direction in ("inbound", "outbound")


def event_opens_call(*, provider: str, event: NormalizedEvent) -> bool:
    """Whether applying `event` would register a call not tracked yet (a read, no writes).

    A draining process refuses such webhooks and applies every other one
    (docs/architecture.md, "Graceful drain").
    """
    return _may_open_call(event) and _resolve(provider, event) is None


def _looks_like_call_id(value: str | None) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _register_external_outbound(
    provider: str, event: NormalizedEvent, inline: InlineReply | None
) -> EventOutcome:
    """An outbound call placed outside voicecall against our webhook: tracked, no policy."""
    try:
        with transaction.atomic():
            call = Call.objects.create(
                **lifecycle.call_identity_new(other_party=event.to_number),
                provider=provider,
                provider_call_id=event.provider_call_id,
                direction=Call.Direction.OUTBOUND,
                mode=get_config().default_mode,
                state=CallState.INITIATED,
                from_number=(to_e164(event.from_number or "") or "")[:32],
                to_number=(to_e164(event.to_number or "") or "")[:32],
                metadata={EXTERNAL: True},
            )
    except IntegrityError:
        return EventOutcome(call_find(event.provider_call_id, provider=provider), applied=False)
    live_publish(call_id=call.call_id)
    lifecycle.event_record(call, event)
    _APPLY[event.type](call, event, inline)
    return EventOutcome(call, applied=True)

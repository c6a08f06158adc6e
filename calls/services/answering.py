"""What an answered call gets: pre-connect digits, its stream started, the greeting.

Shared by carrier answer events and by inbound calls answered in the reply to their
first webhook. Carrier REST commands are only owed here (the outbox sends them after
the event's transaction commits); speech that rides in the reply document is said now.
"""

from __future__ import annotations

import logging

from calls import clock
from calls.call_metadata import (
    DTMF_SEQUENCE,
    INITIAL_MESSAGE,
    INITIAL_MESSAGE_INLINE,
    STREAM_FAILED,
)
from calls.exceptions import (
    CallError,
)
from calls.models import Call, CarrierCommand
from calls.services import lifecycle
from calls.services.carrier_commands import greeting_record_delivered, greeting_say
from calls.services.machine_detection import greeting_waits_now, verdict_deadline
from calls.services.outbox import command_owe
from calls.services.speech import InlineReply
from calls.services.stream_plans import stream_plan, streaming_possible
from providers.base import NormalizedEvent

Kind = CarrierCommand.Kind

logger = logging.getLogger(__name__)


def call_answered(call: Call, event: NormalizedEvent, inline: InlineReply | None) -> None:
    if not lifecycle.call_mark_answered(call=call, at=event.timestamp or clock.now()):
        return
    if call.meta.get(DTMF_SEQUENCE):
        command_owe(call, Kind.PRECONNECT_DTMF)
    # Reply-document carriers (TwiML, Plivo XML) get the stream with the answer and
    # outbound calls with the dial; an inbound call answered by command (Telnyx) starts it
    # by command.
    if inline is None and call.direction == Call.Direction.INBOUND and stream_plan(call):
        command_owe(call, Kind.STREAM_START)
    _greet(call, inline)


def greeting_release(call: Call, inline: InlineReply | None) -> None:
    """The verdict a held greeting waited for came (calls/services/machine_verdicts.py).

    Before the answer, the answer greets; a stream that attached meanwhile has the
    greeting said on it by command, after this transaction.
    """
    if call.answered_at is None or not call.meta.get(INITIAL_MESSAGE):
        return
    if call.stream_id:
        command_owe(call, Kind.GREETING, retry_now=True)
        return
    _greet(call, inline, now=True)


def _greet(call: Call, inline: InlineReply | None, *, now: bool = False) -> None:
    """On answer: the greeting/message goes in this reply, on the stream, or by command.

    `now`: a greeting owed ahead for a verdict's deadline (Plivo) goes at once instead.
    """
    metadata = call.meta
    message = metadata.get(INITIAL_MESSAGE)
    if not message or not call.provider_call_id:
        return
    if greeting_waits_now(call):
        # Said when the answering-machine verdict lets it (greeting_release); where the
        # carrier may never give one, owed for its deadline.
        if deadline := verdict_deadline(call):
            command_owe(call, Kind.GREETING, due_at=deadline)
        return
    if metadata.get(INITIAL_MESSAGE_INLINE):
        greeting_record_delivered(call, message)
        return
    if call.mode == Call.Mode.CONVERSATION and _streams_for(call):
        # The greeting waits for the media stream to attach (docs/plugin-behaviour.md,
        # "Conversation calls").
        return
    if inline is None and not call.stream_id:
        command_owe(call, Kind.GREETING, retry_now=now)  # a carrier REST command: after commit
        return
    try:
        greeting_say(call, inline=inline)
    except CallError as exc:
        # initialMessage stays, so the next trigger retries it (docs/plugin-behaviour.md,
        # "Notify calls").
        logger.warning("call=%s initial message failed: %s", call.public_id, exc)


def _streams_for(call: Call) -> bool:
    return streaming_possible() and not call.meta.get(STREAM_FAILED)

"""Applying the carrier's answering-machine verdict to a call, once.

The first verdict is recorded (`answeredBy`, `machineDetectionMs`); then the mode the call
was dialled with decides (docs/carriers.md, "Answering-machine detection"):

- a person, or a carrier that could not tell: a held greeting is said; nothing else changes;
- a machine with `detect`: only the record (a held conversation greeting stays unsaid);
- a machine with `hangup`, or a fax: the call ends `voicemail` and the carrier hangs up;
- a machine with `leaveMessage`: at the end of its greeting (the beep) the message is said,
  then the call hangs up and ends `voicemail`. A conversation call whose audio streams has
  no carrier speech to leave it with: it is hung up as with `hangup`.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction

from calls import clock
from calls.call_metadata import INITIAL_MESSAGE, VOICEMAIL_MESSAGE
from calls.carrier import get_provider
from calls.models import Call, CarrierCommand
from calls.services import lifecycle
from calls.services.answering import greeting_release
from calls.services.carrier_commands import greeting_say
from calls.services.machine_detection import MACHINES, RELEASING, call_mode, holds_greeting
from calls.services.outbox import command_owe
from calls.services.speech import InlineReply
from calls.services.stream_plans import streaming_possible
from calls.state import CallState
from providers.base import AnsweredBy, MachineDetection, NormalizedEvent

logger = logging.getLogger(__name__)

# machine_detection_ms is a PositiveIntegerField: anything past this is not a real wait.
_MAX_DETECTION_MS = 2**31 - 1


def machine_verdict_apply(call: Call, event: NormalizedEvent, inline: InlineReply | None) -> None:
    """`call.machine_detection`: record the first verdict, then act by the call's mode."""
    _lock_and_read(call)
    _record(call, event)
    mode = call_mode(call)
    if mode == MachineDetection.OFF or call.is_terminal:
        return
    if call.answered_by in RELEASING:
        if holds_greeting(call):
            greeting_release(call, inline)
        return
    if call.answered_by not in MACHINES or mode == MachineDetection.DETECT:
        return
    if (
        mode == MachineDetection.HANGUP
        or call.answered_by == AnsweredBy.FAX
        or (call.mode == Call.Mode.CONVERSATION and streaming_possible())
    ):
        _hang_up(call)
        return
    if get_provider().machine_greeting_end and not event.greeting_ended:
        return  # the message waits for the end of the machine's greeting (the beep)
    _leave_message(call, inline)


def _lock_and_read(call: Call) -> None:
    """Hold the row and read what an answer or a stream committed meanwhile: the answer and
    a stream attaching check the verdict after their own write (greeting_waits_now), so
    whichever commits second sees the other, and the held greeting is never left unsaid."""
    row = (
        Call.objects.select_for_update()
        .only(
            "state", "answered_at", "answered_by", "machine_detection_ms", "stream_id", "metadata"
        )
        .get(pk=call.pk)
    )
    call.state, call.answered_at, call.stream_id = row.state, row.answered_at, row.stream_id
    call.metadata = row.metadata  # the greeting may have been said meanwhile
    call.answered_by, call.machine_detection_ms = row.answered_by, row.machine_detection_ms


def _record(call: Call, event: NormalizedEvent) -> None:
    """The first verdict wins; a later one (a greeting's end after the verdict, a
    re-delivery under another id) only reads it back."""
    verdict = str(event.answered_by if event.answered_by in AnsweredBy else AnsweredBy.UNKNOWN)
    waited = event.detection_ms
    if waited is None and call.answered_at is not None:
        at = lifecycle.plausible_time(event.timestamp)
        waited = int((at - call.answered_at) / timedelta(milliseconds=1))
    if waited is not None and not 0 <= waited <= _MAX_DETECTION_MS:
        waited = None  # stamped before the answer, or absurd: no honest figure
    changed = Call.objects.filter(pk=call.pk, answered_by="").update(
        answered_by=verdict, machine_detection_ms=waited, updated_at=clock.now()
    )
    if changed:
        call.answered_by, call.machine_detection_ms = verdict, waited
        logger.info("call=%s provider=%s answered by %s", call.public_id, call.provider, verdict)


def _hang_up(call: Call) -> None:
    """End the call as voicemail; the carrier hang-up goes out after the commit, once."""
    if lifecycle.call_finalize(call=call, reason=CallState.VOICEMAIL):
        command_owe(call, CarrierCommand.Kind.REJECT_HANG_UP)


def _leave_message(call: Call, inline: InlineReply | None) -> None:
    """Say the message on the machine once (a second greeting-end report finds it taken)."""
    with transaction.atomic():
        row = Call.objects.select_for_update().only("metadata").get(pk=call.pk)
        if VOICEMAIL_MESSAGE not in row.meta:
            return  # left already
        message = row.meta[VOICEMAIL_MESSAGE]
        lifecycle.metadata_update(
            call=call,
            set_={INITIAL_MESSAGE: message} if message else {},
            delete=(VOICEMAIL_MESSAGE,),
        )
    if not message:
        _hang_up(call)  # nothing to leave
        return
    logger.info("call=%s provider=%s leaving the message", call.public_id, call.provider)
    if inline is not None:
        greeting_say(call, inline=inline)
    else:
        # Again if a deadline already had the greeting said (Plivo): this time after the beep.
        command_owe(call, CarrierCommand.Kind.GREETING, again=True)

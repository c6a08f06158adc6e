"""What each owed carrier command does, and what is left to do when it can't be done.

Applying an event only *records* that the carrier must be told something (an inbound
answer, a rejected caller's hang-up, pre-connect digits, a stream start, the greeting);
calls/services/outbox.py sends it after the event's transaction commits and retries it.
Each sender here does the I/O and then the bookkeeping that says it happened; each
give-up records why it didn't and names the commands owed instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from calls import clock
from calls.call_metadata import DTMF_ERROR, DTMF_SEQUENCE, HUNG_UP, INITIAL_MESSAGE, STREAM_FAILED
from calls.carrier import get_provider
from calls.config import get_config
from calls.models import Call, CarrierCommand, TranscriptEntry
from calls.services import lifecycle
from calls.services.machine_detection import greeting_withheld, leaves_message
from calls.services.speech import InlineReply, speak
from calls.services.stream_plans import stream_plan, streaming_possible
from calls.state import CallState

logger = logging.getLogger(__name__)

Kind = CarrierCommand.Kind

# A notify call hangs up notifyHangupDelaySec after its message was heard, as the carrier
# reports it (calls/services/speech.py). A carrier that never reports it (its callback is
# lost, our webhook unreachable) still has the call ended this long after the message was
# sent: far longer than any message a carrier takes (3000-4000 characters, a few minutes).
UNHEARD_MESSAGE_DEADLINE = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class CommandSpec:
    send: Callable[[Call, str], None]  # (call, command key); raises ProviderError/CallError
    give_up: Callable[[Call, str], tuple[str, ...]]  # (call, error) -> kinds owed instead
    attempts: int
    # Retry any failure, not only those the carrier calls transient: an unanswered or
    # un-hung-up caller is worse than one more request.
    retry_any: bool = False


def _answer(call: Call, key: str) -> None:
    if call.is_terminal or call.state != CallState.RINGING:
        return  # answered meanwhile (its event came), or gone: nothing to answer
    get_provider().answer_call(lifecycle.call_target(call, command_key=key))


def _answer_give_up(call: Call, error: str) -> tuple[str, ...]:
    logger.warning(
        "call=%s answer failed for good (the ring timeout ends it): %s", call.public_id, error
    )
    return ()


def _reject_hang_up(call: Call, key: str) -> None:
    # The one "hang this ended call up at the carrier, once" command: a refused inbound
    # caller, and a call an answering machine answered (calls/services/machine_verdicts.py).
    if call.meta.get(HUNG_UP):
        return
    get_provider().hang_up(lifecycle.call_target(call, command_key=key))
    lifecycle.metadata_update(call=call, set_={HUNG_UP: True})


def _reject_give_up(call: Call, error: str) -> tuple[str, ...]:
    logger.warning("call=%s rejected-call hang-up failed: %s", call.public_id, error)
    return ()


def _preconnect_dtmf(call: Call, key: str) -> None:
    """Digits the dial request could not carry go out first thing on answer.

    The plugin dropped them silently (plugin issue #152577).
    """
    digits = call.meta.get(DTMF_SEQUENCE)
    if not digits or call.is_terminal:
        return
    get_provider().send_dtmf(lifecycle.call_target(call, command_key=key), digits)
    lifecycle.metadata_update(call=call, delete=(DTMF_SEQUENCE,))


def _dtmf_give_up(call: Call, error: str) -> tuple[str, ...]:
    logger.warning("call=%s pre-connect DTMF failed: %s", call.public_id, error)
    lifecycle.metadata_update(call=call, set_={DTMF_ERROR: error[:200]}, delete=(DTMF_SEQUENCE,))
    return ()


def _stream_start(call: Call, key: str) -> None:
    """Connect an answered inbound call's media stream by carrier command (Telnyx)."""
    plan = stream_plan(call, command_key=key)
    if plan is None:
        return
    get_provider().start_stream(lifecycle.call_target(call, stream=plan, command_key=key))


def _stream_give_up(call: Call, error: str) -> tuple[str, ...]:
    # Not a silent call: the greeting and turns fall back to the carrier's own
    # speak/transcription commands.
    logger.warning(
        "call=%s provider=%s stream start failed, speaking by command: %s",
        call.public_id,
        call.provider,
        error,
    )
    lifecycle.metadata_update(call=call, set_={STREAM_FAILED: True})
    return (Kind.GREETING,)


def _greeting(call: Call, key: str) -> None:
    # Owed ahead (an answering-machine verdict's deadline): by now a machine may have
    # answered, or the call's stream, not carrier speech, is where the greeting belongs.
    if call.is_terminal or greeting_withheld(call) or _stream_expected(call):
        return
    greeting_say(call, command_key=key)


def _stream_expected(call: Call) -> bool:
    """A conversation call whose media stream has not attached yet and has not failed:
    the stream says the greeting when it attaches (calls/services/streams.py)."""
    return (
        call.mode == Call.Mode.CONVERSATION
        and not call.stream_id
        and not call.meta.get(STREAM_FAILED)
        and streaming_possible()
    )


def _greeting_give_up(call: Call, error: str) -> tuple[str, ...]:
    # initialMessage stays on the row: a stream attaching later still says it.
    logger.warning("call=%s initial message failed: %s", call.public_id, error)
    return ()


COMMANDS: dict[str, CommandSpec] = {
    Kind.ANSWER: CommandSpec(_answer, _answer_give_up, attempts=6, retry_any=True),
    Kind.REJECT_HANG_UP: CommandSpec(_reject_hang_up, _reject_give_up, attempts=6, retry_any=True),
    Kind.PRECONNECT_DTMF: CommandSpec(_preconnect_dtmf, _dtmf_give_up, attempts=3),
    Kind.STREAM_START: CommandSpec(_stream_start, _stream_give_up, attempts=3),
    Kind.GREETING: CommandSpec(_greeting, _greeting_give_up, attempts=3),
}


def greeting_say(
    call: Call, *, inline: InlineReply | None = None, command_key: str | None = None
) -> None:
    """Say the owed initial message (in the reply document or by command), then follow up.

    Conversation calls listen afterwards; notify calls get their hang-up deadline. Raises
    CallError when the carrier refused; initialMessage then stays on the row.
    """
    message = call.meta.get(INITIAL_MESSAGE)
    if not message:
        return
    # A message left on an answering machine is said like a notify message, whatever the
    # call's mode; where the carrier cannot report the beep, its document waits for it.
    voicemail = leaves_message(call)
    conversation = call.mode == Call.Mode.CONVERSATION and not voicemail
    speak(
        call,
        message,
        listen_after=conversation,
        inline=inline,
        command_key=command_key,
        hang_up_after_words=not conversation,
        after_beep=voicemail and not get_provider().machine_greeting_end,
    )
    lifecycle.metadata_update(call=call, delete=(INITIAL_MESSAGE,))
    if conversation:
        lifecycle.call_transition(call=call, state=CallState.LISTENING)
        return
    _notify_hang_up_net(call)


def greeting_record_delivered(call: Call, message: str) -> None:
    """The carrier got the message with the dial request: never speak it twice (plugin PR
    #29121; docs/plugin-behaviour.md, "Notify calls").

    Its line is written when the carrier reports it said (the words wait in flight since
    the dial); a carrier that cannot report it has it recorded now.
    """
    if not get_provider().speech_done_signal:
        lifecycle.transcript_add(call=call, speaker=TranscriptEntry.Speaker.BOT, text=message)
    lifecycle.metadata_update(call=call, delete=(INITIAL_MESSAGE,))
    _notify_hang_up_net(call)


def _notify_hang_up_net(call: Call) -> None:
    """The notify hang-up until the carrier reports the message heard (which reschedules
    it, notifyHangupDelaySec after): UNHEARD_MESSAGE_DEADLINE from now. A carrier that
    cannot report it has the delay counted from sending."""
    if get_provider().speech_done_signal:
        due = clock.now() + UNHEARD_MESSAGE_DEADLINE
    else:
        due = clock.now() + timedelta(seconds=get_config().notify_hangup_delay_sec)
    # Conditional: a report that came first (another process) has set the real deadline.
    Call.objects.filter(pk=call.pk, notify_hangup_at__isnull=True).update(notify_hangup_at=due)

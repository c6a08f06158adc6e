"""Speaking into a call: over the carrier's REST API, or inside the reply to its own fetch.

Carrier speech (no stream) is written to the transcript when the carrier reports the words
finished (`call.spoken`), not when they were sent: until then they wait on the call row as
an utterance in flight, so the report may land on any process, even after a restart
(docs/carriers.md, "What each carrier tells us about speech").
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace
from datetime import timedelta

from django.db import transaction

from calls import clock, metrics
from calls.call_metadata import (
    PENDING_SPEECH,
    UTTERANCES_IN_FLIGHT,
    PendingSpeech,
    UtteranceInFlight,
)
from calls.carrier import get_provider
from calls.config import get_config
from calls.exceptions import CapacityReached, CarrierFailed, SpeechFailed, SpeechTimeout
from calls.models import Call, TranscriptEntry
from calls.services.lifecycle import (
    call_target,
    call_transition,
    metadata_update,
    transcript_add,
    utterance_line_add,
)
from calls.services.routes import route_tts
from calls.services.stream_commands import (
    ACCEPTED,
    NO_STREAM,
    OUTCOME_TIMEOUT_S,
    QUEUE_FULL,
    stream_ask,
)
from calls.services.turn_records import turn_first_audio, turn_heard
from calls.state import TERMINAL, CallState
from providers.base import NormalizedEvent, Speech
from providers.common import preferred_language, preferred_voice
from providers.errors import ProviderError

logger = logging.getLogger(__name__)

# `speak(wait=True)` on carrier speech polls the row for the line (the carrier's report may
# reach any process) this often, as long as a stream waits for its outcome.
HEARD_POLL_SECONDS = 0.1
# A notify document pauses and hangs up by itself (Twilio, Plivo); the timer set with it is
# only the net for a carrier that never does, this long after the document's own hang-up.
DOCUMENT_HANG_UP_GRACE = timedelta(seconds=10)


@dataclass
class InlineReply:
    """Set while handling a carrier fetch whose reply the carrier will execute (TwiML/XML).

    Speech put here travels in that reply: no REST update racing the fetch (Twilio 21220).
    `hang_up_after`: the reply pauses this many seconds, then hangs up (a notify message
    was just heard).
    """

    speech: Speech | None = None
    hang_up_after: int | None = None


@dataclass(frozen=True, slots=True)
class Spoken:
    """What `speak` can tell: the utterance's id, and with `wait` on a stream whether the
    caller heard it all (`heard`) or cut it off (`interrupted`); None where unknown."""

    utterance_id: str
    heard: bool | None = None
    interrupted: bool | None = None


def spoken_bound(text: str, *, call_id: str) -> str:
    """`text` cut to tts.maxTextLength, at the last word boundary that fits.

    The API refuses longer words outright (`spoken_check`); what reaches here unasked — an
    automatic reply, a greeting — is cut, logged, and never spoken past the bound.
    """
    limit = get_config().tts_config.max_text_length
    if limit is None or len(text) <= limit:
        return text
    bounded = text[:limit]
    if not text[limit].isspace():
        words = bounded.rsplit(maxsplit=1)  # drop the word the bound cuts through
        bounded = words[0] if len(words) == 2 else bounded
    logger.warning(
        "call=%s speech cut to tts.maxTextLength=%d (%d characters)", call_id, limit, len(text)
    )
    return bounded.rstrip()


def speak(
    call: Call,
    message: str,
    *,
    listen_after: bool,
    turn_token: str | None = None,
    inline: InlineReply | None = None,
    command_key: str | None = None,
    wait: bool = False,
    utterance_id: str | None = None,
    hang_up_after_words: bool = False,
    after_beep: bool = False,
) -> Spoken:
    """Say `message` as the utterance `utterance_id` (a new id when not given).

    On a streaming call the stream's holder plays it and writes the bot line when it was
    heard (calls/streams/session.py); SpeechFailed when no stream holds the call, the queue
    is full or TTS failed. Otherwise the carrier speaks it; on carrier failure the call goes
    back to listening and CarrierFailed is raised. A carrier that reports when its speech
    finished gets the line written then (`utterance_finished`), and `wait` polls for it;
    one that cannot gets it now, and `wait` learns nothing (`heard` None).
    `hang_up_after_words`: the notify message; once it was heard the call hangs up after
    notifyHangupDelaySec. `after_beep`: a message left on a machine whose carrier cannot
    report the end of its greeting; the document waits for the beep first.
    """
    message = spoken_bound(message, call_id=call.call_id)
    if call.stream_id:
        # A live media stream plays the words itself; a TwiML/REST fallback would replace
        # the stream document and cut the stream: never mix the paths
        # (docs/plugin-behaviour.md, "Playback on a stream").
        return _speak_on_stream(call, message, wait=wait, utterance_id=utterance_id)
    call_transition(call=call, state=CallState.SPEAKING)
    utterance_id = utterance_id or uuid.uuid4().hex
    reported = get_provider().speech_done_signal
    if reported:
        # On the row before the words go out: the carrier's report may come to another
        # process, even before this returns.
        utterance_in_flight_add(call, utterance_id, message, hang_up=hang_up_after_words)
    if inline is not None and inline.speech is None:
        inline.speech = Speech(
            text=message,
            listen=listen_after,
            turn_token=turn_token,
            language=preferred_language(route_tts(call)),
            voice=preferred_voice(route_tts(call)),
            utterance_id=utterance_id if reported else None,
            after_beep=after_beep,
        )
    else:
        _speak_by_command(
            call,
            message,
            listen_after=listen_after,
            turn_token=turn_token,
            command_key=command_key,
            utterance_id=utterance_id if reported else None,
            after_beep=after_beep,
        )
    # The carrier took the words (or they ride in this reply): its side of "first audio".
    turn_first_audio(utterance_id=utterance_id)
    if not reported:
        # The carrier never says when it finished: the words are recorded as sent.
        transcript_add(
            call=call, speaker=TranscriptEntry.Speaker.BOT, text=message, utterance_id=utterance_id
        )
        return Spoken(utterance_id)
    return _heard_wait(call, utterance_id) if wait else Spoken(utterance_id)


def _speak_on_stream(call: Call, message: str, *, wait: bool, utterance_id: str | None) -> Spoken:
    utterance_id = utterance_id or uuid.uuid4().hex
    request = {"type": "call.speak", "text": message, "utteranceId": utterance_id}
    # The state is written while the request travels: the words need not wait for it.
    replies = stream_ask(
        call.call_id,
        request,
        wait=wait,
        meanwhile=lambda: call_transition(call=call, state=CallState.SPEAKING),
    )
    if not replies:
        call_transition(call=call, state=CallState.LISTENING)
        raise SpeechFailed(NO_STREAM)
    first = replies[0]
    if first.get("type") != ACCEPTED:
        call_transition(call=call, state=CallState.LISTENING)
        error = str(first.get("error") or NO_STREAM)
        raise CapacityReached(error) if error == QUEUE_FULL else SpeechFailed(error)
    if not wait:
        return Spoken(utterance_id)
    if len(replies) < 2:
        raise SpeechTimeout("Timed out waiting for the utterance to finish")
    finished = replies[1]
    if finished.get("error"):
        raise SpeechFailed(str(finished["error"]))
    return Spoken(
        utterance_id,
        heard=bool(finished.get("heard")),
        interrupted=bool(finished.get("interrupted")),
    )


def _speak_by_command(
    call: Call,
    message: str,
    *,
    listen_after: bool,
    turn_token: str | None,
    command_key: str | None,
    utterance_id: str | None,
    after_beep: bool = False,
) -> None:
    provider = get_provider()
    if provider.speech_by_fetch:
        # The carrier fetches a document for the words (Plivo XML transfer); the fetch may
        # land on any process, so the words wait on the row, not in adapter memory.
        pending: PendingSpeech = {"text": message, "listen": listen_after, "turnToken": turn_token}
        if utterance_id:
            pending["utteranceId"] = utterance_id
        if after_beep:
            pending["afterBeep"] = True
        metadata_update(call=call, set_={PENDING_SPEECH: pending})
    try:
        target = call_target(call, turn_token=turn_token, command_key=command_key)
        provider.play_text(
            replace(target, utterance_id=utterance_id), message, listen_after=listen_after
        )
    except ProviderError as exc:
        metrics.provider_error(provider=call.provider, kind="speak")
        if utterance_id:
            utterance_in_flight_drop(call, utterance_id)  # never said: nothing will report it
        call_transition(call=call, state=CallState.LISTENING)
        raise CarrierFailed(str(exc)) from exc


def pending_speech_take(call: Call) -> Speech | None:
    """Pop the words a carrier fetch came for; None when nothing waits (keep-alive)."""
    with transaction.atomic():
        row = Call.objects.select_for_update().only("metadata").get(pk=call.pk)
        pending = row.meta.get(PENDING_SPEECH)
        if not pending:
            return None
        metadata_update(call=call, delete=(PENDING_SPEECH,))
    return Speech(
        text=pending.get("text"),
        listen=bool(pending.get("listen")),
        turn_token=pending.get("turnToken"),
        language=preferred_language(route_tts(call)),
        voice=preferred_voice(route_tts(call)),
        utterance_id=pending.get("utteranceId") or None,
        after_beep=bool(pending.get("afterBeep")),
    )


# --- carrier speech in flight ----------------------------------------------------------------


def utterance_in_flight_add(call: Call, utterance_id: str, text: str, *, hang_up: bool) -> None:
    """Words handed to a carrier that reports when they finished: kept until it does."""
    entry: UtteranceInFlight = {"id": utterance_id, "text": text}
    if hang_up:
        entry["hangUp"] = True
    with transaction.atomic():
        row = Call.objects.select_for_update().only("metadata").get(pk=call.pk)
        flight = [*(row.meta.get(UTTERANCES_IN_FLIGHT) or []), entry]
        metadata_update(call=call, set_={UTTERANCES_IN_FLIGHT: flight})


def utterance_in_flight_drop(call: Call, utterance_id: str) -> None:
    """Words the carrier never took (it refused, or took them another way)."""
    with transaction.atomic():
        row = Call.objects.select_for_update().only("metadata").get(pk=call.pk)
        flight = [u for u in row.meta.get(UTTERANCES_IN_FLIGHT) or [] if u["id"] != utterance_id]
        _in_flight_store(call, flight)


def _in_flight_store(call: Call, flight: list[UtteranceInFlight]) -> None:
    if flight:
        metadata_update(call=call, set_={UTTERANCES_IN_FLIGHT: flight})
    else:
        metadata_update(call=call, delete=(UTTERANCES_IN_FLIGHT,))


def utterance_finished(call: Call, event: NormalizedEvent, inline: InlineReply | None) -> None:
    """`call.spoken`: the carrier finished saying words in flight; their bot line, now.

    Which words: where newer words replace the running document (Twilio, Plivo), the
    utterance the event names, and any older one still in flight was cut off by them
    (written `interrupted`); where speech commands queue (Telnyx), the oldest in flight,
    whatever the echoed state names. An id that names nothing in flight (a duplicate, a
    forgery, words already written) changes nothing. The notify message's completion
    schedules the hang-up, notifyHangupDelaySec from now.
    """
    named = event.utterance_id
    with transaction.atomic():
        row = Call.objects.select_for_update().only("metadata").get(pk=call.pk)
        flight = list(row.meta.get(UTTERANCES_IN_FLIGHT) or [])
        ids = [entry["id"] for entry in flight]
        if (named is not None and named not in ids) or not flight:
            logger.info("call=%s speech report for no words in flight ignored", call.public_id)
            return
        if get_provider().speech_in_order:
            index = 0
        elif named is None:
            return  # a document carrier always names its words; this report names none
        else:
            index = ids.index(named)
        _in_flight_store(call, flight[index + 1 :])
        for entry in flight[:index]:
            _bot_line(call, entry, interrupted=True)
        done = flight[index]
        _bot_line(call, done, interrupted=event.interrupted)
    if done.get("hangUp"):
        _hang_up_after_words(call, inline)


def _bot_line(call: Call, entry: UtteranceInFlight, *, interrupted: bool) -> None:
    utterance_line_add(call=call, entry=entry, interrupted=interrupted)
    turn_heard(utterance_id=entry["id"], interrupted=interrupted)


def _hang_up_after_words(call: Call, inline: InlineReply | None) -> None:
    """The notify message was heard: hang up notifyHangupDelaySec from now.

    A reply the carrier executes pauses and hangs up itself; the timer then only catches a
    carrier that does not (docs/plugin-behaviour.md, "Notify calls").
    """
    delay = get_config().notify_hangup_delay_sec
    due = clock.now() + timedelta(seconds=delay)
    if inline is not None:
        inline.hang_up_after = delay
        due += DOCUMENT_HANG_UP_GRACE
    Call.objects.filter(pk=call.pk).update(notify_hangup_at=due)


def _heard_wait(call: Call, utterance_id: str) -> Spoken:
    """`wait` on carrier speech: until the carrier's report wrote the line, or the call ended."""
    lines = TranscriptEntry.objects.filter(
        call=call, speaker=TranscriptEntry.Speaker.BOT, utterance_id=utterance_id
    )
    deadline = clock.now() + timedelta(seconds=OUTCOME_TIMEOUT_S)
    while True:
        line = lines.first()
        if line is None and Call.objects.filter(pk=call.pk, state__in=TERMINAL).exists():
            line = lines.first()  # ending writes words in flight, interrupted: look again
            if line is None:
                return Spoken(utterance_id, heard=False, interrupted=False)
        if line is not None:
            return Spoken(utterance_id, heard=not line.interrupted, interrupted=line.interrupted)
        if clock.now() >= deadline:
            raise SpeechTimeout("Timed out waiting for the utterance to finish")
        clock.sleep(HEARD_POLL_SECONDS)

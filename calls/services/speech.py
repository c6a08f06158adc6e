"""Speaking into a call: over the carrier's REST API, or inside the reply to its own fetch."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db import transaction

from calls.call_metadata import PENDING_SPEECH
from calls.carrier import get_provider
from calls.config import get_config
from calls.exceptions import CapacityReached, CarrierFailed, SpeechFailed, SpeechTimeout
from calls.models import Call, TranscriptEntry
from calls.services.lifecycle import (
    call_target,
    call_transition,
    metadata_update,
    transcript_add,
)
from calls.services.stream_commands import ACCEPTED, NO_STREAM, QUEUE_FULL, stream_ask
from calls.state import CallState
from providers.base import Speech
from providers.common import preferred_language
from providers.errors import ProviderError


@dataclass
class InlineReply:
    """Set while handling a carrier fetch whose reply the carrier will execute (TwiML/XML).

    Speech put here travels in that reply: no REST update racing the fetch (Twilio 21220).
    """

    speech: Speech | None = None


@dataclass(frozen=True, slots=True)
class Spoken:
    """What `speak` can tell: the utterance's id, and with `wait` on a stream whether the
    caller heard it all (`heard`) or cut it off (`interrupted`); None where unknown."""

    utterance_id: str
    heard: bool | None = None
    interrupted: bool | None = None


def speak(
    call: Call,
    message: str,
    *,
    listen_after: bool,
    turn_token: str | None = None,
    inline: InlineReply | None = None,
    command_key: str | None = None,
    wait: bool = False,
) -> Spoken:
    """Say `message`.

    On a streaming call the stream's holder plays it and writes the bot line when it was
    heard (calls/streams/session.py); SpeechFailed when no stream holds the call, the queue
    is full or TTS failed. Otherwise the carrier speaks it; on carrier failure the call goes
    back to listening and CarrierFailed is raised.
    """
    call_transition(call=call, state=CallState.SPEAKING)
    if call.stream_id:
        # A live media stream plays the words itself; a TwiML/REST fallback would replace
        # the stream document and cut the stream: never mix the paths
        # (docs/plugin-behaviour.md, "Playback on a stream").
        return _speak_on_stream(call, message, wait=wait)
    utterance_id = uuid.uuid4().hex
    if inline is not None and inline.speech is None:
        inline.speech = Speech(
            text=message,
            listen=listen_after,
            turn_token=turn_token,
            language=preferred_language(get_config().tts),
        )
    else:
        _speak_by_command(
            call, message, listen_after=listen_after, turn_token=turn_token, command_key=command_key
        )
    transcript_add(
        call=call, speaker=TranscriptEntry.Speaker.BOT, text=message, utterance_id=utterance_id
    )
    return Spoken(utterance_id)


def _speak_on_stream(call: Call, message: str, *, wait: bool) -> Spoken:
    utterance_id = uuid.uuid4().hex
    request = {"type": "call.speak", "text": message, "utteranceId": utterance_id}
    replies = stream_ask(call.call_id, request, wait=wait)
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
    call: Call, message: str, *, listen_after: bool, turn_token: str | None, command_key: str | None
) -> None:
    provider = get_provider()
    if provider.speech_by_fetch:
        # The carrier fetches a document for the words (Plivo XML transfer); the fetch may
        # land on any process, so the words wait on the row, not in adapter memory.
        metadata_update(
            call=call,
            set_={
                PENDING_SPEECH: {"text": message, "listen": listen_after, "turnToken": turn_token}
            },
        )
    try:
        target = call_target(call, turn_token=turn_token, command_key=command_key)
        provider.play_text(target, message, listen_after=listen_after)
    except ProviderError as exc:
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
        language=preferred_language(get_config().tts),
    )

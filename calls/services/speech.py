"""Speaking into a call: over the carrier's REST API, or inside the reply to its own fetch."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from calls.call_metadata import PENDING_SPEECH
from calls.carrier import get_provider
from calls.config import get_config
from calls.exceptions import CarrierFailed
from calls.models import Call, TranscriptEntry
from calls.services.lifecycle import (
    call_target,
    call_transition,
    metadata_update,
    transcript_add,
)
from calls.services.stream_commands import stream_command
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


def speak(
    call: Call,
    message: str,
    *,
    listen_after: bool,
    turn_token: str | None = None,
    inline: InlineReply | None = None,
    command_key: str | None = None,
) -> None:
    """Say `message`.

    On carrier failure the call goes back to listening and CarrierFailed is raised.
    """
    call_transition(call=call, state=CallState.SPEAKING)
    if call.stream_id:
        # A live media stream plays the words itself; a TwiML/REST fallback would replace
        # the stream document and cut the stream: never mix the paths
        # (docs/plugin-behaviour.md, "Playback on a stream").
        stream_command(call.call_id, {"type": "call.speak", "text": message})
    elif inline is not None and inline.speech is None:
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
    transcript_add(call=call, speaker=TranscriptEntry.Speaker.BOT, text=message)


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

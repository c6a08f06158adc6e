"""Speaking into a call: over the carrier's REST API, or inside the reply to its own fetch."""
from __future__ import annotations

from dataclasses import dataclass

from calls.exceptions import CarrierFailed
from calls.models import Call, TranscriptEntry
from calls.runtime import get_provider
from calls.services.lifecycle import call_target, call_transition, transcript_add
from calls.state import CallState
from providers.base import Speech
from providers.errors import ProviderError


@dataclass
class InlineReply:
    """Set while handling a carrier fetch whose reply the carrier will execute (TwiML/XML).

    Speech put here travels in that reply: no REST update racing the fetch (Twilio 21220).
    """

    speech: Speech | None = None


def speak(call: Call, message: str, *, listen_after: bool, turn_token: str | None = None,
          inline: InlineReply | None = None) -> None:
    """Say `message`; on carrier failure the call goes back to listening and CarrierFailed is raised."""
    call_transition(call=call, state=CallState.SPEAKING)
    if inline is not None and inline.speech is None:
        inline.speech = Speech(text=message, listen=listen_after, turn_token=turn_token)
    else:
        try:
            get_provider().play_text(call_target(call, turn_token=turn_token), message,
                                     listen_after=listen_after)
        except ProviderError as exc:
            call_transition(call=call, state=CallState.LISTENING)
            raise CarrierFailed(str(exc)) from exc
    transcript_add(call=call, speaker=TranscriptEntry.Speaker.BOT, text=message)

"""Media streams attached to calls: attach and detach, speech heard and said on them.

The stream itself lives in one server process (calls/streams/playback.py); everything here is what
must be durable or visible to every process: which stream holds the call, the grace
deadline after a disconnect, and transcripts as events. Whether a call streams at all is
planned in calls/services/stream_plans.py.
"""

from __future__ import annotations

import hmac
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction

from calls import clock
from calls.call_metadata import INITIAL_MESSAGE
from calls.carrier import get_provider
from calls.config import get_config
from calls.db_threads import stream_hop
from calls.exceptions import CallError
from calls.models import Call, StreamLease, TranscriptEntry
from calls.services import lifecycle
from calls.services.auto_reply import early_reply_for_line, responder_ask_early
from calls.services.events import event_apply
from calls.services.idle import idle_deadline_renew
from calls.services.machine_detection import greeting_waits_now
from calls.services.routes import route_tts
from calls.services.speech import spoken_bound
from calls.services.stream_plans import STREAM_GRACE
from calls.services.turn_records import turn_first_audio, turn_heard
from calls.state import NON_TERMINAL
from providers.base import EventType, NormalizedEvent

logger = logging.getLogger(__name__)


class StreamRejected(CallError):
    """The carrier's stream may not attach (unknown call, bad token): close with 1008."""


@dataclass(frozen=True, slots=True)
class Attached:
    call_id: str
    provider: str
    greeting: str | None  # the deferred initial message, to be spoken on the stream now


def stream_attach(
    *, provider_call_id: str, token: str | None, stream_id: str, lease_id: int | None = None
) -> Attached:
    """Authenticate a carrier stream against its call, consuming the token it presents.

    The token check is constant-time and fails closed. A token opens one stream: the
    conditional update takes it off the row as the stream attaches, so of two streams
    presenting it only one attaches, and a second start with it is an unknown call like a
    forged one (docs/security.md, "Media streams"). The call itself carries on: its
    transcript, open turn and metadata are the same for every stream; a reconnect clears
    the grace deadline a lost stream left.
    """
    provider = get_provider().name
    call = Call.objects.filter(
        provider=provider, provider_call_id=provider_call_id, state__in=NON_TERMINAL
    ).first()
    if (
        call is None
        or not call.stream_token
        or not token
        or not hmac.compare_digest(call.stream_token.encode(), token.encode())
    ):
        raise StreamRejected("Unknown call")
    with transaction.atomic():
        consumed = Call.objects.filter(
            pk=call.pk, stream_token=call.stream_token, state__in=NON_TERMINAL
        ).update(stream_token="", stream_id=stream_id[:128], stream_lost_at=None)
        if consumed and lease_id is not None:
            # The socket's lease names the stream, in the same commit as the attach, so a
            # stream whose process dies is found once its lease runs out.
            StreamLease.objects.filter(pk=lease_id).update(stream_id=stream_id[:128])
    if not consumed:
        raise StreamRejected("Unknown call")  # another stream took the token first
    idle_deadline_renew(call)  # a realtime caller's silence counts from here
    # A greeting held for the answering-machine verdict is said when the verdict lets it.
    greeting = None if greeting_waits_now(call) else call.meta.get(INITIAL_MESSAGE)
    if greeting:
        # Owed to the stream now; its line is written when the caller has heard it.
        lifecycle.metadata_update(call=call, delete=(INITIAL_MESSAGE,))
        greeting = spoken_bound(greeting, call_id=call.call_id)  # the stream says it as is
    logger.info("call=%s stream %s attached", call.public_id, stream_id)
    return Attached(call_id=call.call_id, provider=provider, greeting=greeting)


def stream_spoken(
    *,
    call_id: str,
    text: str,
    interrupted: bool,
    utterance_id: str,
    model: bool = False,
    first_audio_at: datetime | None = None,
) -> None:
    """Words the caller heard on the stream: the bot's transcript line, written once they
    played (cut and flagged `interrupted` when the caller barged in; docs/voice-path.md).

    `model`: the words came from the realtime model, which no `speak` announced, so the call
    is also recorded as speaking them.
    """
    call = Call.objects.filter(public_id=call_id).first()
    if call is None or not text.strip():
        return
    turn_first_audio(utterance_id=utterance_id, at=first_audio_at)
    turn_heard(utterance_id=utterance_id, interrupted=interrupted)
    lifecycle.transcript_add(
        call=call,
        speaker=TranscriptEntry.Speaker.BOT,
        text=text.strip(),
        interrupted=interrupted,
        utterance_id=utterance_id,
    )
    if not model or call.is_terminal:
        return
    event_apply(
        provider=call.provider,
        event=NormalizedEvent(
            type=EventType.SPEAKING,
            id=f"stream:{uuid.uuid4()}",
            call_id=call.call_id,
            provider_call_id=call.provider_call_id,
            text=text.strip(),
        ),
    )


def stream_detach(*, call_id: str, stream_id: str) -> bool:
    """The stream closed: the call ends after the grace period unless a new stream attaches."""
    detached = Call.objects.filter(public_id=call_id, stream_id=stream_id).update(
        stream_id="", stream_lost_at=clock.now() + STREAM_GRACE
    )
    return detached == 1


async def stream_tts(call_id: str) -> dict[str, Any]:
    """The TTS settings the stream of `call_id` speaks with (`route_tts`: the dialled
    number's `tts` over the config's); for the stream holder, on its event loop.

    Without any number route of its own `tts` (the usual case) the config's, with no query
    on the way to the greeting.
    """
    cfg = get_config()
    if not any(route.tts for route in cfg.numbers.values()):
        return cfg.tts
    return await stream_hop(_call_tts)(call_id)


def _call_tts(call_id: str) -> dict[str, Any]:
    call = Call.objects.filter(public_id=call_id).only("metadata").first()
    return route_tts(call) if call is not None else get_config().tts


def stream_heard(
    *,
    call_id: str,
    text: str,
    is_final: bool,
    stopped_at: datetime | None = None,
    endpointed_at: datetime | None = None,
) -> None:
    """A transcript from the stream's STT, applied as the carrier speech event it is.

    The stream is the listening channel itself, so a final line answers the open turn.
    """
    call = Call.objects.filter(public_id=call_id).first()
    if call is None:
        return
    event = NormalizedEvent(
        type=EventType.SPEECH,
        id=f"stream:{uuid.uuid4()}",
        call_id=call.call_id,
        provider_call_id=call.provider_call_id,
        transcript=text,
        is_final=is_final,
        turn_token=call.turn_token,
        speech_stopped_at=stopped_at,
        endpointed_at=endpointed_at,
    )
    # A reply this process will give is asked for now, while the line is written
    # (docs/voice-path.md, "Early replies").
    early = responder_ask_early(call=call, text=text) if is_final else None
    with early_reply_for_line(early):
        # The call was read just now: event_apply need not look it up again (a statement
        # on the reply's critical path; docs/performance.md, "Reply latency").
        event_apply(provider=call.provider, event=event, call=call)
    if is_final and text.strip():
        idle_deadline_renew(call)  # after the event: never ahead of the reply path

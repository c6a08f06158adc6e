"""Media streams attached to calls: the per-call token, attach and detach, speech heard on them.

The stream itself lives in one server process (calls/media.py); everything here is what
must be durable or visible to every process: which stream holds the call, the token the
carrier must present, the grace deadline after a disconnect, and transcripts as events.
"""
from __future__ import annotations

import hmac
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

from calls import clock
from calls.config import get_config
from calls.exceptions import CallError
from calls.models import Call, TranscriptEntry
from calls.runtime import get_provider, public_url
from calls.services import lifecycle
from calls.services.events import event_apply
from calls.state import NON_TERMINAL
from providers.base import EventType, NormalizedEvent, StreamPlan
from providers.errors import ProviderError

logger = logging.getLogger(__name__)

# Reference §5.5: after a disconnect, a reconnect within 2 s keeps the call.
STREAM_GRACE = timedelta(seconds=2)


class StreamRejected(CallError):
    """The carrier's stream may not attach (unknown call, bad token): close with 1008."""


@dataclass(frozen=True, slots=True)
class Attached:
    call_id: str
    provider: str
    greeting: str | None  # the deferred initial message, to be spoken on the stream now


def streaming_possible() -> bool:
    """streaming.enabled, a public URL (publicUrl or the tunnel's) to hand out, and a
    carrier that streams."""
    cfg = get_config()
    return bool((cfg.streaming_enabled or realtime_enabled()) and public_url(cfg)
                and get_provider().media_codec() is not None)


def realtime_enabled() -> bool:
    """realtime.enabled: streams talk to a speech-to-speech model instead of STT + TTS."""
    return get_config().section("realtime").get("enabled") is True


def stream_url() -> str:
    """The public origin (https→wss) plus streaming.streamPath (reference §4.1.4)."""
    cfg = get_config()
    public = urlsplit(public_url(cfg) or "")
    scheme = "wss" if public.scheme == "https" else "ws"
    path = (str(cfg.section("realtime").get("streamPath") or cfg.stream_path)
            if realtime_enabled() else cfg.stream_path)
    return urlunsplit((scheme, public.netloc, path, "", ""))


def stream_plan(call: Call) -> StreamPlan | None:
    """The stream document for a live call's fetch, or None when it should not stream."""
    if call.is_terminal or call.stream_id or not streaming_possible():
        return None
    return StreamPlan(url=stream_url(), token=_token(call))


def _streams_held(exclude: Call | None = None) -> int:
    calls = Call.objects.active().exclude(stream_id="")
    if exclude is not None:
        calls = calls.exclude(pk=exclude.pk)
    return calls.count()


def line_busy(call: Call) -> bool:
    """As many streams as maxConcurrentCalls already hold the line (1 by default, as the
    reference's single media handler)."""
    return _streams_held(exclude=call) >= get_config().max_concurrent_calls


def stream_or_hold(call: Call) -> tuple[StreamPlan | None, bool]:
    """(plan, hold) for a fetch: stream now, or park an inbound caller while the line is busy."""
    plan = stream_plan(call)
    if plan is None or call.direction != Call.Direction.INBOUND:
        return plan, False
    if get_provider().call_waiting and line_busy(call):
        Call.objects.filter(pk=call.pk).update(waiting=True)
        logger.info("call=%s waits in the call-waiting queue", call.public_id)
        return None, True
    return plan, False


def waiting_resume() -> int:
    """Bring the longest-waiting caller back once no stream holds the line; returns 0 or 1."""
    if _streams_held() >= get_config().max_concurrent_calls:
        return 0
    call = Call.objects.active().filter(waiting=True).order_by("started_at", "id").first()
    if call is None or not Call.objects.filter(pk=call.pk, waiting=True).update(waiting=False):
        return 0  # none, or another sweeper took it
    try:
        get_provider().resume(lifecycle.call_target(call))
    except ProviderError as exc:
        logger.warning("call=%s could not leave the queue: %s", call.public_id, exc)
        Call.objects.filter(pk=call.pk).update(waiting=True)
        return 0
    return 1


def _token(call: Call) -> str:
    """One token per call, made once and kept (16 random bytes as hex).

    Hex because Plivo's <Stream extraHeaders> allows only [A-Za-z0-9] (providers.md §3.3).
    """
    if not call.stream_token:
        token = secrets.token_hex(16)
        Call.objects.filter(pk=call.pk, stream_token="").update(stream_token=token)
        call.refresh_from_db(fields=["stream_token"])
    return call.stream_token


def stream_attach(*, provider_call_id: str, token: str | None, stream_id: str) -> Attached:
    """Authenticate a carrier stream against its call; the constant-time token check fails closed."""
    provider = get_provider().name
    call = Call.objects.filter(provider=provider, provider_call_id=provider_call_id,
                               state__in=NON_TERMINAL).first()
    if call is None or not call.stream_token or not token or not hmac.compare_digest(
            call.stream_token.encode(), token.encode()):
        raise StreamRejected("Unknown call")
    Call.objects.filter(pk=call.pk).update(stream_id=stream_id[:128], stream_lost_at=None)
    greeting = (call.metadata or {}).get("initialMessage")
    if greeting:
        lifecycle.metadata_update(call=call, delete=("initialMessage",))
        lifecycle.transcript_add(call=call, speaker=TranscriptEntry.Speaker.BOT, text=greeting)
    logger.info("call=%s stream %s attached", call.public_id, stream_id)
    return Attached(call_id=call.call_id, provider=provider, greeting=greeting)


def stream_said(*, call_id: str, text: str) -> None:
    """What a realtime model said on the stream: a bot transcript line, the call speaking."""
    call = Call.objects.filter(public_id=call_id).first()
    if call is None or call.is_terminal or not text.strip():
        return
    lifecycle.transcript_add(call=call, speaker=TranscriptEntry.Speaker.BOT, text=text.strip())
    event_apply(provider=call.provider, event=NormalizedEvent(
        type=EventType.SPEAKING, id=f"stream:{uuid.uuid4()}", call_id=call.call_id,
        provider_call_id=call.provider_call_id, text=text.strip()))


def stream_detach(*, call_id: str, stream_id: str) -> bool:
    """The stream closed: the call ends after the grace period unless a new stream attaches."""
    detached = Call.objects.filter(public_id=call_id, stream_id=stream_id).update(
        stream_id="", stream_lost_at=clock.now() + STREAM_GRACE)
    return detached == 1


def stream_heard(*, call_id: str, text: str, is_final: bool) -> None:
    """A transcript from the stream's STT, applied as the carrier speech event it is.

    The stream is the listening channel itself, so a final line answers the open turn.
    """
    call = Call.objects.filter(public_id=call_id).first()
    if call is None:
        return
    event = NormalizedEvent(type=EventType.SPEECH, id=f"stream:{uuid.uuid4()}",
                            call_id=call.call_id, provider_call_id=call.provider_call_id,
                            transcript=text, is_final=is_final, turn_token=call.turn_token)
    event_apply(provider=call.provider, event=event)

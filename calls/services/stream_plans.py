"""Whether and where a call streams: the stream document, its per-call token, the busy line.

Planning only: it reads the config and the call rows and applies no event, so event
application, dialling and the sweep can all ask it (the stream sessions themselves are in
calls/services/streams.py).
"""

from __future__ import annotations

import logging
import secrets
from urllib.parse import urlsplit, urlunsplit

from calls.carrier import get_provider, public_url
from calls.config import get_config
from calls.models import Call
from calls.services import lifecycle
from providers.base import StreamPlan
from providers.errors import ProviderError

logger = logging.getLogger(__name__)


def streaming_possible() -> bool:
    """streaming.enabled, a public URL (publicUrl or the tunnel's) to hand out, and a
    carrier that streams."""
    cfg = get_config()
    return bool(
        (cfg.streaming_enabled or realtime_enabled())
        and public_url(cfg)
        and get_provider().media_codec() is not None
    )


def realtime_enabled() -> bool:
    """realtime.enabled: streams talk to a speech-to-speech model instead of STT + TTS."""
    return get_config().realtime.enabled


def stream_url() -> str:
    """The public origin (https→wss) plus streaming.streamPath (or the realtime path).

    The URL of the stream document (docs/carriers.md, "Twilio: TwiML replies").
    """
    cfg = get_config()
    public = urlsplit(public_url(cfg) or "")
    scheme = "wss" if public.scheme == "https" else "ws"
    path = (cfg.realtime.stream_path or cfg.stream_path) if realtime_enabled() else cfg.stream_path
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
    plugin's single media handler)."""
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

    Hex because Plivo's <Stream extraHeaders> allows only [A-Za-z0-9]
    (docs/carriers.md, "Plivo: media streams").
    """
    if not call.stream_token:
        token = secrets.token_hex(16)
        Call.objects.filter(pk=call.pk, stream_token="").update(stream_token=token)
        call.refresh_from_db(fields=["stream_token"])
    return call.stream_token

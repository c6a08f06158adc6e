"""Whether and where a call streams: the stream document, its one-stream token, the busy line.

Planning reads the config and the call rows and applies no event, so event application,
dialling and the sweep can all ask it; the one row it writes is the token of the stream it
plans (the stream sessions themselves are in calls/services/streams.py).
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

from django.utils.crypto import salted_hmac

from calls import metrics
from calls.carrier import get_provider, public_url
from calls.config import get_config
from calls.models import Call
from calls.services import lifecycle
from providers.base import StreamPlan
from providers.errors import ProviderError

logger = logging.getLogger(__name__)

# After a disconnect, a reconnect within 2 s keeps the call (docs/plugin-behaviour.md,
# "Playback on a stream").
STREAM_GRACE = timedelta(seconds=2)


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


def stream_plan(
    call: Call, *, replacing: bool = False, command_key: str | None = None
) -> StreamPlan | None:
    """The stream for a live call's document or stream-start command, with a fresh token;
    None when it should not stream.

    The one door to a stream token: every stream document (Twilio answer, dial and DTMF
    TwiML, the call-waiting queue's resume, Plivo XML) and stream-start command (Telnyx dial
    and streaming_start) is planned here, and each plan replaces the call's unused token
    (docs/security.md, "Media streams"). `replacing`: the stream replaces the one attached
    now (Twilio DTMF ends it); otherwise an attached call gets no plan. `command_key`: an
    owed carrier command's key, so its retries carry the same token (docs/security.md).
    """
    if call.is_terminal or (call.stream_id and not replacing) or not streaming_possible():
        return None
    return StreamPlan(url=stream_url(), token=_token_issue(call, command_key))


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
        metrics.provider_error(provider=call.provider, kind="resume")
        logger.warning("call=%s could not leave the queue: %s", call.public_id, exc)
        Call.objects.filter(pk=call.pk).update(waiting=True)
        return 0
    return 1


def _token_issue(call: Call, command_key: str | None) -> str:
    """A fresh token for the next stream of the call, replacing any unused one.

    16 bytes as 32 hex digits, because Plivo's <Stream extraHeaders> allows only
    [A-Za-z0-9] (docs/carriers.md, "Plivo: media streams"). Random, except for an owed
    carrier command: Telnyx runs a command sent again under its command_id only once, so
    every attempt must carry the token of the first; it is derived from the command's key.
    The stream that presents it consumes it (calls/services/streams.py).
    """
    if command_key:
        token = salted_hmac(
            "calls.stream_token", f"{call.pk}:{command_key}", algorithm="sha256"
        ).hexdigest()[:32]
    else:
        token = secrets.token_hex(16)
    Call.objects.filter(pk=call.pk).update(stream_token=token)
    call.stream_token = token
    return token

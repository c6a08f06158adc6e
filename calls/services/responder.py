"""Automatic replies: the LLM responder answers caller speech no one else consumed.

docs/plugin-behaviour.md, "Auto-response".
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection, transaction

from calls import clock
from calls.config import VoiceCallConfig, get_config
from calls.exceptions import CallError
from calls.models import Call, TranscriptEntry
from calls.selectors import call_find
from calls.services.lifecycle import call_transition, metadata_update
from calls.services.routes import call_route
from calls.services.speech import speak
from calls.state import CallState
from calls.tasks import respond_to_caller as respond_to_caller_task
from providers.errors import ProviderError
from providers.responder import Responder, build_system_prompt

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)

# Earlier lines sent with each request: a long call must not grow the prompt (and the
# reply latency) without bound.
HISTORY_LIMIT = 40
# Tests inject an httpx.Client on a MockTransport here; None = a client of our own.
HTTP_CLIENT: httpx.Client | None = None
LATENCY_KEY = "lastAutoReplyLatencyMs"

_warned_missing_key = False


def responder_enabled() -> bool:
    """True when responseModel is set and an API key is available."""
    global _warned_missing_key
    cfg = get_config()
    if not cfg.response_model:
        return False
    if _api_key(cfg):
        return True
    # Never fail silently without auth (plugin issue #8548), but say it once.
    if not _warned_missing_key:
        logger.warning(
            "responseModel is set but no API key: automatic replies are off "
            "(set OPENAI_API_KEY or tts.providers.openai.apiKey)"
        )
        _warned_missing_key = True
    return False


def _api_key(cfg: VoiceCallConfig) -> str:
    """The config's key wins; the environment only fills a missing one.

    docs/design.md, "4. Configuration".
    """
    block = cfg.tts.get("providers", {}).get("openai")
    configured = block.get("apiKey") if isinstance(block, dict) else None
    return str(configured or settings.OPENAI_API_KEY or "")


def responder_should_answer(call: Call, entry: TranscriptEntry) -> bool:
    """The plugin's latest rules: final caller speech no `continue` turn consumed.

    docs/plugin-behaviour.md, "Auto-response".
    """
    return (
        entry.speaker == TranscriptEntry.Speaker.USER
        and entry.is_final
        and bool(entry.text.strip())
        and entry.turn_token is None
        and call.turn_token is None
        and (call.direction == Call.Direction.INBOUND or call.mode == Call.Mode.CONVERSATION)
        and not call.is_terminal
        and bool(call.provider_call_id)
        and not _greeting_pending(call)
    )


def _greeting_pending(call: Call) -> bool:
    # An outbound conversation call still owes its greeting; inbound callers may always
    # talk over theirs (docs/plugin-behaviour.md, "Playback on a stream").
    return call.direction == Call.Direction.OUTBOUND and bool(
        (call.metadata or {}).get("initialMessage")
    )


def responder_schedule(*, call: Call, entry: TranscriptEntry) -> None:
    """Answer `entry` in the background when the rules say so; never blocks the webhook."""
    if not (responder_should_answer(call, entry) and responder_enabled()):
        return
    DISPATCH(call.call_id, entry.pk)


def dispatch_background(call_id: str, entry_id: int) -> None:
    """Start the reply once the line is committed (at once outside a transaction)."""
    transaction.on_commit(lambda: _start(call_id, entry_id))


def _start(call_id: str, entry_id: int) -> None:
    """The Celery task with a broker (production); else a daemon thread of this process."""
    if settings.REDIS_URL:
        respond_to_caller_task.delay(call_id, entry_id)
        return
    threading.Thread(
        target=_run_in_thread, args=(call_id, entry_id), name=f"responder-{call_id}", daemon=True
    ).start()


def _run_in_thread(call_id: str, entry_id: int) -> None:
    try:
        responder_run(call_id=call_id, entry_id=entry_id)
    except Exception:  # a thread has no failure state to report to: log it
        logger.exception("call=%s automatic reply crashed", call_id)
    finally:
        connection.close()  # this thread's own connection; nothing will reuse it


# The seam tests replace with a synchronous call: (call_id, entry_id) -> None.
DISPATCH: Callable[[str, int], None] = dispatch_background


def responder_run(*, call_id: str, entry_id: int) -> None:
    """Generate and speak the reply to one caller line unless superseded; LLM errors say nothing."""
    call = call_find(call_id)
    entry = TranscriptEntry.objects.filter(pk=entry_id, call=call).first() if call else None
    if call is None or entry is None or _superseded(call, entry):
        return
    try:
        text = _generate(get_config(), call, entry)
    except ProviderError as exc:
        logger.warning("call=%s automatic reply failed: %s", call.public_id, exc)
        return
    if not text:
        logger.info("call=%s responder chose silence", call.public_id)
        return
    if _superseded(call, entry):
        logger.info("Discarding superseded automatic reply call=%s", call.public_id)
        return
    _say(call, entry, text)


def _superseded(call: Call, entry: TranscriptEntry) -> bool:
    """The caller spoke again, the call ended, or a `continue` turn took over.

    A stale reply must not play (plugin issue #112360).
    """
    call.refresh_from_db(fields=["state", "turn_token"])
    newer = TranscriptEntry.objects.filter(
        call=call, speaker=TranscriptEntry.Speaker.USER, pk__gt=entry.pk
    ).exists()
    return newer or call.is_terminal or call.turn_token is not None


def _generate(cfg: VoiceCallConfig, call: Call, entry: TranscriptEntry) -> str:
    lines = TranscriptEntry.objects.filter(call=call, is_final=True, pk__lt=entry.pk)
    history = list(lines.order_by("-pk").values_list("speaker", "text")[:HISTORY_LIMIT])[::-1]
    # The dialled number's overrides, if any (docs/plugin-behaviour.md, "Per-number routes").
    route = call_route(call)
    prompt = build_system_prompt(
        custom=route.get("responseSystemPrompt") or cfg.response_system_prompt,
        caller=_other_party(call),
        history=history,
    )
    responder = _cached_responder(
        route.get("responseModel") or cfg.response_model or "",
        _api_key(cfg),
        cfg.response_base_url,
        int(route.get("responseTimeoutMs") or cfg.response_timeout_ms) / 1000,
        HTTP_CLIENT,
    )
    return responder.reply(system_prompt=prompt, history=history, utterance=entry.text)


def _other_party(call: Call) -> str:
    return call.from_number if call.direction == Call.Direction.INBOUND else call.to_number


@lru_cache(maxsize=4)
def _cached_responder(
    model: str, api_key: str, base_url: str | None, timeout_s: float, http: httpx.Client | None
) -> Responder:
    # One client per settings: its connection pool saves a TLS handshake on every reply.
    return Responder(
        model=model, api_key=api_key, base_url=base_url, timeout_s=timeout_s, http=http
    )


def _say(call: Call, entry: TranscriptEntry, text: str) -> None:
    try:
        speak(call, text, listen_after=True)
    except CallError as exc:
        logger.warning("call=%s automatic reply not spoken: %s", call.public_id, exc)
        return
    call_transition(call=call, state=CallState.LISTENING)
    # Bookkeeping only after the words are out: a reply waiting on post-turn work was
    # the plugin's 20 s latency bug (plugin issue #79521).
    latency_ms = int((clock.now() - entry.created_at).total_seconds() * 1000)
    metadata_update(call=call, set_={LATENCY_KEY: latency_ms})
    logger.info("auto reply latency call=%s totalMs=%d", call.public_id, latency_ms)

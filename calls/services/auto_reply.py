"""Automatic replies: the LLM responder answers caller speech no one else consumed.

docs/plugin-behaviour.md, "Auto-response".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import transaction

from calls.call_metadata import INITIAL_MESSAGE, STREAM_FAILED
from calls.config import get_config
from calls.db_threads import database_job
from calls.models import Call, TranscriptEntry
from calls.services.auto_reply_worker import reply_api_key, responder_run
from calls.tasks import respond_to_caller as respond_to_caller_task

logger = logging.getLogger(__name__)

_warned_missing_key = False


def responder_enabled() -> bool:
    """True when responder.url is set, or responseModel with an API key available."""
    global _warned_missing_key
    cfg = get_config()
    if cfg.responder.url:  # the gateway's agent needs no model key
        return True
    if not cfg.response_model:
        return False
    if reply_api_key(cfg):
        return True
    # Never fail silently without auth (plugin issue #8548), but say it once.
    if not _warned_missing_key:
        logger.warning(
            "responseModel is set but no API key: automatic replies are off "
            "(set OPENAI_API_KEY or tts.providers.openai.apiKey)"
        )
        _warned_missing_key = True
    return False


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
        and not _model_answers(call)
    )


def _model_answers(call: Call) -> bool:
    # One voice answers: with realtime voice the model already replies to the caller from
    # the stream; a chat reply on top would be a second bot line and a second voice
    # (docs/voice-path.md, "One voice answers"). A call whose stream failed has no model.
    return get_config().realtime.enabled and not call.meta.get(STREAM_FAILED)


def _greeting_pending(call: Call) -> bool:
    # An outbound conversation call still owes its greeting; inbound callers may always
    # talk over theirs (docs/plugin-behaviour.md, "Playback on a stream").
    return call.direction == Call.Direction.OUTBOUND and bool(call.meta.get(INITIAL_MESSAGE))


def responder_schedule(*, call: Call, entry: TranscriptEntry, said: str | None = None) -> None:
    """Answer `entry` in the background when the rules say so; never blocks the webhook.

    `said`: the caller's words when they differ from the stored (redacted) line; only then
    do they travel with the job (docs/architecture.md, "Retention and redaction").
    """
    if not (responder_should_answer(call, entry) and responder_enabled()):
        return
    if said is None or said == entry.text:
        DISPATCH(call.call_id, entry.pk)
    else:
        DISPATCH(call.call_id, entry.pk, said)


def dispatch_background(call_id: str, entry_id: int, said: str | None = None) -> None:
    """Start the reply once the line is committed (at once outside a transaction)."""
    transaction.on_commit(lambda: _start(call_id, entry_id, said))


def _start(call_id: str, entry_id: int, said: str | None) -> None:
    """The Celery task with a broker (production); else a reused thread of this process."""
    if settings.REDIS_URL:
        args = (call_id, entry_id) if said is None else (call_id, entry_id, said)
        respond_to_caller_task.delay(*args)
        return
    _THREADS.submit(database_job, lambda: _run_logged(call_id, entry_id, said))


def _run_logged(call_id: str, entry_id: int, said: str | None = None) -> None:
    try:
        if said is None:
            responder_run(call_id=call_id, entry_id=entry_id)
        else:
            responder_run(call_id=call_id, entry_id=entry_id, said=said)
    except Exception:  # a background job has no failure state to report to: log it
        logger.exception("call=%s automatic reply crashed", call_id)


# Reused threads, not one started per reply: starting a thread is waited for on the caller's
# thread, and a new thread opens a connection of its own (docs/performance.md, "Reply
# latency"). A reply mostly waits for the model, so many may be in flight: the bound is
# only a ceiling, idle threads are reused first.
_THREADS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="voicecall-responder")


# The seam tests replace with a synchronous call: (call_id, entry_id[, said]) -> None.
DISPATCH: Callable[..., None] = dispatch_background

"""Automatic replies: the LLM responder answers caller speech no one else consumed.

docs/plugin-behaviour.md, "Auto-response".
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar

from django.conf import settings
from django.db import transaction

from calls.call_metadata import INITIAL_MESSAGE, STREAM_FAILED
from calls.config import get_config
from calls.db_threads import database_job
from calls.models import Call, TranscriptEntry
from calls.selectors import conversation_history
from calls.services.auto_reply_worker import (
    HISTORY_LIMIT,
    Written,
    reply_api_key,
    responder_answer_early,
    responder_run,
)
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
    early = _EARLY.get()
    if early is not None and early.call_id == call.call_id:
        early.claim(entry)  # the model is already asked: it needs only the committed line
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


class EarlyReply:
    """A reply whose model was asked before its caller line was committed.

    On a stream the caller's words are known before the transaction that records them
    begins; the embedded default asks the model right then, on a responder thread, and the
    line's write runs meanwhile (docs/voice-path.md, "Early replies"). The words are said
    only after the line is committed and the rules still hold: `claim` hands the line over
    on commit; a line never claimed (not written, rolled back, or one the rules turned
    down inside the transaction) is dropped, and the reply with it.
    """

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.line: Future[Written | None] = Future()
        self._claimed = False

    def claim(self, entry: TranscriptEntry) -> None:
        """`entry` is the line this reply answers, once the current transaction commits."""
        self._claimed = True
        written = Written(entry_id=entry.pk, created_at=entry.created_at)
        transaction.on_commit(lambda: self.line.set_result(written))

    def drop_unclaimed(self) -> None:
        """The write is over and no line was claimed: the reply is never said."""
        if not self._claimed and not self.line.done():
            self.line.set_result(None)


# The early reply of the line being written on this thread, if one was asked for.
_EARLY: ContextVar[EarlyReply | None] = ContextVar("voicecall_early_reply", default=None)


@contextmanager
def early_reply_for_line(early: EarlyReply | None) -> Iterator[None]:
    """While the caller's line is written: the reply already asked for it, if any, takes the
    line instead of a new dispatch; unclaimed after the write, it is dropped."""
    token = _EARLY.set(early)
    try:
        yield
    finally:
        _EARLY.reset(token)
        if early is not None:
            early.drop_unclaimed()


def responder_ask_early(*, call: Call, text: str) -> EarlyReply | None:
    """Ask the model about the caller's final words `text` before their line is written,
    when the reply would be dispatched on this process anyway; None otherwise.

    Only the embedded default's in-process responder with `responseModel`: a Celery task
    reads its line from the database, and the gateway's agent is sent the transcript with
    the line in it. The rules are checked now on what is known (the line will be a final,
    token-less caller line of `call`) and again when the line is committed.
    """
    text = text.strip()
    if not text or settings.REDIS_URL or DISPATCH is not dispatch_background:
        return None
    if get_config().responder.url or not responder_enabled():
        return None
    provisional = TranscriptEntry(
        call=call, speaker=TranscriptEntry.Speaker.USER, text=text, is_final=True
    )
    if not responder_should_answer(call, provisional):
        return None
    try:
        # Read before the line's transaction begins: every earlier line, and not this one.
        history = conversation_history(call=call, before=None, limit=HISTORY_LIMIT)
        early = EarlyReply(call.call_id)
        # The job's own copy: the writer goes on changing its instance meanwhile.
        mine = copy.deepcopy(call)
        _THREADS.submit(database_job, lambda: _early_logged(mine, text, history, early.line))
    except Exception:
        # The caller's line matters more than asking early: it is written all the same, and
        # answered the usual way once committed.
        logger.warning("call=%s early reply not started", call.public_id, exc_info=True)
        return None
    return early


def _early_logged(
    call: Call, text: str, history: list[tuple[str, str]], line: Future[Written | None]
) -> None:
    try:
        responder_answer_early(call=call, text=text, history=history, line=line)
    except Exception:  # a background job has no failure state to report to: log it
        logger.exception("call=%s automatic reply crashed", call.public_id)


# The seam tests replace with a synchronous call: (call_id, entry_id[, said]) -> None.
DISPATCH: Callable[..., None] = dispatch_background

"""Generating and speaking one automatic reply (docs/plugin-behaviour.md, "Auto-response").

Runs off the webhook path — on a thread of the server in the embedded default, as a Celery
task in production — so it reads everything it needs from the database again and drops
its reply when the caller spoke again, the call ended or a `continue` took over.
"""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import Exists, OuterRef

from calls import clock, metrics
from calls.call_metadata import LAST_AUTO_REPLY_LATENCY_MS
from calls.config import VoiceCallConfig, get_config
from calls.exceptions import CallError
from calls.models import Call, TranscriptEntry
from calls.selectors import conversation_history
from calls.services.agent_reply import agent_act, agent_ask
from calls.services.lifecycle import call_transition, metadata_update
from calls.services.routes import call_route
from calls.services.speech import speak
from calls.services.turn_records import turn_reply_claim
from calls.state import CallState
from providers.agent_webhook import AgentAction
from providers.errors import ProviderError
from providers.responder import Responder, build_system_prompt

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)

# Earlier lines sent with each request: a long call must not grow the prompt (and the
# reply latency) without bound.
HISTORY_LIMIT = 40


# How long an early reply waits for its line's commit once the model answered. A line is
# written in milliseconds; past this the write is taken as lost and the reply is dropped.
LINE_WAIT_S = 10.0


@dataclass(frozen=True, slots=True)
class Written:
    """The caller's line an early reply answers, as committed."""

    entry_id: int
    created_at: datetime


# Tests inject an httpx.Client on a MockTransport here; None = a client of our own.
HTTP_CLIENT: httpx.Client | None = None


def reply_api_key(cfg: VoiceCallConfig) -> str:
    """The config's key wins; the environment only fills a missing one.

    docs/design.md, "4. Configuration".
    """
    configured = cfg.tts_config.providers.get("openai", {}).get("apiKey")
    return str(configured or settings.OPENAI_API_KEY or "")


def responder_run(*, call_id: str, entry_id: int, said: str | None = None) -> None:
    """Generate and speak (or act on) the reply to one caller line unless superseded;
    responder errors say nothing."""
    entry = _newest_caller_line(call_id, entry_id)
    # The caller's newest line and its call, as just read: nothing to re-read yet.
    if entry is None or entry.pk != entry_id or _taken_over(entry.call):
        return
    call = entry.call
    if said is not None:
        # The caller's own words, when the stored line is redacted: the reply answers what
        # was said; this instance is never saved (docs/architecture.md, "Retention and
        # redaction").
        entry.text = said
    cfg = get_config()
    try:
        # The gateway's own agent, when set, answers instead of responseModel
        # (docs/plugin-behaviour.md, "The gateway's agent as responder").
        reply = agent_ask(cfg, call, entry) if cfg.responder.url else _generate(cfg, call, entry)
    except ProviderError as exc:
        metrics.provider_error(provider="responder", kind="reply")
        logger.warning("call=%s automatic reply failed: %s", call.public_id, exc)
        return
    if not reply:
        logger.info("call=%s responder chose silence", call.public_id)
        return
    if isinstance(reply, AgentAction):
        if _superseded(call, entry):
            logger.info("Discarding superseded automatic reply call=%s", call.public_id)
            return
        agent_act(call, reply)
        return
    _say(call, entry, reply)  # checks for supersession as it stamps the turn


def _newest_caller_line(call_id: str, entry_id: int) -> TranscriptEntry | None:
    """The caller's newest line of the call `call_id` (our public id) from `entry_id` on,
    with its call, in one query: the line itself unless the caller spoke again; None for a
    call that is not there. One round trip less before the model is asked
    (docs/performance.md, "Reply latency")."""
    try:
        public_id = uuid.UUID(call_id)
    except ValueError:
        return None
    return (
        TranscriptEntry.objects.select_related("call")
        .filter(call__public_id=public_id, speaker=TranscriptEntry.Speaker.USER, pk__gte=entry_id)
        .order_by("-pk")
        .first()
    )


def _taken_over(call: Call) -> bool:
    return call.is_terminal or call.turn_token is not None


def _superseded(call: Call, entry: TranscriptEntry) -> bool:
    """The caller spoke again, the call ended, or a `continue` turn took over.

    A stale reply must not play (plugin issue #112360). One query: the call's state and
    turn beside whether a newer caller line exists.
    """
    newer = TranscriptEntry.objects.filter(
        call=OuterRef("pk"), speaker=TranscriptEntry.Speaker.USER, pk__gt=entry.pk
    )
    row = (
        Call.objects.filter(pk=call.pk)
        .annotate(newer=Exists(newer))
        .values("state", "turn_token", "newer")
        .first()
    )
    if row is None:
        return True
    call.state, call.turn_token = row["state"], row["turn_token"]
    return bool(row["newer"]) or _taken_over(call)


def responder_answer_early(
    *, call: Call, text: str, history: list[tuple[str, str]], line: Future[Written | None]
) -> None:
    """Ask the model about `text` while its line is still being written, then say the
    reply only once `line` tells that the line is committed and still the one to answer.

    `call` and `history` were read just before the line's transaction began; `line`
    resolves to the committed line's id and time, or None when it was not written or the
    rules said no (calls/services/auto_reply.py, `EarlyReply`; docs/voice-path.md,
    "Early replies").
    """
    cfg = get_config()
    try:
        reply = _ask_model(cfg, call, text, history)
    except ProviderError as exc:
        metrics.provider_error(provider="responder", kind="reply")
        logger.warning("call=%s automatic reply failed: %s", call.public_id, exc)
        return
    try:
        written = line.result(timeout=LINE_WAIT_S)
    except TimeoutError:
        logger.warning("call=%s automatic reply dropped: its line was not written", call.public_id)
        return
    if written is None:
        return  # no line to answer (not written, or the rules said no): nothing was said
    if not reply:
        logger.info("call=%s responder chose silence", call.public_id)
        return
    entry = TranscriptEntry(
        pk=written.entry_id,
        call=call,
        speaker=TranscriptEntry.Speaker.USER,
        text=text,
        is_final=True,
        created_at=written.created_at,
    )
    _say(call, entry, reply)


def _generate(cfg: VoiceCallConfig, call: Call, entry: TranscriptEntry) -> str:
    history = conversation_history(call=call, before=entry, limit=HISTORY_LIMIT)
    return _ask_model(cfg, call, entry.text, history)


def _ask_model(cfg: VoiceCallConfig, call: Call, text: str, history: list[tuple[str, str]]) -> str:
    # The dialled number's overrides, if any (docs/plugin-behaviour.md, "Per-number routes").
    route = call_route(call)
    prompt = build_system_prompt(
        custom=route.response_system_prompt or cfg.response_system_prompt,
        caller=_other_party(call),
        history=history,
    )
    responder = _cached_responder(
        route.response_model or cfg.response_model or "",
        reply_api_key(cfg),
        cfg.response_base_url,
        (route.response_timeout_ms or cfg.response_timeout_ms) / 1000,
        HTTP_CLIENT,
    )
    return responder.reply(system_prompt=prompt, history=history, utterance=text)


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
    utterance_id = uuid.uuid4().hex
    if not turn_reply_claim(call=call, entry_id=entry.pk, utterance_id=utterance_id):
        logger.info("Discarding superseded automatic reply call=%s", call.public_id)
        return
    try:
        speak(call, text, listen_after=True, utterance_id=utterance_id)
    except CallError as exc:
        logger.warning("call=%s automatic reply not spoken: %s", call.public_id, exc)
        return
    call_transition(call=call, state=CallState.LISTENING)
    # Bookkeeping only after the words are out: a reply waiting on post-turn work was
    # the plugin's 20 s latency bug (plugin issue #79521).
    latency_ms = int((clock.now() - entry.created_at).total_seconds() * 1000)
    metadata_update(call=call, set_={LAST_AUTO_REPLY_LATENCY_MS: latency_ms})
    logger.info("auto reply latency call=%s totalMs=%d", call.public_id, latency_ms)

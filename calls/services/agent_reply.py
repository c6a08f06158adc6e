"""The gateway's own agent as responder: ask `responder.url`, act on what it chose.

docs/plugin-behaviour.md, "The gateway's agent as responder". When and whether a reply
is wanted, supersession, speaking and the latency record are the LLM responder's
(calls/services/auto_reply_worker.py); this module builds the signed request's payload
and carries out an action (hang up, transfer) in place of words.
"""

from __future__ import annotations

import logging
from datetime import UTC
from functools import lru_cache
from typing import TYPE_CHECKING

from calls.config import VoiceCallConfig
from calls.exceptions import CallError
from calls.models import Call, TranscriptEntry
from calls.services.actions import call_end
from calls.services.transfer import call_transfer
from providers.agent_webhook import (
    AgentAction,
    AgentReply,
    AgentRequest,
    AgentWebhook,
    TranscriptLine,
)

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)

# This call's lines sent with each request, newest last: a long call must not grow the
# request without bound. The gateway's agent keeps its own memory across calls.
TRANSCRIPT_LIMIT = 40

# Tests inject an httpx.Client (MockTransport or loopback) here; None = a client of our own.
HTTP_CLIENT: httpx.Client | None = None


def agent_ask(cfg: VoiceCallConfig, call: Call, entry: TranscriptEntry) -> AgentReply:
    """What the gateway's agent answers the caller's line `entry`. Raises ProviderError."""
    webhook = _cached_webhook(
        cfg.responder.url or "",
        cfg.responder.secret or "",
        cfg.responder.timeout_ms / 1000,
        HTTP_CLIENT,
    )
    return webhook.ask(agent_request(call, entry))


def agent_request(call: Call, entry: TranscriptEntry) -> AgentRequest:
    """The request's payload: the call, its final lines up to `entry`, and `entry`'s words.

    `entry.text` may hold the caller's words as said while the stored line is redacted
    (docs/architecture.md, "Retention and redaction"); the transcript's last line is then
    those words too, as `latest` is.
    """
    lines = (
        TranscriptEntry.objects.filter(call=call, is_final=True, pk__lte=entry.pk)
        .order_by("-pk")
        .values_list("pk", "speaker", "text", "created_at")[:TRANSCRIPT_LIMIT]
    )
    transcript: list[TranscriptLine] = [
        {
            "speaker": speaker,
            "text": entry.text if pk == entry.pk else text,
            "at": at.astimezone(UTC).isoformat(),
        }
        for pk, speaker, text, at in reversed(lines)
    ]
    return {
        "callId": call.call_id,
        "direction": call.direction,
        "from": call.from_number,
        "to": call.to_number,
        "transcript": transcript,
        "latest": entry.text,
    }


def agent_act(call: Call, action: AgentAction) -> None:
    """Hang up or transfer as the agent asked; a refusal is logged and the call stays up.

    The same services as the API's `end` and `transfer`, so a transfer target passes the
    same checks (E.164, `outbound.allowTo`).
    """
    try:
        if action.kind == "end":
            call_end(call_id=call.call_id)
        else:
            call_transfer(call_id=call.call_id, to=action.to or "", message=action.message)
    except CallError as exc:
        logger.warning("call=%s agent's %s refused: %s", call.public_id, action.kind, exc)
        return
    logger.info("call=%s agent's %s done", call.public_id, action.kind)


@lru_cache(maxsize=4)
def _cached_webhook(
    url: str, secret: str, timeout_s: float, http: httpx.Client | None
) -> AgentWebhook:
    # One client per settings and process: its connection pool saves a TCP (and TLS)
    # handshake on every reply.
    return AgentWebhook(url=url, secret=secret, timeout_s=timeout_s, http=http)

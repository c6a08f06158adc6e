"""Control messages to the process that holds a call's media stream (group `call.<callId>`).

Only control travels the channel layer (speak, clear, hang up), never audio frames:
one receiving process takes ~2,000 layer messages a second
(docs/performance.md, "Channel layer: control events only").

A request that needs an answer (`speak`) carries a reply channel of the asking process; the
stream's holder answers there — at once when it took or refused the words, and again when
they were heard or cut off (docs/voice-path.md, "Speak across processes").
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from asgiref.sync import async_to_sync
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import (
    BaseChannelLayer,
    InMemoryChannelLayer,
    channel_layers,
    get_channel_layer,
)

from calls.exceptions import CallError

# The holder answers within milliseconds; silence this long means no process holds the
# stream any more (it died, or the stream closed while the request was on its way).
ACK_TIMEOUT_S = 3.0
# A waiting `speak` gives up after this; a long queue ahead of it can take a while.
OUTCOME_TIMEOUT_S = 120.0

# The event loop that runs this process's media streams (set when a stream attaches).
_stream_loop: asyncio.AbstractEventLoop | None = None

# Message types of the replies.
ACCEPTED, REFUSED, FINISHED = "speak.accepted", "speak.refused", "speak.finished"
# The refusals a `speak` can get (docs/voice-path.md).
NO_STREAM = "No media stream for call"
QUEUE_FULL = "Speech queue is full"


def group_name(call_id: str) -> str:
    return f"call.{call_id}"


def _layer() -> BaseChannelLayer:
    layer = get_channel_layer()
    if layer is None:
        raise CallError("No channel layer configured for media streams")
    return layer


def stream_loop_register(loop: asyncio.AbstractEventLoop) -> None:
    """Remember the loop that runs this process's streams (see `_run`)."""
    global _stream_loop
    _stream_loop = loop


def _run[T](coro: Coroutine[Any, Any, T]) -> T:
    """Run a layer coroutine from sync code.

    asgiref's async_to_sync runs it on the server's loop only when the sync code was itself
    called from that loop; from a plain thread (the embedded responder, a `continue` turn)
    it makes a loop of its own. The in-process channel layer's queues belong to the loop
    the streams run on and are not thread-safe, so when a stream loop is known, the
    coroutine is handed to it.
    """
    loop = _stream_loop
    if loop is not None and loop.is_running() and not _inside(loop):
        return asyncio.run_coroutine_threadsafe(coro, loop).result()
    return async_to_sync(_awaited)(coro)


async def _awaited[T](coro: Coroutine[Any, Any, T]) -> T:
    return await coro


def _inside(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def stream_command(call_id: str, message: dict[str, Any]) -> None:
    """group_send to the call's stream; raises CallError without a channel layer."""
    _run(_layer().group_send(group_name(call_id), message))


def stream_ask(call_id: str, message: dict[str, Any], *, wait: bool) -> list[dict[str, Any]]:
    """Send `message` to the call's stream and return its replies: [] when nobody answered
    within ACK_TIMEOUT_S; else the first reply, and with `wait` (after an ACCEPTED) the
    FINISHED one too when it came within OUTCOME_TIMEOUT_S."""
    return _run(_ask(_layer(), call_id, message, wait))


async def _ask(
    layer: BaseChannelLayer, call_id: str, message: dict[str, Any], wait: bool
) -> list[dict[str, Any]]:
    inbox = _inbox(layer)
    try:
        reply_to = await inbox.new_channel()
        await layer.group_send(group_name(call_id), {**message, "replyTo": reply_to})
        replies: list[dict[str, Any]] = []
        try:
            replies.append(await asyncio.wait_for(inbox.receive(reply_to), ACK_TIMEOUT_S))
            if wait and replies[0].get("type") == ACCEPTED:
                replies.append(await asyncio.wait_for(inbox.receive(reply_to), OUTCOME_TIMEOUT_S))
        except TimeoutError:
            pass
        return replies
    finally:
        if inbox is not layer:
            await inbox.close_pools()  # type: ignore[attr-defined]


def _inbox(layer: BaseChannelLayer) -> BaseChannelLayer:
    """The layer the replies are received on.

    channels-redis lets one layer instance receive on one event loop at a time, and this
    process's consumers are always receiving on the server's loop; a `speak` from a Celery
    worker or a plain thread runs on a loop of its own. So a networked layer gets a private
    instance for the replies (its own connection; the holder replies through Redis). The
    in-process layer must be the shared one — a private one would hear nothing — and is
    only ever used on the streams' loop (`_run`).
    """
    if isinstance(layer, InMemoryChannelLayer):
        return layer
    return channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)


async def stream_reply(message: dict[str, Any], reply: dict[str, Any]) -> None:
    """Answer a request on its reply channel, if it asked for one (called by the holder)."""
    reply_to = message.get("replyTo")
    if isinstance(reply_to, str) and reply_to:
        await _layer().send(reply_to, reply)

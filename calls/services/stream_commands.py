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
import threading
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar

from asgiref.sync import async_to_sync
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import (
    BaseChannelLayer,
    InMemoryChannelLayer,
    channel_layers,
    get_channel_layer,
)
from channels_redis.pubsub import RedisPubSubChannelLayer

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


def stream_loop_running() -> asyncio.AbstractEventLoop | None:
    """The loop that runs this process's streams, while it runs; else None."""
    loop = _stream_loop
    return loop if loop is not None and loop.is_running() else None


def stream_loop_adopt(loop: asyncio.AbstractEventLoop) -> None:
    """The server's loop, seen by a request before any stream attached: the streams will
    run on it too. A loop already known and running is kept."""
    if stream_loop_running() is None:
        stream_loop_register(loop)


def _run[T](coro: Coroutine[Any, Any, T]) -> T:
    """Run a layer coroutine from sync code.

    asgiref's async_to_sync runs it on the server's loop only when the sync code was itself
    called from that loop; from a plain thread (the embedded responder, a `continue` turn)
    it makes a loop of its own. The in-process channel layer's queues belong to the loop
    the streams run on and are not thread-safe, so when a stream loop is known, the
    coroutine is handed to it.
    """
    loop = stream_loop_running()
    if loop is not None and not _inside(loop):
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


def stream_ask(
    call_id: str,
    message: dict[str, Any],
    *,
    wait: bool,
    meanwhile: Callable[[], object] | None = None,
) -> list[dict[str, Any]]:
    """Send `message` to the call's stream and return its replies: [] when nobody answered
    within ACK_TIMEOUT_S; else the first reply, and with `wait` (after an ACCEPTED) the
    FINISHED one too when it came within OUTCOME_TIMEOUT_S.

    `meanwhile` runs on this thread while the request is on its way, where it can: database
    work the words need not wait for (docs/performance.md, "Speech across processes"). It
    starts once the request left: until then its Python would hold the interpreter lock the
    loop needs to send it.
    """
    sent = threading.Event()
    coro = _ask(_layer(), call_id, message, wait, sent.set)
    loop = stream_loop_running()
    if loop is not None and not _inside(loop):
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        if meanwhile is not None:
            sent.wait(ACK_TIMEOUT_S)
            meanwhile()
        return future.result()
    if meanwhile is not None:
        meanwhile()
    return async_to_sync(_awaited)(coro)


async def _ask(
    layer: BaseChannelLayer,
    call_id: str,
    message: dict[str, Any],
    wait: bool,
    sent: Callable[[], object],
) -> list[dict[str, Any]]:
    """Send the request, call `sent` once it left (or failed to), and gather the replies."""
    loop = asyncio.get_running_loop()
    if loop is _stream_loop:
        return await _Inbox.of(layer, loop).ask(call_id, message, wait, sent)
    return await _ask_once(layer, call_id, message, wait, sent)


async def _ask_once(
    layer: BaseChannelLayer,
    call_id: str,
    message: dict[str, Any],
    wait: bool,
    sent: Callable[[], object],
) -> list[dict[str, Any]]:
    """From a loop of its own (a Celery worker, a thread in a process with no server loop):
    a reply channel for this request only — with a networked layer on a private instance,
    closed after (see `_Inbox`); the in-process layer must be the shared one, as a private
    one would hear nothing."""
    inbox = (
        layer
        if isinstance(layer, InMemoryChannelLayer)
        else channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
    )
    try:
        try:
            reply_to = await inbox.new_channel()
            await layer.group_send(group_name(call_id), {**message, "replyTo": reply_to})
        finally:
            sent()
        return await _replies(lambda: inbox.receive(reply_to), wait)
    finally:
        if inbox is not layer:
            await _closed(inbox)


async def _closed(layer: BaseChannelLayer) -> None:
    """A private layer instance's Redis connections closed. The pub/sub layer's `flush`
    only forgets its subscriptions and closes them (it keeps nothing in Redis); the core
    layer's would delete every channel's messages, so it closes its pools instead."""
    if isinstance(layer, RedisPubSubChannelLayer):
        await layer.flush()
    else:
        await layer.close_pools()  # type: ignore[attr-defined]


async def _replies(
    receive: Callable[[], Awaitable[dict[str, Any]]], wait: bool
) -> list[dict[str, Any]]:
    replies: list[dict[str, Any]] = []
    try:
        replies.append(await asyncio.wait_for(receive(), ACK_TIMEOUT_S))
        if wait and replies[0].get("type") == ACCEPTED:
            replies.append(await asyncio.wait_for(receive(), OUTCOME_TIMEOUT_S))
    except TimeoutError:
        pass
    return replies


class _Inbox:
    """This process's reply channel on the server's loop, read by one task; replies find
    their request by `askId`.

    A channel (and, with Redis, a connection) per request cost 0.5–2 ms of each `speak`, on
    the loop that also plays the streams (docs/performance.md, "Speech across processes").
    channels-redis lets one layer instance receive on one event loop only, and this
    process's consumers receive on the server's loop: so the shared inbox lives there, and
    a request from a loop of its own gets a channel of its own (`_ask_once`).
    """

    _by_loop: ClassVar[dict[asyncio.AbstractEventLoop, _Inbox]] = {}

    def __init__(self, layer: BaseChannelLayer) -> None:
        self.layer = layer
        self.channel: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.waiting: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read(), name="voicecall-speak-replies")

    @classmethod
    def of(cls, layer: BaseChannelLayer, loop: asyncio.AbstractEventLoop) -> _Inbox:
        for old in [known for known in cls._by_loop if known.is_closed()]:
            del cls._by_loop[old]  # a finished server (tests run many)
        inbox = cls._by_loop.get(loop)
        if inbox is None or inbox.layer is not layer or inbox._reader.done():
            inbox = cls._by_loop[loop] = cls(layer)
        return inbox

    async def ask(
        self, call_id: str, message: dict[str, Any], wait: bool, sent: Callable[[], object]
    ) -> list[dict[str, Any]]:
        ask_id = uuid.uuid4().hex
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.waiting[ask_id] = queue
        try:
            try:
                reply_to = await self.channel
                request = {**message, "replyTo": reply_to, "askId": ask_id}
                await self.layer.group_send(group_name(call_id), request)
            finally:
                sent()
            return await _replies(queue.get, wait)
        finally:
            del self.waiting[ask_id]

    async def _read(self) -> None:
        try:
            channel = await self.layer.new_channel()
        except BaseException as exc:
            self.channel.set_exception(exc)
            raise
        self.channel.set_result(channel)
        while True:
            reply = await self.layer.receive(channel)
            queue = self.waiting.get(str(reply.get("askId")))
            if queue is not None:  # else: its request gave up waiting
                queue.put_nowait(reply)


async def stream_reply(message: dict[str, Any], reply: dict[str, Any]) -> None:
    """Answer a request on its reply channel, if it asked for one (called by the holder)."""
    reply_to = message.get("replyTo")
    if isinstance(reply_to, str) and reply_to:
        await _layer().send(reply_to, {**reply, "askId": message.get("askId")})

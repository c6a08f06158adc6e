"""Tell the admin's live views that a call changed (docs/operations.md, "Live view").

Every process's changes go to one channel-layer group, so a live view served by any process
sees every call (Redis in production). The message only names the call: each view reads
the row itself, after the commit, so what it shows is what the database holds.

A live view is a convenience: a channel layer that is down, slow or missing never fails,
delays or rolls back the call change that asked for the update.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from concurrent.futures import Future
from functools import partial
from typing import Any

from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import (
    BaseChannelLayer,
    InMemoryChannelLayer,
    channel_layers,
    get_channel_layer,
)
from django.db import transaction

from calls.services import stream_commands

logger = logging.getLogger(__name__)

GROUP = "admin.live"
# Channels calls the consumer's `live_call` for this type.
EVENT = "live.call"
# A layer that takes longer than this to take one message is treated as down.
SEND_TIMEOUT_S = 2.0

# Sends handed to a running loop, kept until done (a loop holds only weak references).
_pending: set[asyncio.Task[None]] = set()
# This module's own loop on a daemon thread, the layer instance it sends with, and the
# process they were made in.
_publisher: tuple[int, asyncio.AbstractEventLoop, BaseChannelLayer] | None = None
_publisher_lock = threading.Lock()


def live_publish(*, call_id: str) -> None:
    """Announce that `call_id` changed, once the current transaction commits; never raises."""
    transaction.on_commit(partial(_send, call_id), robust=True)


def _send(call_id: str) -> None:
    try:
        layer = get_channel_layer()
        if layer is None or _nobody_listens(layer):
            return
        _dispatch(layer, {"type": EVENT, "callId": call_id})
    except Exception:
        # The call change is committed; only the view misses it (it refreshes on reconnect).
        logger.warning("call=%s live view update not sent", call_id, exc_info=True)


def _nobody_listens(layer: Any) -> bool:
    """The in-process layer reaches this process only, and a live view here runs on the
    server's loop, which it makes known when it connects (calls/live/consumer.py): with no
    such loop running, no view can hear the message."""
    return isinstance(layer, InMemoryChannelLayer) and stream_commands.stream_loop_running() is None


async def _bounded(layer: BaseChannelLayer, message: dict[str, Any]) -> None:
    await asyncio.wait_for(layer.group_send(GROUP, message), SEND_TIMEOUT_S)


def _dispatch(layer: BaseChannelLayer, message: dict[str, Any]) -> None:
    """Send without making the caller wait.

    The in-process layer's queues belong to the loop the consumers run on and are not
    thread-safe, so from another thread the send is handed to that loop (the same rule as
    `stream_commands._run`). A networked layer is sent to from that loop too when there is
    one, else from this module's own loop: a webhook thread in a process that has no server
    loop yet, or a Celery worker, then neither waits for Redis nor opens a connection per
    message (asgiref's async_to_sync would make a loop, and a Redis pool, each time).
    """
    try:
        here = asyncio.get_running_loop()
    except RuntimeError:
        here = None
    if here is not None:
        task = here.create_task(_bounded(layer, message))
        _pending.add(task)
        task.add_done_callback(_settled)
        return
    loop = stream_commands.stream_loop_running()
    if loop is None:
        loop, layer = _publisher_loop()
    asyncio.run_coroutine_threadsafe(_bounded(layer, message), loop).add_done_callback(_settled)


def _publisher_loop() -> tuple[asyncio.AbstractEventLoop, BaseChannelLayer]:
    """The publisher loop and a layer instance of its own: channels-redis keeps a pool per
    loop on an instance and closes them all from whichever loop calls `flush`, so the shared
    instance must not hold one for a loop nobody else runs."""
    global _publisher
    with _publisher_lock:
        # A forked child (a Celery pool process) inherits the loop but not its thread.
        if _publisher is None or _publisher[0] != os.getpid():
            loop = asyncio.new_event_loop()
            name = "voicecall-live-publisher"
            threading.Thread(target=loop.run_forever, name=name, daemon=True).start()
            _publisher = (os.getpid(), loop, _new_layer())
        return _publisher[1], _publisher[2]


def _new_layer() -> BaseChannelLayer:
    return channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)


def _settled(done: asyncio.Task[None] | Future[None]) -> None:
    if isinstance(done, asyncio.Task):
        _pending.discard(done)
    if not done.cancelled() and done.exception() is not None:
        logger.warning("live view update not sent", exc_info=done.exception())

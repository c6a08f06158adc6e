"""A media socket's messages to its consumer's handlers, one handler at a time.

Channels' own loop (`channels.utils.await_many_dispatch`) makes a new task and an
`asyncio.wait` for every message; a carrier sends 50 frames a second per call, and at 150
calls that bookkeeping was about a seventh of the server's CPU (docs/performance.md,
"Where the CPU goes"). Here each source is read by one long-lived loop instead, and a lock
keeps Channels' promise that handlers never overlap: a layer command (speak, clear, hang
up) waits for the frame being handled, and the next frame for the command.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

Message = dict[str, Any]
Source = Callable[[], Awaitable[Message]]


async def dispatch_from(
    receive: Source, layer_receive: Source | None, dispatch: Callable[[Message], Awaitable[None]]
) -> None:
    """Hand each message of the socket (`receive`) and of the consumer's layer channel
    (`layer_receive`, when there is a layer) to `dispatch`, each source in its own order,
    until a handler raises: that ends both readers and is raised here (StopConsumer too,
    which the caller expects), as Channels' loop does."""
    turn = asyncio.Lock()

    async def pump(source: Source) -> None:
        while True:
            message = await source()
            async with turn:
                await dispatch(message)

    if layer_receive is None:
        await pump(receive)
        return
    try:
        async with asyncio.TaskGroup() as both:
            both.create_task(pump(receive), name="voicecall-stream-socket")
            both.create_task(pump(layer_receive), name="voicecall-stream-commands")
    except BaseExceptionGroup as failed:
        # One reader raised and the other was cancelled: the caller sees that one error,
        # as from Channels' loop (a handler's StopConsumer ends the consumer cleanly).
        raise failed.exceptions[0] from None

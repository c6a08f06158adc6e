"""The media consumer's message loop (calls/streams/dispatch.py): Channels' promises kept,
handlers one at a time, a handler's error ends the loop, without a task per message."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.exceptions import StopConsumer

from calls.streams.consumer import MediaStreamConsumer
from calls.streams.dispatch import dispatch_from


class Source:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def __call__(self) -> dict[str, Any]:
        return await self.queue.get()


async def test_handlers_never_overlap_and_each_source_keeps_its_order() -> None:
    socket, layer = Source(), Source()
    running: list[str] = []
    handled: list[str] = []
    overlaps: list[tuple[str, str]] = []

    async def dispatch(message: dict[str, Any]) -> None:
        if running:
            overlaps.append((running[0], message["name"]))
        running.append(message["name"])
        await asyncio.sleep(0.001)  # a handler that awaits, as the consumer's do
        running.remove(message["name"])
        handled.append(message["name"])
        if message["name"] == "stop":
            raise StopConsumer

    for index in range(20):
        socket.queue.put_nowait({"name": f"frame {index}"})
        layer.queue.put_nowait({"name": f"command {index}"})
    loop = asyncio.create_task(dispatch_from(socket, layer, dispatch))
    while len(handled) < 40:
        await asyncio.sleep(0.001)
    socket.queue.put_nowait({"name": "stop"})

    with pytest.raises(StopConsumer):
        await asyncio.wait_for(loop, 5)
    assert overlaps == []
    assert [n for n in handled if n.startswith("frame")] == [f"frame {i}" for i in range(20)]
    assert [n for n in handled if n.startswith("command")] == [f"command {i}" for i in range(20)]


async def test_a_failing_layer_command_ends_the_loop_although_the_socket_is_quiet() -> None:
    socket, layer = Source(), Source()

    async def dispatch(message: dict[str, Any]) -> None:
        raise RuntimeError(f"handler failed on {message['name']}")

    loop = asyncio.create_task(dispatch_from(socket, layer, dispatch))
    layer.queue.put_nowait({"name": "speak"})
    with pytest.raises(RuntimeError, match="handler failed on speak"):
        await asyncio.wait_for(loop, 5)


async def test_without_a_layer_the_socket_alone_is_read() -> None:
    socket = Source()
    handled: list[str] = []

    async def dispatch(message: dict[str, Any]) -> None:
        handled.append(message["name"])
        if len(handled) == 3:
            raise StopConsumer

    for name in ("a", "b", "c"):
        socket.queue.put_nowait({"name": name})
    with pytest.raises(StopConsumer):
        await asyncio.wait_for(dispatch_from(socket, None, dispatch), 5)
    assert handled == ["a", "b", "c"]


async def test_a_message_cannot_name_a_private_method() -> None:
    consumer = MediaStreamConsumer()
    with pytest.raises(ValueError, match="No handler for message type _teardown"):
        await consumer.dispatch({"type": "_teardown"})
    with pytest.raises(ValueError, match="No handler for message type call.nothing"):
        await consumer.dispatch({"type": "call.nothing"})

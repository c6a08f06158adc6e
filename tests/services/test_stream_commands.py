"""Control messages to a call's stream process (calls/services/stream_commands.py)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from calls.exceptions import CallError
from calls.services.stream_commands import (
    ACCEPTED,
    group_name,
    stream_ask,
    stream_command,
    stream_loop_register,
    stream_reply,
)


def test_each_call_has_its_own_group() -> None:
    assert group_name("c-1") == "call.c-1"
    assert group_name("c-1") != group_name("c-2")


def _in_one_loop(steps: Any) -> Any:
    """Run `steps` (a coroutine function) on one loop: the Redis pub/sub layer's channels
    and groups belong to the loop that made them, as a server's consumers do."""
    return async_to_sync(steps)()


def test_a_command_reaches_the_calls_group() -> None:
    layer = get_channel_layer()
    assert layer is not None

    async def steps() -> dict[str, Any]:
        mine = await layer.new_channel()
        await layer.group_add(group_name("c-1"), mine)
        await asyncio.to_thread(stream_command, "c-1", {"type": "call.speak", "text": "Hello"})
        try:
            return await asyncio.wait_for(layer.receive(mine), 5)
        finally:
            await layer.group_discard(group_name("c-1"), mine)

    assert _in_one_loop(steps) == {"type": "call.speak", "text": "Hello"}


def test_without_a_channel_layer_a_command_is_a_call_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("calls.services.stream_commands.get_channel_layer", lambda: None)
    with pytest.raises(CallError, match="No channel layer configured"):
        stream_command("c-1", {"type": "call.speak", "text": "Hello"})


def test_a_group_receives_only_its_own_commands() -> None:
    layer = get_channel_layer()
    assert layer is not None

    async def steps() -> dict[str, Any]:
        other = await layer.new_channel()
        await layer.group_add(group_name("c-2"), other)
        await asyncio.to_thread(stream_command, "c-1", {"type": "call.speak", "text": "Hello"})
        await asyncio.to_thread(stream_command, "c-2", {"type": "call.clear"})
        try:
            return await asyncio.wait_for(layer.receive(other), 5)
        finally:
            await layer.group_discard(group_name("c-2"), other)

    assert _in_one_loop(steps) == {"type": "call.clear"}


# --- asking the stream's holder (docs/voice-path.md, "Speak across processes") -------------


class Holder:
    """The process holding a call's stream, on a server loop of its own thread: it answers
    each request on its reply channel, the later ones first."""

    def __init__(self, call_id: str, answers: int) -> None:
        self.call_id = call_id
        self.answers = answers
        self.requests: list[dict[str, Any]] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.task = asyncio.run_coroutine_threadsafe(self._serve(), self.loop)
        assert self.ready.wait(5)

    async def _serve(self) -> None:
        layer = get_channel_layer()
        assert layer is not None
        mine = await layer.new_channel()
        await layer.group_add(group_name(self.call_id), mine)
        stream_loop_register(asyncio.get_running_loop())
        self.ready.set()
        while len(self.requests) < self.answers:
            self.requests.append(await layer.receive(mine))
        for request in reversed(self.requests):
            await stream_reply(request, {"type": ACCEPTED, "text": request["text"]})
        await layer.group_discard(group_name(self.call_id), mine)

    def stop(self) -> None:
        self.task.result(10)
        # As a server's loop ends: what still runs on it (the reply inbox's reader) is
        # cancelled first, so nothing is left holding the layer's locks.
        asyncio.run_coroutine_threadsafe(_cancel_the_rest(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


async def _cancel_the_rest() -> None:
    others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


@pytest.fixture(autouse=True)
def no_stream_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever loop a test registers is forgotten after it."""
    monkeypatch.setattr("calls.services.stream_commands._stream_loop", None)


def test_requests_from_threads_share_one_reply_channel_and_each_gets_its_own_answer() -> None:
    holder = Holder("c-9", answers=2)
    results: dict[str, list[dict[str, Any]]] = {}
    order: list[str] = []

    def ask(text: str) -> None:
        results[text] = stream_ask(
            "c-9",
            {"type": "call.speak", "text": text},
            wait=False,
            meanwhile=lambda: order.append(f"meanwhile {text}"),
        )

    askers = [threading.Thread(target=ask, args=(text,)) for text in ("one", "two")]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join(10)
    holder.stop()

    # Answered in reverse order, each reply still reached the request that asked for it.
    assert results["one"][0]["text"] == "one" and results["two"][0]["text"] == "two"
    assert [r[0]["type"] for r in results.values()] == [ACCEPTED, ACCEPTED]
    # One reply channel for the process, not one per request; ids tell the requests apart.
    assert holder.requests[0]["replyTo"] == holder.requests[1]["replyTo"]
    assert holder.requests[0]["askId"] != holder.requests[1]["askId"]
    assert sorted(order) == ["meanwhile one", "meanwhile two"]


def test_a_request_nobody_answers_gets_no_reply_and_its_meanwhile_still_ran(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("calls.services.stream_commands.ACK_TIMEOUT_S", 0.2)
    ran: list[bool] = []

    replies = stream_ask(
        "c-nobody",
        {"type": "call.speak", "text": "hi"},
        wait=False,
        meanwhile=lambda: ran.append(True),
    )

    assert replies == [] and ran == [True]


def test_meanwhile_starts_once_the_request_left(monkeypatch: pytest.MonkeyPatch) -> None:
    holder = Holder("c-7", answers=1)
    layer = get_channel_layer()
    assert layer is not None
    sending = layer.group_send
    order: list[str] = []

    async def slow_send(group: str, message: dict[str, Any]) -> None:
        await asyncio.sleep(0.05)  # the layer takes a while: meanwhile must not start yet
        await sending(group, message)
        order.append("sent")

    monkeypatch.setattr(layer, "group_send", slow_send)
    replies = stream_ask(
        "c-7",
        {"type": "call.speak", "text": "hi"},
        wait=False,
        meanwhile=lambda: order.append("meanwhile"),
    )
    holder.stop()

    assert replies[0]["type"] == ACCEPTED
    # Before, its Python would hold the interpreter lock the loop needs to send.
    assert order == ["sent", "meanwhile"]


def test_a_request_that_could_not_be_sent_still_runs_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    holder = Holder("c-6", answers=0)
    layer = get_channel_layer()
    assert layer is not None

    async def broken(group: str, message: dict[str, Any]) -> None:
        raise ConnectionError("redis went away")

    monkeypatch.setattr(layer, "group_send", broken)
    ran: list[bool] = []
    with pytest.raises(ConnectionError):
        stream_ask("c-6", {"type": "call.speak"}, wait=False, meanwhile=lambda: ran.append(True))
    holder.stop()
    assert ran == [True]

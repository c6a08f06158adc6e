"""A media stream driven by a realtime speech-to-speech model, in memory.

docs/plugin-behaviour.md, "Realtime voice".

The model hears the caller and answers with audio; this link forwards its audio to the
carrier in order, clears on barge-in, and hands transcripts and tool calls to the services
(through database_sync_to_async, never per frame).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async

from calls.exceptions import CallError
from calls.services.actions import call_end
from calls.services.streams import stream_heard, stream_said

logger = logging.getLogger(__name__)

DEFAULT_INSTRUCTIONS = (
    "You are a helpful voice assistant on a phone call. Keep replies to one or two short, "
    "natural sentences. When the conversation is over, say goodbye and call end_call."
)

_heard = database_sync_to_async(stream_heard)
_said = database_sync_to_async(stream_said)
_end = database_sync_to_async(call_end)


class RealtimeLink:
    """The realtime session's handler: ordered carrier output plus service callbacks."""

    def __init__(
        self,
        *,
        call_id: str,
        send_audio: Callable[[bytes], Awaitable[None]],
        send_clear: Callable[[], Awaitable[None]],
        on_ended: Callable[[], Awaitable[None]],
    ) -> None:
        self.call_id = call_id
        self._send_audio = send_audio
        self._send_clear = send_clear
        self._on_ended = on_ended
        # One queue keeps the carrier's frames in the model's order; clear jumps it.
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._pump = asyncio.create_task(self._drain(), name="realtime-outbox")
        self._tasks: set[asyncio.Task[Any]] = set()

    async def _drain(self) -> None:
        while True:
            item = await self._outbox.get()
            if item is None:
                await self._send_clear()
            else:
                await self._send_audio(item)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- RealtimeHandler --------------------------------------------------------------
    def on_audio(self, ulaw: bytes) -> None:
        self._outbox.put_nowait(ulaw)

    def on_clear(self) -> None:
        while not self._outbox.empty():
            self._outbox.get_nowait()
        self._outbox.put_nowait(None)

    def on_user_transcript(self, text: str) -> None:
        self._spawn(_heard(call_id=self.call_id, text=text, is_final=True))

    def on_assistant_transcript(self, text: str) -> None:
        self._spawn(_said(call_id=self.call_id, text=text))

    async def on_tool_call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        if name != "end_call":
            return {"error": f'Tool "{name}" not available'}
        try:
            await _end(call_id=self.call_id)
        except CallError as exc:
            return {"error": exc.message}
        return {"ok": True}

    def on_error(self, message: str) -> None:
        logger.warning("call=%s realtime error: %s", self.call_id, message)

    def on_closed(self) -> None:
        # The model ended the session: the carrier call ends with it, as in the plugin.
        self._spawn(self._on_ended())

    async def close(self) -> None:
        # close() may run inside one of our own tasks (the model ended the session):
        # never cancel or await the task we are running in.
        current = asyncio.current_task()
        tasks = [task for task in (self._pump, *self._tasks) if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

"""A media stream driven by a realtime speech-to-speech model, in memory.

docs/plugin-behaviour.md, "Realtime voice"; docs/voice-path.md.

The model hears the caller and answers with audio, seconds of it in a fraction of a second.
This link turns each of the model's output items into one utterance of the stream's
Playback, so model speech is framed, paced at 20 ms and marked like TTS speech, and the
ledger knows what was heard. When the caller barges in, the item is cut in the model's own
conversation to what played (`truncate`), and the bot's transcript line says the same.
Transcripts and tool calls reach the services through `stream_hop`, never per
frame.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from calls.db_threads import stream_hop
from calls.exceptions import CallError
from calls.services.actions import call_end
from calls.services.streams import stream_heard
from calls.streams.playback import Outcome, Playback, Utterance, heard_words
from providers.realtime.base import RealtimeSession

logger = logging.getLogger(__name__)

DEFAULT_INSTRUCTIONS = (
    "You are a helpful voice assistant on a phone call. Keep replies to one or two short, "
    "natural sentences. When the conversation is over, say goodbye and call end_call."
)

_heard = stream_hop(stream_heard)
_end = stream_hop(call_end)

# (utterance, outcome with its final words) -> record it (the session's writer).
Record = Callable[[Utterance, Outcome], None]


@dataclass(eq=False)
class _Item:
    """One model output item: its audio as it arrives, and the utterance playing it."""

    item_id: str
    chunks: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    utterance: Utterance | None = None
    outcome: Outcome | None = None
    recorded: bool = False

    async def audio(self) -> AsyncIterator[bytes]:
        while (chunk := await self.chunks.get()) is not None:
            yield chunk


class RealtimeLink:
    """The realtime session's handler: model items into Playback, and back the cut."""

    def __init__(
        self,
        *,
        call_id: str,
        playback: Playback,
        record: Record,
        on_ended: Callable[[], Awaitable[None]],
    ) -> None:
        self.call_id = call_id
        self.playback = playback
        self._record = record
        self._on_ended = on_ended
        self.session: RealtimeSession | None = None  # set once connected, for truncate
        self._items: dict[str, _Item] = {}
        self._by_utterance: dict[str, _Item] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- RealtimeHandler --------------------------------------------------------------
    def on_audio(self, ulaw: bytes, item_id: str, utterance_id: str | None) -> None:
        item = self._items.get(item_id)
        if item is None:
            item = self._items[item_id] = _Item(item_id)
            item.utterance = self.playback.play(
                item.audio, utterance_id=utterance_id or uuid.uuid4().hex
            )
            self._by_utterance[item.utterance.id] = item
        if item.outcome is None:  # audio of an item already cut off is not played
            item.chunks.put_nowait(ulaw)

    def on_audio_done(self, item_id: str) -> None:
        item = self._items.get(item_id)
        if item is not None:
            item.chunks.put_nowait(None)

    def on_clear(self) -> None:
        self._spawn(self.playback.barge_in())

    def on_user_transcript(self, text: str) -> None:
        self._spawn(_heard(call_id=self.call_id, text=text, is_final=True))

    def on_assistant_transcript(self, text: str, item_id: str) -> None:
        item = self._items.get(item_id)
        if item is None or item.utterance is None:
            # Words without audio (a cancelled response, say): nobody heard them.
            return
        item.utterance.text = text
        self._maybe_record(item)

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

    # -- from the session's playback outcomes -------------------------------------------
    def owns(self, utterance: Utterance) -> bool:
        return utterance.id in self._by_utterance

    def settled(self, utterance: Utterance, outcome: Outcome) -> None:
        """Playback finished or cut one of the model's items."""
        item = self._by_utterance.get(utterance.id)
        if item is None:
            return
        item.outcome = outcome
        if outcome.interrupted and self.session is not None:
            self._spawn(self.session.truncate(item.item_id, outcome.played_ms))
        self._maybe_record(item)

    def _maybe_record(self, item: _Item) -> None:
        """The bot line needs both the words (transcript) and how they played (outcome)."""
        utterance, outcome = item.utterance, item.outcome
        if item.recorded or utterance is None or outcome is None or not utterance.text:
            return
        item.recorded = True
        words = utterance.text if outcome.heard else heard_words(utterance, outcome.played_ms)
        self._record(utterance, replace(outcome, text=words))

    async def close(self) -> None:
        # close() may run inside one of our own tasks (the model ended the session):
        # never cancel or await the task we are running in.
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

"""One media stream's playback, in memory: a queue of utterances spoken as paced 20 ms frames.

No ORM and no channel layer here: this runs per frame
(docs/design.md, "9. Media streams and the voice pipeline"). The consumer feeds it text
to say and mark echoes; it synthesizes (TTS yields 8 kHz μ-law), sends frames paced
against an absolute clock, sends a mark after each utterance and waits for its echo.
Barge-in cancels the current utterance, empties the queue and sends `clear`
(docs/plugin-behaviour.md, "Playback on a stream").
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from providers.audio import FRAME_BYTES, SILENCE_FRAME, FrameBuffer
from providers.errors import ProviderError

logger = logging.getLogger(__name__)

FRAME_SECONDS = FRAME_BYTES / 8000  # 20 ms
# As in the plugin: at most 8 utterances wait; the echo of a mark is awaited for the
# audio's duration plus 2 s, then playback moves on.
MAX_PENDING = 8
MARK_GRACE_SECONDS = 2.0

SendAudio = Callable[[bytes], Awaitable[None]]
Synthesize = Callable[[str], AsyncIterator[bytes]]


@dataclass
class Utterance:
    text: str
    done: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Playback:
    """Speaks queued utterances into one stream, one at a time."""

    def __init__(
        self,
        *,
        send_audio: SendAudio,
        send_mark: Callable[[str], Awaitable[None]],
        send_clear: Callable[[], Awaitable[None]],
        synthesize: Synthesize,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._send_audio = send_audio
        self._send_mark = send_mark
        self._send_clear = send_clear
        self._synthesize = synthesize
        self._clock = clock
        self._sleep = sleep
        self._queue: asyncio.Queue[Utterance] = asyncio.Queue()
        self._marks: dict[str, asyncio.Future[None]] = {}
        self._current: asyncio.Task[None] | None = None
        self._names = itertools.count(1)
        self._worker: asyncio.Task[None] | None = None
        self.frames_sent = 0

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name="playback")

    def say(self, text: str) -> Utterance | None:
        """Queue an utterance; None (and a warning) when the queue is full."""
        if self._queue.qsize() >= MAX_PENDING:
            logger.warning("Telephony TTS queue is full for stream; maxPending=%d", MAX_PENDING)
            return None
        utterance = Utterance(text)
        self._queue.put_nowait(utterance)
        return utterance

    def mark_done(self, name: str) -> None:
        future = self._marks.pop(name, None)
        if future is not None and not future.done():
            future.set_result(None)

    async def barge_in(self) -> None:
        """The caller spoke: stop talking now, drop what was queued, flush the carrier's buffer."""
        skipped = 0
        while not self._queue.empty():
            # Settled as skipped: the plugin once left them pending (plugin issue #9635).
            self._queue.get_nowait().done.set_result(False)
            skipped += 1
        speaking = self._current is not None and not self._current.done()
        if speaking and self._current is not None:
            self._current.cancel()
        for future in self._marks.values():
            if not future.done():
                future.set_result(None)
        self._marks.clear()
        if speaking or skipped:
            await self._send_clear()

    async def close(self) -> None:
        await self.barge_in()
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            utterance = await self._queue.get()
            self._current = asyncio.create_task(self._speak(utterance.text))
            try:
                await self._current
                spoken = True
            except asyncio.CancelledError:
                if self._worker is not None and self._worker.cancelling():
                    raise
                spoken = False
            except ProviderError as exc:
                logger.warning("stream playback failed: %s", exc)
                spoken = False
            if not utterance.done.done():
                utterance.done.set_result(spoken)

    async def _speak(self, text: str) -> None:
        frames = FrameBuffer()
        started = self._clock()
        sent = 0
        audio = self._synthesize(text)
        async for chunk in _with_keepalive(audio, self._keepalive):
            for frame in frames.push(chunk):
                sent = await self._paced(frame, started, sent)
        for frame in frames.flush():
            sent = await self._paced(frame, started, sent)
        if not sent:
            raise ProviderError("Telephony TTS produced no audio")
        await self._await_mark(duration=sent * FRAME_SECONDS)

    async def _keepalive(self) -> None:
        """Silence every 20 ms while synthesis has produced nothing yet.

        docs/plugin-behaviour.md, "Playback on a stream", step 2.
        """
        while True:
            await self._send_audio(SILENCE_FRAME)
            await self._sleep(FRAME_SECONDS)

    async def _paced(self, frame: bytes, started: float, sent: int) -> int:
        # Against an absolute clock, so one slow send doesn't push every later frame back.
        delay = started + sent * FRAME_SECONDS - self._clock()
        if delay > 0:
            await self._sleep(delay)
        await self._send_audio(frame)
        self.frames_sent += 1
        return sent + 1

    async def _await_mark(self, *, duration: float) -> None:
        name = f"tts-{next(self._names)}"
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._marks[name] = future
        await self._send_mark(name)
        try:
            await asyncio.wait_for(future, duration + MARK_GRACE_SECONDS)
        except TimeoutError:
            logger.info("mark %s not echoed in time; moving on", name)
        finally:
            self._marks.pop(name, None)


async def _with_keepalive(
    audio: AsyncIterator[bytes], keepalive: Callable[[], Coroutine[Any, Any, None]]
) -> AsyncIterator[bytes]:
    """Yield the audio; until its first chunk arrives, run the silence keep-alive."""
    filler = asyncio.create_task(keepalive())
    try:
        first = await anext(audio, None)
    finally:
        filler.cancel()
        await asyncio.gather(filler, return_exceptions=True)
    if first is None:
        return
    yield first
    async for chunk in audio:
        yield chunk

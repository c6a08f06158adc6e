"""One media socket's outbound frames: queued in order, written by one task, capped at 1 MiB.

docs/plugin-behaviour.md, "Media streams: limits and close codes".

The voice pipeline (playback, the realtime link) hands audio, marks and clears to the
consumer, which queues them here and returns at once: a slow peer never stalls pacing or
the caller's audio. One task at a time awaits the server's send for each frame in turn, so
frames go out in the order they were queued. That task starts eagerly: when the server takes
the frame at once (the usual case) it is written inside the call that queued it, with no
hop through the event loop's ready queue, where a busy loop would make every frame wait
behind everything else that is ready (docs/performance.md, "Concurrent streams").

Under ASGI, send returning is the only signal that the server accepted a frame (uvicorn
holds it while its transport buffer is over the high-water mark, i.e. while the peer is not
reading). Bytes queued or in flight but not yet accepted
are the socket's send buffer; past MAX_SEND_BUFFER_BYTES the writer stops and `on_full`
runs (the consumer tears the stream down and closes it with 1013).

Daphne never holds a send (it buffers in Twisted, out of the application's sight), so there
the cap only counts what our own queue holds.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from calls.streams.limits import MAX_SEND_BUFFER_BYTES, text_bytes

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Frame:
    kind: Literal["audio", "mark", "clear"]
    text: str
    size: int
    name: str = ""


class Outbound:
    """The ordered writer of one socket.

    `frames_accepted` counts the audio frames (20 ms each) the server accepted; audio that
    `clear` dropped is counted in `frames_dropped` and never in `frames_accepted`.
    """

    def __init__(
        self,
        send: Callable[[str], Awaitable[None]],
        on_full: Callable[[], Awaitable[None]],
        *,
        limit: int = MAX_SEND_BUFFER_BYTES,
    ) -> None:
        self._send = send
        self._on_full = on_full
        self.limit = limit
        self._queue: deque[_Frame] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._full: asyncio.Task[None] | None = None
        self.buffered = 0  # bytes queued or in flight, not yet accepted by the server
        self.frames_accepted = 0
        self.frames_dropped = 0
        self.stopped = False
        self.overflowed = False

    def audio(self, text: str) -> bool:
        """Queue an audio frame; False when the writer has stopped (it will never go out)."""
        return self._put(_Frame("audio", text, text_bytes(text)))

    def mark(self, text: str, name: str) -> bool:
        """Queue the mark frame `text` for the mark `name`."""
        return self._put(_Frame("mark", text, text_bytes(text), name))

    def clear(self, text: str) -> list[str]:
        """Barge-in: drop the queued audio, then queue the clear frame `text`.

        Queued audio would only play stale speech ahead of the clear, so it is dropped (the
        frame already handed to the server cannot be taken back and still counts as accepted).
        A mark stands for all the audio before it; a queued mark behind dropped audio would
        be echoed by the carrier as if that audio had played, so it is dropped too and its
        name returned (it will never be echoed). Marks whose audio all went out stay, in
        order, ahead of the clear. Returns the names of the dropped marks.
        """
        if self.stopped:
            return []
        kept: deque[_Frame] = deque()
        dropped_marks: list[str] = []
        audio_dropped = False
        for frame in self._queue:
            if frame.kind == "audio":
                audio_dropped = True
                self.frames_dropped += 1
                self.buffered -= frame.size
            elif frame.kind == "mark" and audio_dropped:
                dropped_marks.append(frame.name)
                self.buffered -= frame.size
            else:
                if frame.kind == "clear":
                    audio_dropped = False
                kept.append(frame)
        self._queue = kept
        self._put(_Frame("clear", text, text_bytes(text)))
        return dropped_marks

    def stop(self) -> None:
        """Nothing more goes out: drop the queue and stop the writer (before the close frame)."""
        self.stopped = True
        self._queue.clear()
        self.buffered = 0
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()

    def _put(self, frame: _Frame) -> bool:
        if self.stopped:
            return False
        self._queue.append(frame)
        self.buffered += frame.size
        if self.buffered > self.limit:
            self._overflow()
            return False
        if self._writer is None or self._writer.done():
            # Runs now, up to the first send the server holds (then it is a task like any
            # other); ends once the queue is empty, and the next frame starts another.
            self._writer = asyncio.eager_task_factory(
                asyncio.get_running_loop(), self._write(), name="stream-outbound"
            )
        return True

    def _overflow(self) -> None:
        logger.warning(
            "media stream send buffer over %d bytes (%d not accepted); closing 1013",
            self.limit,
            self.buffered,
        )
        self.overflowed = True
        self.stop()
        # Its own task: the frame that overflowed may come from the pipeline the close tears
        # down, which must not cancel or await itself.
        self._full = asyncio.get_running_loop().create_task(self._close_full(), name="stream-full")

    async def _close_full(self) -> None:
        try:
            await self._on_full()
        except OSError as exc:  # the peer went away while the close waited
            logger.debug("media stream gone while closing on a full send buffer: %r", exc)
        except Exception:  # logged, never left unretrieved in a task
            logger.exception("closing a media stream with a full send buffer failed")

    async def _write(self) -> None:
        while self._queue:
            frame = self._queue.popleft()
            try:
                await self._send(frame.text)
            except Exception as exc:  # the socket is gone: nothing more can go out
                logger.debug("media stream send failed, writer stops: %r", exc)
                self.stopped = True
                self._queue.clear()
                self.buffered = 0
                return
            self.buffered -= frame.size
            if frame.kind == "audio":
                self.frames_accepted += 1

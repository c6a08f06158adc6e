"""One media stream's playback, in memory: utterances spoken as paced 20 ms frames, and a
ledger of what the caller actually heard.

No ORM and no channel layer here: this runs per frame
(docs/design.md, "9. Media streams and the voice pipeline"). The session feeds it
utterances — text to synthesize, or audio a realtime model produces — and mark echoes. Each
utterance's audio goes out as 160-byte frames paced against an absolute clock, then a mark;
the mark's echo means the caller heard all of it. Barge-in cancels the current utterance,
skips the queue and sends `clear`; the ledger (frames sent, when the first one went) says
how much was played, and the words are cut to match (docs/voice-path.md).

Every utterance ends with exactly one `Outcome`, handed to `on_outcome`: that is where the
session writes the transcript line and answers a waiting `speak`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from calls.metrics import frame_lateness_sample
from providers.audio import FRAME_BYTES, SILENCE_FRAME, FrameBuffer
from providers.errors import ProviderError

logger = logging.getLogger(__name__)

FRAME_MS = FRAME_BYTES * 1000 // 8000  # 20
FRAME_SECONDS = FRAME_MS / 1000
# As in the plugin: at most 8 utterances wait; the echo of a mark is awaited for the
# audio's duration plus 2 s, then playback moves on.
MAX_PENDING = 8
MARK_GRACE_SECONDS = 2.0
# Speaking rate used to place a barge-in inside words whose audio was still being
# synthesized (total length unknown): about 15 characters a second.
CHARS_PER_SECOND = 15.0
TTS_FAILED = "TTS failed: "

SendAudio = Callable[[bytes], Awaitable[None]]
AudioSource = Callable[[], AsyncIterator[bytes]]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one utterance ended for the caller."""

    heard: bool  # all of it played (its mark echoed, or its time ran out; see _await_mark)
    interrupted: bool  # cut off by the caller, or never started because they barged in
    text: str  # the words played: all of them, or cut at a word boundary
    played_ms: int
    error: str | None = None  # "TTS failed: …" when synthesis failed


@dataclass(eq=False)
class Utterance:
    """One thing to say, and its ledger while it plays."""

    text: str
    source: AudioSource
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    frames: int = 0  # audio frames sent (not the keep-alive silence before them)
    started_at: float | None = None  # clock reading when the first audio frame went out
    audio_bytes: int = 0  # μ-law bytes the source produced so far
    complete: bool = False  # the source is exhausted: `audio_bytes` is the whole length
    outcome: Outcome | None = None
    done: asyncio.Future[Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Playback:
    """Speaks queued utterances into one stream, one at a time, and says what was heard."""

    def __init__(
        self,
        *,
        send_audio: SendAudio,
        send_mark: Callable[[str], Awaitable[None]],
        send_clear: Callable[[], Awaitable[None]],
        synthesize: Callable[[str], AsyncIterator[bytes]],
        on_outcome: Callable[[Utterance, Outcome], None] = lambda utterance, outcome: None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._send_audio = send_audio
        self._send_mark = send_mark
        self._send_clear = send_clear
        self._synthesize = synthesize
        self._on_outcome = on_outcome
        self._clock = clock
        self._sleep = sleep
        self._queue: asyncio.Queue[Utterance] = asyncio.Queue()
        self._marks: dict[str, asyncio.Future[None]] = {}
        self._playing: Utterance | None = None
        self._current: asyncio.Task[None] | None = None
        self._names = itertools.count(1)
        self._worker: asyncio.Task[None] | None = None
        self.frames_sent = 0
        self.tts_failures = 0

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name="playback")

    def say(self, text: str, *, utterance_id: str | None = None) -> Utterance | None:
        """Queue text to synthesize; None (and a warning) when the queue is full."""
        if self._queue.qsize() >= MAX_PENDING:
            logger.warning("Telephony TTS queue is full for stream; maxPending=%d", MAX_PENDING)
            return None
        utterance = Utterance(text, lambda: self._synthesize(text))
        if utterance_id:
            utterance.id = utterance_id
        self._queue.put_nowait(utterance)
        return utterance

    def play(self, source: AudioSource, *, utterance_id: str, text: str = "") -> Utterance:
        """Queue audio made elsewhere (a realtime model's item). Never refused: the model
        speaks one response at a time, so it cannot flood the queue."""
        utterance = Utterance(text, source, id=utterance_id)
        self._queue.put_nowait(utterance)
        return utterance

    def mark_done(self, name: str) -> None:
        future = self._marks.pop(name, None)
        if future is not None and not future.done():
            future.set_result(None)

    async def barge_in(self) -> None:
        """The caller spoke: stop talking now, drop what was queued, flush the carrier's buffer."""
        now = self._clock()
        skipped = 0
        while not self._queue.empty():
            # Settled as skipped: the plugin once left them pending (plugin issue #9635).
            self._settle(self._queue.get_nowait(), interrupted=True, now=now)
            skipped += 1
        playing = self._playing
        speaking = self._current is not None and not self._current.done()
        if speaking and playing is not None:
            # Settled here, before the task notices its cancellation, so the cut is
            # measured at the moment the caller spoke.
            self._settle(playing, interrupted=True, now=now)
            if self._current is not None:
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
            self._playing = utterance
            self._current = asyncio.create_task(self._speak(utterance))
            try:
                await self._current
                self._settle(utterance, interrupted=False, now=self._clock())
            except asyncio.CancelledError:
                if self._worker is not None and self._worker.cancelling():
                    raise
                self._settle(utterance, interrupted=True, now=self._clock())
            except ProviderError as exc:
                self.tts_failures += 1
                error = str(exc) if str(exc).startswith(TTS_FAILED) else f"{TTS_FAILED}{exc}"
                logger.warning("stream playback failed: %s", error)
                self._settle(utterance, interrupted=False, now=self._clock(), error=error)
            finally:
                self._playing = None

    def _settle(
        self, utterance: Utterance, *, interrupted: bool, now: float, error: str | None = None
    ) -> None:
        """Give the utterance its one outcome (later calls are no-ops)."""
        if utterance.outcome is not None:
            return
        played = _played_ms(utterance, now)
        if interrupted and utterance.complete and played >= _total_ms(utterance):
            # All of it had played and only the echo was still on its way: heard.
            interrupted = False
        whole = not interrupted and error is None
        outcome = Outcome(
            heard=whole and utterance.frames > 0,
            interrupted=interrupted or (error is not None and played > 0),
            text=utterance.text if whole else heard_words(utterance, played),
            played_ms=played if not whole else utterance.frames * FRAME_MS,
            error=error,
        )
        utterance.outcome = outcome
        if not utterance.done.done():
            utterance.done.set_result(outcome)
        self._on_outcome(utterance, outcome)

    async def _speak(self, utterance: Utterance) -> None:
        # Synthesis is read ahead of the pacing, so a barge-in knows the whole length of
        # the words as soon as the vendor finished (it is usually faster than real time).
        buffered: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        reader = asyncio.create_task(_read_ahead(utterance, buffered))
        try:
            frames = FrameBuffer()
            async for chunk in _with_keepalive(_drain(buffered), self._keepalive):
                for frame in frames.push(chunk):
                    await self._paced(frame, utterance)
            for frame in frames.flush():
                await self._paced(frame, utterance)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        if not utterance.frames:
            raise ProviderError("Telephony TTS produced no audio")
        await self._await_mark(duration=utterance.frames * FRAME_SECONDS)

    async def _keepalive(self) -> None:
        """Silence every 20 ms while synthesis has produced nothing yet.

        docs/plugin-behaviour.md, "Playback on a stream", step 2.
        """
        while True:
            # First a frame's wait: audio that is already on its way needs no filler.
            await self._sleep(FRAME_SECONDS)
            await self._send_audio(SILENCE_FRAME)

    async def _paced(self, frame: bytes, utterance: Utterance) -> None:
        # Against an absolute clock, so one slow send doesn't push every later frame back.
        if utterance.started_at is None:
            utterance.started_at = self._clock()
        delay = utterance.started_at + utterance.frames * FRAME_SECONDS - self._clock()
        if delay > 0:
            await self._sleep(delay)
        await self._send_audio(frame)
        frame_lateness_sample(utterance.frames, utterance.started_at, self._clock)
        utterance.frames += 1
        self.frames_sent += 1

    async def _await_mark(self, *, duration: float) -> None:
        name = f"tts-{next(self._names)}"
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._marks[name] = future
        await self._send_mark(name)
        try:
            await asyncio.wait_for(future, duration + MARK_GRACE_SECONDS)
        except TimeoutError:
            # Every frame went out paced at real time and the carrier took it; without its
            # echo we still count it heard, as the plugin moves on (docs/voice-path.md).
            logger.info("mark %s not echoed in time; moving on", name)
        finally:
            self._marks.pop(name, None)


async def _read_ahead(
    utterance: Utterance, out: asyncio.Queue[bytes | BaseException | None]
) -> None:
    """The utterance's audio into `out` as fast as it comes; None at the end, or the error.

    aclosing: a barge-in cancels this task, and the vendor's HTTP stream must end now, not
    whenever the abandoned generator is collected.
    """
    try:
        # Every source is an async generator (TTS stream, model item); the type says only
        # AsyncIterator, which has no aclose.
        async with aclosing(utterance.source()) as audio:  # type: ignore[type-var]
            async for chunk in audio:
                utterance.audio_bytes += len(chunk)
                out.put_nowait(chunk)
    except ProviderError as exc:
        out.put_nowait(exc)
        return
    utterance.complete = True
    out.put_nowait(None)


async def _drain(queue: asyncio.Queue[bytes | BaseException | None]) -> AsyncIterator[bytes]:
    while (item := await queue.get()) is not None:
        if isinstance(item, BaseException):
            raise item
        yield item


def _played_ms(utterance: Utterance, now: float) -> int:
    """How much of the utterance the caller can have heard by `now`.

    Frames go out paced at real time from `started_at`, so what was sent is at most a frame
    ahead of what played; the smaller of the two is what the caller heard.
    """
    if utterance.started_at is None:
        return 0
    sent_ms = utterance.frames * FRAME_MS
    elapsed_ms = max(0, round((now - utterance.started_at) * 1000))
    return min(sent_ms, elapsed_ms)


def _total_ms(utterance: Utterance) -> int:
    """The whole utterance's length (meaningful once `complete`)."""
    return -(-utterance.audio_bytes // FRAME_BYTES) * FRAME_MS


def heard_words(utterance: Utterance, played_ms: int) -> str:
    """The words of `utterance` the caller heard in `played_ms`, cut at a word boundary.

    The cut is proportional to the audio: of its whole length once synthesis finished, else
    of an estimate from the speaking rate (never shorter than what already played).
    """
    text = utterance.text.strip()
    if not text or played_ms <= 0:
        return ""
    if utterance.complete and utterance.audio_bytes:
        total_ms = _total_ms(utterance)
    else:
        total_ms = max(int(len(text) / CHARS_PER_SECOND * 1000), utterance.frames * FRAME_MS)
    if played_ms >= total_ms:
        return text
    cut = int(len(text) * played_ms / total_ms)
    head = text[:cut]
    if head and not head[-1].isspace() and not text[cut].isspace():
        # A word counts once all of it played: drop the one the cut falls inside.
        head = head[: len(head) - len(head.split()[-1])]
    return head.rstrip(" ,;:-")


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

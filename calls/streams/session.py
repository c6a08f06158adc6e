"""One attached media stream's voice pipeline: playback and STT, or the realtime model.

The consumer (calls/streams/consumer.py) owns the socket — admission, framing, close codes;
this owns what runs once a call is attached: building the TTS, STT or realtime adapters,
routing caller audio and marks to them, saying text, barge-in, and closing them all once.
It talks back to the socket only through the three send callables it is given.

What the caller heard is decided here, from the playback ledger (docs/voice-path.md): a bot
line is written once its words played (cut and flagged when the caller barged in), and a
`speak` that asked to wait is answered with the same outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

import httpx

from calls import clock, metrics
from calls.config import get_config
from calls.db_threads import stream_hop
from calls.exceptions import CallError
from calls.services.actions import call_end
from calls.services.stream_commands import (
    ACCEPTED,
    FINISHED,
    NO_STREAM,
    QUEUE_FULL,
    REFUSED,
    stream_loop_register,
    stream_reply,
)
from calls.services.stream_plans import realtime_enabled
from calls.services.streams import stream_heard, stream_spoken, stream_tts
from calls.streams.playback import TTS_FAILED, Outcome, Playback, Utterance
from calls.streams.realtime_link import DEFAULT_INSTRUCTIONS, RealtimeLink
from providers.errors import ProviderError
from providers.realtime import build_realtime, realtime_name
from providers.realtime.base import RealtimeSession
from providers.realtime.openai import END_CALL_TOOL
from providers.stt import build_stt, stt_name
from providers.stt.base import SttSession
from providers.tts import build_tts

logger = logging.getLogger(__name__)

_heard = stream_hop(stream_heard)
_spoken = stream_hop(stream_spoken)
_end_call = stream_hop(call_end)

Send = Callable[[bytes], Awaitable[None]]


# One pooled TTS client per event loop, shared by every stream this process holds: a client
# per utterance built a new SSL context on the loop each time (~17 ms), a quarter of the
# server's CPU at 50 streams (docs/performance.md, "Where the CPU goes").
_TTS_HTTP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)
_TTS_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
# Every live stream may be synthesizing at once; keep-alive for the ones that speak often.
_TTS_LIMITS = httpx.Limits(max_connections=512, max_keepalive_connections=64)


def tts_http() -> httpx.AsyncClient:
    """The running loop's shared TTS client (made on first use)."""
    loop = asyncio.get_running_loop()
    client = _TTS_HTTP.get(loop)
    if client is None or client.is_closed:
        client = _TTS_HTTP[loop] = httpx.AsyncClient(timeout=_TTS_TIMEOUT, limits=_TTS_LIMITS)
    return client


class SessionFailed(Exception):
    """The pipeline could not start; the message is the socket's close reason."""


class StreamSession:
    """Playback + STT (or the realtime model) for the call `call_id`."""

    def __init__(
        self,
        *,
        call_id: str,
        send_audio: Send,
        send_mark: Callable[[str], Awaitable[None]],
        send_clear: Callable[[], Awaitable[None]],
        on_ended: Callable[[], Awaitable[None]],
    ) -> None:
        self.call_id = call_id
        self._on_ended = on_ended
        # Sync code in other threads of this process reaches streams through this loop.
        stream_loop_register(asyncio.get_running_loop())
        self.playback = Playback(
            send_audio=send_audio,
            send_mark=send_mark,
            send_clear=send_clear,
            synthesize=self._synthesize,
            on_outcome=self._settled,
        )
        self.stt: SttSession | None = None
        self.realtime: RealtimeSession | None = None
        self.link: RealtimeLink | None = None
        self._tts: Callable[[str], AsyncIterator[bytes]] | None = None
        self._tts_error = ""
        # utterance id -> the `call.speak` message whose asker waits for its outcome.
        self._waiting: dict[str, dict[str, Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._writes: set[asyncio.Future[None]] = set()  # bot lines being written
        # (caller stopped, VAD decided) of the utterance whose transcript is pending.
        self._stopped: tuple[datetime, datetime] | None = None
        self._closed = False

    async def open(self, greeting: str | None) -> None:
        """Start the pipeline and say the deferred greeting; SessionFailed when it can't."""
        self.playback.start()
        if realtime_enabled():
            await self._open_realtime(greeting)
            return
        try:
            chain = build_tts(await stream_tts(self.call_id), http=tts_http())
            chain.on_provider_error = _tts_failed
            self._tts = chain.stream
        except ProviderError as exc:
            # Startup refuses a bad TTS config (calls/serving/startup.py); should one slip
            # through, the stream stays up and every utterance fails, reported and logged.
            self._tts_error = str(exc)
            logger.warning("call=%s TTS unavailable: %s", self.call_id, exc)
        try:
            self.stt = build_stt(get_config().section("streaming"), _Ears(self))
            await self.stt.connect()
        except ProviderError as exc:
            # Without ears the call can't go on: 1011, not a silent call
            # (docs/plugin-behaviour.md, "Media streams: limits and close codes").
            _stt_failed()
            logger.warning("call=%s STT connection failed: %s", self.call_id, exc)
            raise SessionFailed("STT connection failed") from exc
        if greeting:
            self.playback.say(greeting)

    async def _open_realtime(self, greeting: str | None) -> None:
        """Speech-to-speech: the model hears the caller and answers with audio.

        docs/plugin-behaviour.md, "Realtime voice".
        """
        cfg = get_config()
        self.link = RealtimeLink(
            call_id=self.call_id,
            playback=self.playback,
            record=self._record,
            on_ended=self._model_ended,
        )
        try:
            # The adapter takes its camelCase block as it is (providers own those keys).
            self.realtime = build_realtime(cfg.section("realtime"), self.link)
            await self.realtime.connect(
                instructions=cfg.realtime.instructions or DEFAULT_INSTRUCTIONS,
                greeting=greeting,
                tools=[END_CALL_TOOL, *(dict(tool) for tool in cfg.realtime.tools)],
            )
        except ProviderError as exc:
            metrics.provider_error(provider=realtime_name(cfg.section("realtime")), kind="realtime")
            logger.warning("call=%s realtime connection failed: %s", self.call_id, exc)
            raise SessionFailed("Realtime connection failed") from exc
        self.link.session = self.realtime

    def _synthesize(self, text: str) -> AsyncIterator[bytes]:
        if self._tts is None:
            raise ProviderError(f"{TTS_FAILED}{self._tts_error or 'no TTS provider'}")
        return self._tts(text)

    async def audio(self, ulaw: bytes) -> None:
        """Caller audio, to whoever listens."""
        if self.realtime is not None:
            await self.realtime.send_audio(ulaw)
        elif self.stt is not None:
            await self.stt.send_audio(ulaw)

    def mark_done(self, name: str) -> None:
        self.playback.mark_done(name)

    async def say(self, message: dict[str, Any]) -> None:
        """A `call.speak` from any process: say its text, and answer its asker (accepted or
        refused now; the outcome later if it waits)."""
        text = str(message.get("text", ""))
        utterance_id = str(message.get("utteranceId") or "") or None
        refusal = await self._queue_words(text, utterance_id)
        if refusal is not None:
            await stream_reply(message, {"type": REFUSED, "error": refusal})
            return
        if utterance_id and message.get("replyTo"):
            self._waiting[utterance_id] = message
        await stream_reply(message, {"type": ACCEPTED, "utteranceId": utterance_id})

    async def _queue_words(self, text: str, utterance_id: str | None) -> str | None:
        """Hand the words to the model or the playback queue; the refusal, if any."""
        if self.realtime is not None:
            try:
                await self.realtime.say(text, utterance_id=utterance_id)
            except ProviderError as exc:
                logger.warning("call=%s realtime say failed: %s", self.call_id, exc)
                return NO_STREAM
            return None
        if self._closed:
            return NO_STREAM
        if self.playback.say(text, utterance_id=utterance_id) is None:
            return QUEUE_FULL
        return None

    def speech_stopped(self, silence_ms: int) -> None:
        """The recognizer's VAD decided the caller stopped, `silence_ms` after they did."""
        now = clock.now()
        self._stopped = (now - timedelta(milliseconds=silence_ms), now)

    async def heard(self, text: str, *, final: bool) -> None:
        """The caller spoke: playback stops, and a final line is applied as speech — after
        the bot lines of what they heard, so the transcript keeps the order of the call."""
        await self.playback.barge_in()
        if final:
            await asyncio.gather(*list(self._writes), return_exceptions=True)
            stopped, endpointed = self._stopped or (None, None)
            self._stopped = None
            await _heard(
                call_id=self.call_id,
                text=text,
                is_final=True,
                stopped_at=stopped,
                endpointed_at=endpointed,
            )

    def _settled(self, utterance: Utterance, outcome: Outcome) -> None:
        """Playback's verdict on one utterance (on the loop; no I/O here)."""
        if self.link is not None and self.link.owns(utterance):
            self.link.settled(utterance, outcome)  # records once the words are known
            return
        self._record(utterance, outcome)

    def _record(self, utterance: Utterance, outcome: Outcome) -> None:
        task = asyncio.ensure_future(self._write(utterance, outcome, model=self.link is not None))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, utterance: Utterance, outcome: Outcome, *, model: bool) -> None:
        """The bot line as heard, then the answer to a waiting `speak` (so a caller that
        reads the transcript after `wait` finds the line)."""
        try:
            await _spoken(
                call_id=self.call_id,
                text=outcome.text,
                interrupted=outcome.interrupted,
                utterance_id=utterance.id,
                model=model,
                first_audio_at=_wall(utterance.started_at),
            )
        finally:
            message = self._waiting.pop(utterance.id, None)
            if message is not None:
                await stream_reply(
                    message,
                    {
                        "type": FINISHED,
                        "utteranceId": utterance.id,
                        "heard": outcome.heard,
                        "interrupted": outcome.interrupted,
                        **({"error": outcome.error} if outcome.error else {}),
                    },
                )

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` on the loop, keeping a reference until it finishes."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _model_ended(self) -> None:
        with contextlib.suppress(CallError):
            await _end_call(call_id=self.call_id)
        await self._on_ended()

    async def close(self) -> None:
        """Stop playback, STT and the model; runs once. Lines of what was heard so far are
        written before it returns."""
        if self._closed:
            return
        self._closed = True
        await self.playback.close()
        if self.stt is not None:
            await self.stt.close()
        if self.realtime is not None:
            await self.realtime.close()
        if self.link is not None:
            await self.link.close()
        # The transcript writes and `speak` answers of the final outcomes.
        await asyncio.gather(*list(self._writes), return_exceptions=True)


def _tts_failed(provider: str) -> None:
    metrics.provider_error(provider=provider, kind="tts")


def _stt_failed() -> None:
    metrics.provider_error(provider=stt_name(get_config().section("streaming")), kind="stt")


def _wall(monotonic: float | None) -> datetime | None:
    """A time.monotonic() reading as a wall-clock time (the playback ledger uses the former)."""
    if monotonic is None:
        return None
    return clock.now() - timedelta(seconds=time.monotonic() - monotonic)


class _Ears:
    """STT callbacks (sync, on the event loop) turned into session tasks."""

    def __init__(self, session: StreamSession) -> None:
        self.session = session

    def on_partial(self, text: str) -> None:
        """Partials are not acted on; speech start already interrupted playback."""

    def on_final(self, text: str) -> None:
        self.session.spawn(self.session.heard(text, final=True))

    def on_speech_stop(self, silence_ms: int) -> None:
        self.session.speech_stopped(silence_ms)

    def on_speech_start(self) -> None:
        self.session.spawn(self.session.playback.barge_in())

    def on_error(self, message: str) -> None:
        _stt_failed()
        logger.warning("call=%s STT error: %s", self.session.call_id, message)

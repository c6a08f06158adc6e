"""One attached media stream's voice pipeline: playback and STT, or the realtime model.

The consumer (calls/streams/consumer.py) owns the socket — admission, framing, close codes;
this owns what runs once a call is attached: building the TTS, STT or realtime adapters,
routing caller audio and marks to them, saying text, barge-in, and closing them all once.
It talks back to the socket only through the three send callables it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from channels.db import database_sync_to_async

from calls.config import get_config
from calls.exceptions import CallError
from calls.services.actions import call_end
from calls.services.stream_plans import realtime_enabled
from calls.services.streams import stream_heard
from calls.streams.playback import Playback
from calls.streams.realtime_link import DEFAULT_INSTRUCTIONS, RealtimeLink
from providers.errors import ProviderError
from providers.realtime import build_realtime
from providers.realtime.base import RealtimeSession
from providers.realtime.openai import END_CALL_TOOL
from providers.stt import build_stt
from providers.stt.base import SttSession
from providers.tts import build_tts

logger = logging.getLogger(__name__)

_heard = database_sync_to_async(stream_heard)
_end_call = database_sync_to_async(call_end)

Send = Callable[[bytes], Awaitable[None]]


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
        self._send_audio = send_audio
        self._send_mark = send_mark
        self._send_clear = send_clear
        self._on_ended = on_ended
        self.playback: Playback | None = None
        self.stt: SttSession | None = None
        self.realtime: RealtimeSession | None = None
        self.link: RealtimeLink | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def open(self, greeting: str | None) -> None:
        """Start the pipeline and say the deferred greeting; SessionFailed when it can't."""
        if realtime_enabled():
            await self._open_realtime(greeting)
            return
        self.playback = Playback(
            send_audio=self._send_audio,
            send_mark=self._send_mark,
            send_clear=self._send_clear,
            synthesize=build_tts(get_config().tts).stream,
        )
        self.playback.start()
        try:
            self.stt = build_stt(get_config().section("streaming"), _Ears(self))
            await self.stt.connect()
        except ProviderError as exc:
            # Without ears the call can't go on: 1011, not a silent call
            # (docs/plugin-behaviour.md, "Media streams: limits and close codes").
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
            send_audio=self._send_audio,
            send_clear=self._send_clear,
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
            logger.warning("call=%s realtime connection failed: %s", self.call_id, exc)
            raise SessionFailed("Realtime connection failed") from exc

    async def audio(self, ulaw: bytes) -> None:
        """Caller audio, to whoever listens."""
        if self.realtime is not None:
            await self.realtime.send_audio(ulaw)
        elif self.stt is not None:
            await self.stt.send_audio(ulaw)

    def mark_done(self, name: str) -> None:
        if self.playback is not None:
            self.playback.mark_done(name)

    async def say(self, text: str) -> None:
        """Words from any process (the `call.speak` layer message)."""
        if self.realtime is not None:
            try:
                await self.realtime.say(text)
            except ProviderError as exc:
                logger.warning("call=%s realtime say failed: %s", self.call_id, exc)
        elif self.playback is not None:
            self.playback.say(text)

    async def heard(self, text: str, *, final: bool) -> None:
        """The caller spoke: playback stops, and a final line is applied as speech."""
        if self.playback is not None:
            await self.playback.barge_in()
        if final:
            await _heard(call_id=self.call_id, text=text, is_final=True)

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
        """Stop playback, STT and the model; runs once."""
        if self._closed:
            return
        self._closed = True
        if self.playback is not None:
            await self.playback.close()
        if self.stt is not None:
            await self.stt.close()
        if self.realtime is not None:
            await self.realtime.close()
        if self.link is not None:
            await self.link.close()


class _Ears:
    """STT callbacks (sync, on the event loop) turned into session tasks."""

    def __init__(self, session: StreamSession) -> None:
        self.session = session

    def on_partial(self, text: str) -> None:
        """Partials are not acted on; speech start already interrupted playback."""

    def on_final(self, text: str) -> None:
        self.session.spawn(self.session.heard(text, final=True))

    def on_speech_start(self) -> None:
        if self.session.playback is not None:
            self.session.spawn(self.session.playback.barge_in())

    def on_error(self, message: str) -> None:
        logger.warning("call=%s STT error: %s", self.session.call_id, message)

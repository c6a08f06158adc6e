"""The carrier media-stream websocket: parse frames with the carrier's codec, hand them on.

Thin on purpose, like every interface (docs/design.md, "3. Layout"): vendor framing lives
in the codec, playback in calls.streams.playback, state changes in calls.services.streams (reached
through database_sync_to_async only at start, stop and per transcript — never per audio
frame).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

from asgiref.typing import WebSocketResponseBodyEvent, WebSocketResponseStartEvent
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from calls.carrier import get_provider
from calls.config import get_config
from calls.exceptions import CallError
from calls.services.actions import call_end
from calls.services.events import event_apply
from calls.services.stream_commands import group_name
from calls.services.stream_plans import realtime_enabled
from calls.services.streams import (
    StreamRejected,
    stream_attach,
    stream_detach,
    stream_heard,
)
from calls.streams.playback import Playback
from calls.streams.realtime_link import DEFAULT_INSTRUCTIONS, RealtimeLink
from providers.base import EventType, NormalizedEvent
from providers.errors import ProviderError
from providers.media import (
    AudioIn,
    DtmfIn,
    MarkDone,
    MediaCodec,
    MediaProtocolError,
    StreamStart,
    StreamStop,
)
from providers.realtime import build_realtime
from providers.realtime.base import RealtimeSession
from providers.realtime.openai import END_CALL_TOOL
from providers.stt import build_stt
from providers.tts import build_tts

logger = logging.getLogger(__name__)

_attach = database_sync_to_async(stream_attach)
_detach = database_sync_to_async(stream_detach)
_heard = database_sync_to_async(stream_heard)
_apply = database_sync_to_async(event_apply)
_end_call = database_sync_to_async(call_end)

# Close codes of docs/plugin-behaviour.md, "Media streams: limits and close codes".
POLICY_VIOLATION, TRY_AGAIN_LATER, INTERNAL_ERROR = 1008, 1013, 1011


class Admission:
    """Per-process socket counts: pending (no valid start yet) in total and per peer, and all."""

    def __init__(self) -> None:
        self.total = 0
        self.pending: Counter[str] = Counter()

    def limits(self) -> tuple[int, int, int]:
        streaming = get_config().section("streaming")
        return (
            int(streaming.get("maxConnections", 128)),
            int(streaming.get("maxPendingConnections", 32)),
            int(streaming.get("maxPendingConnectionsPerIp", 4)),
        )


ADMISSION = Admission()


class MediaStreamConsumer(AsyncWebsocketConsumer):
    codec: MediaCodec
    playback: Playback | None = None
    realtime: RealtimeSession | None = None
    link: RealtimeLink | None = None
    call_id: str | None = None
    stream_id: str | None = None

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels hops to a thread (aclose_old_connections) before every handler; for 50
        # frames/s per call that halves capacity. Our database work is explicit and rare, so
        # frames skip the hop (docs/performance.md, "Channels: a thread hop per message").
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        limit_all, limit_pending, limit_peer = ADMISSION.limits()
        self.peer = (self.scope.get("client") or ("unknown", 0))[0]
        if ADMISSION.total >= limit_all:
            await self._deny_busy()
            return
        self.codec = get_provider().media_codec()
        self.codec.upgrade(_upgrade_headers(self.scope))
        ADMISSION.total += 1
        self.admitted = True
        await self.accept()
        if (
            sum(ADMISSION.pending.values()) >= limit_pending
            or ADMISSION.pending[self.peer] >= limit_peer
        ):
            await self.close(TRY_AGAIN_LATER, "Too many pending media stream connections")
            return
        ADMISSION.pending[self.peer] += 1
        self.is_pending = True
        timeout = int(get_config().section("streaming").get("preStartTimeoutMs", 5000)) / 1000
        self.start_timer = asyncio.create_task(self._start_timeout(timeout))

    async def _deny_busy(self) -> None:
        """503 at the upgrade when the process is full (streaming.maxConnections).

        docs/plugin-behaviour.md, "Media streams: limits and close codes".
        """
        # The ASGI spec lets a server omit extensions (daphne does); asgiref also allows None.
        if "websocket.http.response" in (self.scope.get("extensions") or {}):
            body = b"Too many media stream connections"
            await self.send_message(
                {
                    "type": "websocket.http.response.start",
                    "status": 503,
                    "headers": [(b"content-type", b"text/plain")],
                }
            )
            await self.send_message(
                {"type": "websocket.http.response.body", "body": body, "more_body": False}
            )
        else:
            await self.close()

    async def send_message(
        self, message: WebSocketResponseStartEvent | WebSocketResponseBodyEvent
    ) -> None:
        await self.base_send(message)

    async def _start_timeout(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if self.call_id is None:
            await self.close(POLICY_VIOLATION, "Start timeout")

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            event = self.codec.decode(text_data if text_data is not None else bytes_data or b"")
        except MediaProtocolError as exc:
            if self.call_id is None or str(exc) == "Duplicate start":
                await self.close(POLICY_VIOLATION, str(exc)[:120])
            else:
                logger.warning("call=%s undecodable media frame: %s", self.call_id, exc)
            return
        if isinstance(event, AudioIn):
            if self.realtime is not None:
                await self.realtime.send_audio(event.ulaw)
            elif self.stt is not None:
                await self.stt.send_audio(event.ulaw)
        elif isinstance(event, MarkDone):
            if self.playback is not None:
                self.playback.mark_done(event.name)
        elif isinstance(event, StreamStart):
            await self._start(event)
        elif isinstance(event, DtmfIn):
            await self._dtmf(event.digit)
        elif isinstance(event, StreamStop):
            await self._teardown()
            await self.close()

    stt: Any = None

    async def _start(self, start: StreamStart) -> None:
        try:
            attached = await _attach(
                provider_call_id=start.provider_call_id,
                token=start.token,
                stream_id=start.stream_id,
            )
        except StreamRejected as exc:
            await self.close(POLICY_VIOLATION, exc.message)
            return
        self._leave_pending()
        self.call_id, self.stream_id = attached.call_id, start.stream_id
        await self.channel_layer.group_add(group_name(self.call_id), self.channel_name)
        if realtime_enabled():
            await self._start_realtime(attached.greeting)
            return
        self.playback = Playback(
            send_audio=self._send_audio,
            send_mark=self._send_mark,
            send_clear=self._send_clear,
            synthesize=build_tts(get_config().tts).stream,
        )
        self.playback.start()
        try:
            self.stt = build_stt(get_config().section("streaming"), _Heard(self))
            await self.stt.connect()
        except ProviderError as exc:
            # Without ears the call can't go on (reference latest: 1011, not a silent call).
            logger.warning("call=%s STT connection failed: %s", self.call_id, exc)
            await self._teardown()
            await self.close(INTERNAL_ERROR, "STT connection failed")
            return
        if attached.greeting:
            self.playback.say(attached.greeting)

    async def _start_realtime(self, greeting: str | None) -> None:
        """Speech-to-speech: the model hears the caller and answers with audio.

        docs/plugin-behaviour.md, "Realtime voice".
        """
        settings = get_config().section("realtime")
        assert self.call_id is not None
        self.link = RealtimeLink(
            call_id=self.call_id,
            send_audio=self._send_audio,
            send_clear=self._send_clear,
            on_ended=self._model_ended,
        )
        try:
            self.realtime = build_realtime(settings, self.link)
            await self.realtime.connect(
                instructions=str(settings.get("instructions") or DEFAULT_INSTRUCTIONS),
                greeting=greeting,
                tools=[END_CALL_TOOL, *(settings.get("tools") or [])],
            )
        except ProviderError as exc:
            logger.warning("call=%s realtime connection failed: %s", self.call_id, exc)
            await self._teardown()
            await self.close(INTERNAL_ERROR, "Realtime connection failed")

    async def _model_ended(self) -> None:
        if self.call_id is not None:
            with contextlib.suppress(CallError):
                await _end_call(call_id=self.call_id)
        await self._teardown()
        await self.close()

    async def _dtmf(self, digit: str) -> None:
        if self.call_id is None:
            return
        await _apply(
            provider=get_provider().name,
            event=NormalizedEvent(
                type=EventType.DTMF,
                id=f"stream:{self.stream_id}:dtmf:{digit}:{id(object())}",
                call_id=self.call_id,
                digits=digit,
            ),
        )

    async def _send_audio(self, ulaw: bytes) -> None:
        await self.send(text_data=self.codec.encode_audio(ulaw))

    async def _send_mark(self, name: str) -> None:
        await self.send(text_data=self.codec.encode_mark(name))

    async def _send_clear(self) -> None:
        await self.send(text_data=self.codec.encode_clear())

    async def call_speak(self, message: dict[str, Any]) -> None:
        """Layer event from any process: say this on the stream."""
        text = str(message.get("text", ""))
        if self.realtime is not None:
            try:
                await self.realtime.say(text)
            except ProviderError as exc:
                logger.warning("call=%s realtime say failed: %s", self.call_id, exc)
        elif self.playback is not None:
            self.playback.say(text)

    async def heard(self, text: str, *, final: bool) -> None:
        if self.playback is not None:
            await self.playback.barge_in()
        if final and self.call_id is not None:
            await _heard(call_id=self.call_id, text=text, is_final=True)

    async def close(self, code: int | None = None, reason: str | None = None) -> None:
        # Counted out as soon as we close, not when the server reports the disconnect.
        self._release()
        await super().close(code, reason)

    def _release(self) -> None:
        self._leave_pending()
        if getattr(self, "admitted", False):
            ADMISSION.total -= 1
            self.admitted = False

    async def disconnect(self, code: int) -> None:
        self._release()
        await self._teardown()

    async def _teardown(self) -> None:
        """Stop playback and STT, leave the group and detach from the call; runs once."""
        if getattr(self, "torn_down", False):
            return
        self.torn_down = True
        timer = getattr(self, "start_timer", None)
        if timer is not None:
            timer.cancel()
        if self.playback is not None:
            await self.playback.close()
        if self.stt is not None:
            await self.stt.close()
        if self.realtime is not None:
            await self.realtime.close()
        if self.link is not None:
            await self.link.close()
        if self.call_id is not None:
            await self.channel_layer.group_discard(group_name(self.call_id), self.channel_name)
            await _detach(call_id=self.call_id, stream_id=self.stream_id or "")

    def _leave_pending(self) -> None:
        if getattr(self, "is_pending", False):
            self.is_pending = False
            ADMISSION.pending[self.peer] -= 1
            if ADMISSION.pending[self.peer] <= 0:
                del ADMISSION.pending[self.peer]


def _upgrade_headers(scope: Mapping[str, Any]) -> dict[str, str]:
    """ASGI header pairs as a dict with lower-case names (the codec reads its carrier's)."""
    return {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers", [])
    }


class _Heard:
    """STT callbacks (sync, on the event loop) turned into consumer tasks."""

    def __init__(self, consumer: MediaStreamConsumer) -> None:
        self.consumer = consumer
        self.tasks: set[asyncio.Task[None]] = set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def on_partial(self, text: str) -> None:
        """Partials are not acted on; speech start already interrupted playback."""

    def on_final(self, text: str) -> None:
        self._spawn(self.consumer.heard(text, final=True))

    def on_speech_start(self) -> None:
        if self.consumer.playback is not None:
            self._spawn(self.consumer.playback.barge_in())

    def on_error(self, message: str) -> None:
        logger.warning("call=%s STT error: %s", self.consumer.call_id, message)

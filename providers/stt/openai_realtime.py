"""OpenAI Realtime API, transcription intent, over a websocket.

docs/plugin-behaviour.md, "Speech-to-text".

wss://api.openai.com/v1/realtime?intent=transcription with `OpenAI-Beta: realtime=v1`:
we send `transcription_session.update` (g711_ulaw input, server VAD) and
`input_audio_buffer.append`; the server sends
`conversation.item.input_audio_transcription.delta` / `.completed`,
`input_audio_buffer.speech_started`, `conversation.item.input_audio_transcription.failed`
and `error`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from providers.common import number_setting, openai_realtime_url
from providers.errors import ProviderNotConfigured, ProviderUnavailable
from providers.stt.base import SttCallbacks, SttSession

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-4o-transcribe"
DEFAULT_SILENCE_MS = 800
DEFAULT_VAD_THRESHOLD = 0.5
PREFIX_PADDING_MS = 300
CONNECT_TIMEOUT_S = 10.0
MAX_RECONNECTS = 5
BACKOFF_BASE_S = 1.0
# 20 ms frames: 250 queued frames is 5 s of audio. Past that the service is not keeping
# up and older speech is worth less than not growing without bound.
MAX_QUEUED_FRAMES = 250

Sleep = Callable[[float], Awaitable[None]]

EV_DELTA = "conversation.item.input_audio_transcription.delta"
EV_COMPLETED = "conversation.item.input_audio_transcription.completed"
EV_FAILED = "conversation.item.input_audio_transcription.failed"
EV_SPEECH_STARTED = "input_audio_buffer.speech_started"
EV_ERROR = "error"


def realtime_url(base_url: str | None) -> str:
    """ws(s)://<host>/v1/realtime?intent=transcription from an http(s) or ws(s) base URL."""
    return openai_realtime_url(base_url, "intent=transcription")


def _number(block: Mapping[str, Any], key: str, default: float) -> float:
    return number_setting(block, key, default, path="streaming.providers.openai")


class OpenAiRealtimeStt(SttSession):
    """One transcription websocket per call, with the plugin's reconnect policy."""

    def __init__(
        self,
        *,
        api_key: str,
        callbacks: SttCallbacks,
        model: str = DEFAULT_MODEL,
        silence_duration_ms: int = DEFAULT_SILENCE_MS,
        vad_threshold: float = DEFAULT_VAD_THRESHOLD,
        base_url: str | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        max_reconnects: int = MAX_RECONNECTS,
        backoff_base_s: float = BACKOFF_BASE_S,
        sleep: Sleep = asyncio.sleep,
        max_queued_frames: int = MAX_QUEUED_FRAMES,
    ) -> None:
        self.url = realtime_url(base_url)
        self._api_key = api_key
        self._callbacks = callbacks
        self._model = model
        self._silence_ms = silence_duration_ms
        self._vad_threshold = vad_threshold
        self._connect_timeout_s = connect_timeout_s
        self._max_reconnects = max_reconnects
        self._backoff_base_s = backoff_base_s
        self._sleep = sleep
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(max_queued_frames)
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._partials: dict[str, str] = {}
        self._closing = False
        self.dropped_frames = 0

    @classmethod
    def from_settings(
        cls, block: Mapping[str, Any], callbacks: SttCallbacks, **kwargs: Any
    ) -> OpenAiRealtimeStt:
        """From `streaming.providers.openai`: apiKey, model, silenceDurationMs, vadThreshold,
        baseUrl (our addition, for proxies and tests)."""
        api_key = str(block.get("apiKey") or "").strip()
        if not api_key:
            raise ProviderNotConfigured(
                "streaming.providers.openai.apiKey is required (or set OPENAI_API_KEY)"
            )
        return cls(
            api_key=api_key,
            callbacks=callbacks,
            model=str(block.get("model") or DEFAULT_MODEL),
            silence_duration_ms=int(_number(block, "silenceDurationMs", DEFAULT_SILENCE_MS)),
            vad_threshold=_number(block, "vadThreshold", DEFAULT_VAD_THRESHOLD),
            base_url=str(block.get("baseUrl") or "") or None,
            **kwargs,
        )

    # -- public interface -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        ws = self._ws
        return ws is not None and not self._closing and ws.close_code is None

    async def connect(self) -> None:
        if self._closing:
            raise ProviderUnavailable("STT session is closed")
        self._ws = await self._open()
        self._reader = asyncio.create_task(self._read_loop(), name="stt-openai-reader")
        self._writer = asyncio.create_task(self._write_loop(), name="stt-openai-writer")

    async def send_audio(self, ulaw: bytes) -> None:
        if not ulaw:
            return
        if not self.connected:
            self.dropped_frames += 1
            return
        try:
            self._queue.put_nowait(ulaw)
        except asyncio.QueueFull:
            self.dropped_frames += 1

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        for task in (self._writer, self._reader):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        for task in (self._writer, self._reader):
            if task is not None and task is not asyncio.current_task():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()

    # -- connection -------------------------------------------------------------------

    def session_update(self) -> dict[str, Any]:
        return {
            "type": "transcription_session.update",
            "session": {
                "input_audio_format": "g711_ulaw",
                "input_audio_transcription": {"model": self._model},
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": self._vad_threshold,
                    "prefix_padding_ms": PREFIX_PADDING_MS,
                    "silence_duration_ms": self._silence_ms,
                },
            },
        }

    async def _open(self) -> ClientConnection:
        """Connect (10 s timeout) and configure the session; ProviderUnavailable on failure."""
        headers = {"Authorization": f"Bearer {self._api_key}", "OpenAI-Beta": "realtime=v1"}
        try:
            ws = await connect(
                self.url, additional_headers=headers, open_timeout=self._connect_timeout_s
            )
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise ProviderUnavailable(f"STT connection failed: {_describe(exc)}") from exc
        try:
            await ws.send(json.dumps(self.session_update()))
        except BaseException as exc:  # cancelled by close() too: do not leak the socket
            with contextlib.suppress(Exception):
                await ws.close()
            if isinstance(exc, ConnectionClosed):
                raise ProviderUnavailable(f"STT connection failed: {_describe(exc)}") from exc
            raise
        return ws

    async def _reconnect(self) -> bool:
        """Reference policy: up to N attempts, backoff base * 2**(attempt-1)."""
        for attempt in range(1, self._max_reconnects + 1):
            await self._sleep(self._backoff_base_s * 2 ** (attempt - 1))
            if self._closing:
                return False
            try:
                self._ws = await self._open()
            except ProviderUnavailable as exc:
                log.warning("STT reconnect %d/%d failed: %s", attempt, self._max_reconnects, exc)
                continue
            log.info("STT reconnected after %d attempt(s)", attempt)
            return True
        return False

    # -- tasks ------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        while not self._closing:
            ws = self._ws
            if ws is not None:
                await self._read_until_closed(ws)
            if self._closing:
                return
            # Lost mid-call: the old partials belong to items the server will not finish.
            self._partials.clear()
            if not await self._reconnect():
                if not self._closing:
                    self._ws = None
                    self._emit_error(
                        f"STT connection lost; {self._max_reconnects} reconnect attempts failed"
                    )
                return

    async def _read_until_closed(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                self._dispatch(message)
        except ConnectionClosed as exc:
            log.warning("STT socket closed: %s", _describe(exc))

    async def _write_loop(self) -> None:
        while True:
            frames = [await self._queue.get()]
            # Coalesce whatever else is waiting: fewer, larger appends after a stall.
            while not self._queue.empty():
                frames.append(self._queue.get_nowait())
            ws = self._ws
            if ws is None or not self.connected:
                self.dropped_frames += len(frames)
                continue
            event = {
                "type": "input_audio_buffer.append",
                "audio": base64.b64encode(b"".join(frames)).decode("ascii"),
            }
            try:
                await ws.send(json.dumps(event))
            except ConnectionClosed:
                # The reader sees the same close and reconnects; these frames are lost.
                self.dropped_frames += len(frames)

    # -- events -----------------------------------------------------------------------

    def _dispatch(self, message: str | bytes) -> None:
        try:
            event = json.loads(message)
        except (TypeError, ValueError):
            log.warning("STT sent a non-JSON message")
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        try:
            if kind == EV_DELTA:
                self._on_delta(event)
            elif kind == EV_COMPLETED:
                self._on_completed(event)
            elif kind == EV_SPEECH_STARTED:
                self._callbacks.on_speech_start()
            elif kind in (EV_ERROR, EV_FAILED):
                self._emit_error(_error_message(event))
        except Exception:  # a callback bug must not kill the reader (and the call's STT)
            log.exception("STT callback failed for %s", kind)

    def _on_delta(self, event: Mapping[str, Any]) -> None:
        delta = event.get("delta")
        if not isinstance(delta, str) or not delta:
            return
        # Keyed by item: with server VAD a new utterance can start streaming before the
        # previous one's completed event arrives.
        item = str(event.get("item_id") or "")
        text = self._partials.get(item, "") + delta
        self._partials[item] = text
        self._callbacks.on_partial(text)

    def _on_completed(self, event: Mapping[str, Any]) -> None:
        self._partials.pop(str(event.get("item_id") or ""), None)
        transcript = event.get("transcript")
        if isinstance(transcript, str) and transcript.strip():
            self._callbacks.on_final(transcript.strip())

    def _emit_error(self, message: str) -> None:
        try:
            self._callbacks.on_error(message)
        except Exception:
            log.exception("STT on_error callback failed")


def _error_message(event: Mapping[str, Any]) -> str:
    error = event.get("error")
    if isinstance(error, Mapping) and error.get("message"):
        return f"STT error: {error['message']}"
    return f"STT error: {event.get('type')}"


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__

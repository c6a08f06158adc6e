"""OpenAI Realtime API (GA protocol), transcription session, over a websocket.

docs/plugin-behaviour.md, "Speech-to-text".

wss://api.openai.com/v1/realtime?intent=transcription with `Authorization: Bearer` and no
`OpenAI-Beta` header. Names as in the openai SDK 3.57 `types/realtime/`:

- we send `session.update` whose `session` is a transcription session (`type:
  "transcription"`): `audio.input.format {type: "audio/pcmu"}` (G.711 μ-law, 8 kHz; the
  beta API's `g711_ulaw`), `audio.input.transcription.model` and
  `audio.input.turn_detection` (server VAD); then `input_audio_buffer.append`;
- the server sends `conversation.item.input_audio_transcription.delta` (partials) /
  `.completed` (finals) / `.failed`, `input_audio_buffer.speech_started` / `.speech_stopped` and
  `error`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from providers.common import api_key_setting, openai_realtime_url
from providers.errors import ProviderUnavailable
from providers.openai_realtime_socket import OpenAiRealtimeSocket, ServerVad
from providers.stt.base import SttCallbacks, SttSession

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-4o-transcribe"
DEFAULT_VAD = ServerVad(silence_duration_ms=800)
CONNECT_TIMEOUT_S = 10.0
MAX_RECONNECTS = 5
BACKOFF_BASE_S = 1.0
# 20 ms frames: 250 queued frames is 5 s of audio. Past that the service is not keeping
# up and older speech is worth less than not growing without bound.
MAX_QUEUED_FRAMES = 250

Sleep = Callable[[float], Awaitable[None]]

PCMU: dict[str, str] = {"type": "audio/pcmu"}

EV_DELTA = "conversation.item.input_audio_transcription.delta"
EV_COMPLETED = "conversation.item.input_audio_transcription.completed"
EV_FAILED = "conversation.item.input_audio_transcription.failed"
EV_SPEECH_STARTED = "input_audio_buffer.speech_started"
EV_SPEECH_STOPPED = "input_audio_buffer.speech_stopped"
EV_ERROR = "error"
SETTINGS_PATH = "streaming.providers.openai"


def realtime_url(base_url: str | None) -> str:
    """ws(s)://<host>/v1/realtime?intent=transcription from an http(s) or ws(s) base URL."""
    return openai_realtime_url(base_url, "intent=transcription")


class OpenAiRealtimeStt(OpenAiRealtimeSocket, SttSession):
    """One transcription websocket per call, with the plugin's reconnect policy."""

    label = "STT"
    # 100 ms appends: a fifth of the sends, for at most 80 ms later recognition of the end
    # of a turn, next to the VAD's 800 ms of silence. Realtime voice, where the model
    # answers straight from the audio, keeps sending every frame.
    append_every_s = 0.1

    def __init__(
        self,
        *,
        api_key: str,
        callbacks: SttCallbacks,
        model: str = DEFAULT_MODEL,
        vad: ServerVad = DEFAULT_VAD,
        base_url: str | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        max_reconnects: int = MAX_RECONNECTS,
        backoff_base_s: float = BACKOFF_BASE_S,
        sleep: Sleep = asyncio.sleep,
        max_queued_frames: int = MAX_QUEUED_FRAMES,
    ) -> None:
        super().__init__(
            url=realtime_url(base_url),
            api_key=api_key,
            connect_timeout_s=connect_timeout_s,
            max_queued_frames=max_queued_frames,
        )
        self._callbacks = callbacks
        self._model = model
        self._vad = vad
        self._max_reconnects = max_reconnects
        self._backoff_base_s = backoff_base_s
        self._sleep = sleep
        self._partials: dict[str, str] = {}

    @classmethod
    def from_settings(
        cls, block: Mapping[str, Any], callbacks: SttCallbacks, **kwargs: Any
    ) -> OpenAiRealtimeStt:
        """From `streaming.providers.openai`: apiKey, model, silenceDurationMs, vadThreshold,
        baseUrl (our addition, for proxies and tests)."""
        return cls(
            api_key=api_key_setting(block, path=SETTINGS_PATH, env="OPENAI_API_KEY"),
            callbacks=callbacks,
            model=str(block.get("model") or DEFAULT_MODEL),
            vad=ServerVad.from_settings(
                block, path=SETTINGS_PATH, default_silence_ms=DEFAULT_VAD.silence_duration_ms
            ),
            base_url=str(block.get("baseUrl") or "") or None,
            **kwargs,
        )

    # -- public interface -------------------------------------------------------------

    async def connect(self) -> None:
        if self._closing:
            raise ProviderUnavailable("STT session is closed")
        self._ws = await self._open([self.session_update()])
        self._spawn(self._read_loop(), "stt-openai-reader")
        self._spawn(self._write_loop(), "stt-openai-writer")

    # -- connection -------------------------------------------------------------------

    def session_update(self) -> dict[str, Any]:
        """The opening event: a GA transcription session taking μ-law, with server VAD."""
        return {
            "type": "session.update",
            "session": {
                "type": "transcription",
                "audio": {
                    "input": {
                        "format": dict(PCMU),
                        "transcription": {"model": self._model},
                        "turn_detection": self._vad.turn_detection(),
                    }
                },
            },
        }

    async def _reconnect(self) -> bool:
        """Reference policy: up to N attempts, backoff base * 2**(attempt-1)."""
        for attempt in range(1, self._max_reconnects + 1):
            await self._sleep(self._backoff_base_s * 2 ** (attempt - 1))
            if self._closing:
                return False
            try:
                self._ws = await self._open([self.session_update()])
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
                lost = await self._receive(ws)
                if lost is not None:
                    log.warning("STT socket closed: %s", lost)
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

    # -- events -----------------------------------------------------------------------

    async def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        try:
            if kind == EV_DELTA:
                self._on_delta(event)
            elif kind == EV_COMPLETED:
                self._on_completed(event)
            elif kind == EV_SPEECH_STARTED:
                self._callbacks.on_speech_start()
            elif kind == EV_SPEECH_STOPPED:
                # Server VAD reports the stop once `silence_duration_ms` of silence passed.
                self._callbacks.on_speech_stop(self._vad.silence_duration_ms)
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

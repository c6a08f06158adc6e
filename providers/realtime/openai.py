"""OpenAI Realtime API (GA protocol), speech-to-speech over a websocket.

docs/plugin-behaviour.md, "Realtime voice".

wss://api.openai.com/v1/realtime?model=gpt-realtime with `Authorization: Bearer`. This is
the GA protocol (openai SDK 3.57 `types/realtime/`), which takes no `OpenAI-Beta` header:

- we send `session.update` with `session.type:"realtime"`, `audio.input.format` and
  `audio.output.format` `{type:"audio/pcmu"}` (G.711 μ-law, 8 kHz; the beta API called it
  `g711_ulaw`), server VAD, input transcription, voice, instructions and function tools;
  `input_audio_buffer.append`; `response.create` (greeting, after tool output);
  `response.cancel` (barge-in); `conversation.item.truncate` (what the caller heard of an
  interrupted item); `conversation.item.create` with a `function_call_output`;
- the server sends `response.created` / `response.done`, `response.output_audio.delta`,
  `response.output_audio.done`, `response.output_audio_transcript.done`,
  `input_audio_buffer.speech_started`, `conversation.item.input_audio_transcription.completed`,
  `response.function_call_arguments.done` and `error`. The beta names of the output
  events (`response.audio.delta`, `response.audio.done`, `response.audio_transcript.done`)
  are accepted too. A `say` tags its response with `metadata.utteranceId`, which
  `response.created` echoes, so its audio is known as that utterance's.

There is no reconnect: the conversation lives in the server session, so a lost socket
ends the call (the handler hears on_closed).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from providers.common import api_key_setting, openai_realtime_url
from providers.errors import ProviderUnavailable
from providers.openai_realtime_socket import (
    OpenAiRealtimeSocket,
    RealtimeConnection,
    ServerVad,
    describe,
)
from providers.realtime.base import RealtimeHandler, RealtimeSession

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-realtime"
DEFAULT_VOICE = "alloy"
DEFAULT_TRANSCRIPTION_MODEL = "gpt-4o-transcribe"
# The API's own server-VAD defaults, spelled out so the session does not depend on them.
DEFAULT_VAD = ServerVad(silence_duration_ms=500)
CONNECT_TIMEOUT_S = 10.0
# 20 ms frames: 250 queued frames is 5 s of caller audio. Past that the service is not
# keeping up, and stale speech is worth less than not growing without bound.
MAX_QUEUED_FRAMES = 250

PCMU: dict[str, str] = {"type": "audio/pcmu"}

END_CALL_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "end_call",
    "description": "Hang up the call when the conversation is over.",
    "parameters": {"type": "object", "properties": {"reason": {"type": "string"}}},
}

# A stored initialMessage becomes the opening turn's instruction, in the plugin's words
# (docs/plugin-behaviour.md, "Realtime voice").
GREETING_INSTRUCTION = (
    "Start the call by greeting the caller naturally. Include this greeting: {greeting}"
)

EV_RESPONSE_CREATED = "response.created"
EV_RESPONSE_DONE = "response.done"
EV_AUDIO_DELTA = frozenset({"response.output_audio.delta", "response.audio.delta"})
EV_AUDIO_DONE = frozenset({"response.output_audio.done", "response.audio.done"})
EV_ASSISTANT_TRANSCRIPT = frozenset(
    {"response.output_audio_transcript.done", "response.audio_transcript.done"}
)
EV_USER_TRANSCRIPT = "conversation.item.input_audio_transcription.completed"
EV_SPEECH_STARTED = "input_audio_buffer.speech_started"
EV_FUNCTION_CALL = "response.function_call_arguments.done"
EV_ERROR = "error"
SETTINGS_PATH = "realtime.providers.openai"


def realtime_url(base_url: str | None, model: str) -> str:
    """ws(s)://<host>/v1/realtime?model=<model> from an http(s) or ws(s) base URL."""
    return openai_realtime_url(base_url, urlencode({"model": model}))


class OpenAiRealtime(OpenAiRealtimeSocket, RealtimeSession):
    """One call's websocket to the OpenAI Realtime API."""

    label = "realtime"

    def __init__(
        self,
        *,
        api_key: str,
        handler: RealtimeHandler,
        model: str = DEFAULT_MODEL,
        voice: str = DEFAULT_VOICE,
        base_url: str | None = None,
        transcription_model: str = DEFAULT_TRANSCRIPTION_MODEL,
        vad: ServerVad = DEFAULT_VAD,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        max_queued_frames: int = MAX_QUEUED_FRAMES,
    ) -> None:
        super().__init__(
            url=realtime_url(base_url, model),
            api_key=api_key,
            connect_timeout_s=connect_timeout_s,
            max_queued_frames=max_queued_frames,
        )
        self._handler = handler
        self._voice = voice
        self._transcription_model = transcription_model
        self._vad = vad
        self._ended = False
        # The response the model is producing now (None when idle), and the ones we
        # cancelled: their late audio deltas must not reach the caller after a barge-in.
        self._response_id: str | None = None
        self._cancelled: set[str] = set()
        # response id -> the `say` utterance it speaks (from response.created metadata).
        self._utterances: dict[str, str] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._cancel_ids: set[str] = set()
        self._event_seq = itertools.count(1)
        self._pending_tools = 0

    @classmethod
    def from_settings(
        cls, block: Mapping[str, Any], handler: RealtimeHandler, **kwargs: Any
    ) -> OpenAiRealtime:
        """From `realtime.providers.openai`: apiKey, model, voice, baseUrl, and optionally
        transcriptionModel, vadThreshold, silenceDurationMs."""
        return cls(
            api_key=api_key_setting(block, path=SETTINGS_PATH),
            handler=handler,
            model=str(block.get("model") or DEFAULT_MODEL),
            voice=str(block.get("voice") or DEFAULT_VOICE),
            base_url=str(block.get("baseUrl") or "") or None,
            transcription_model=str(block.get("transcriptionModel") or DEFAULT_TRANSCRIPTION_MODEL),
            vad=ServerVad.from_settings(
                block, path=SETTINGS_PATH, default_silence_ms=DEFAULT_VAD.silence_duration_ms
            ),
            **kwargs,
        )

    # -- public interface -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return super().connected and not self._ended

    async def connect(
        self, *, instructions: str, greeting: str | None, tools: list[dict[str, Any]]
    ) -> None:
        if self._closing or self._ws is not None:
            raise ProviderUnavailable("realtime session already used; create a new one")
        self._instructions = instructions
        opening = [self.session_update(instructions, tools)]
        if greeting:
            opening.append(self.greeting_request(instructions, greeting))
        ws = await self._open(opening)
        if self._closing:  # close() ran while we were connecting
            await ws.close()
            raise ProviderUnavailable("realtime session closed while connecting")
        self._ws = ws
        self._spawn(self._read_loop(ws), "realtime-openai-reader")
        self._spawn(self._write_loop(), "realtime-openai-writer")

    async def say(self, text: str, *, utterance_id: str | None = None) -> None:
        request = self.say_request(getattr(self, "_instructions", ""), text, utterance_id)
        if not await self._send(request):
            raise ProviderUnavailable("realtime session is not connected")

    async def truncate(self, item_id: str, played_ms: int) -> None:
        # Asking past the item's audio is an error server-side, and nothing played needs
        # no cut: the item was never heard at all then, truncated to zero.
        await self._send(
            {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": max(0, int(played_ms)),
            }
        )

    @staticmethod
    def say_request(
        instructions: str, text: str, utterance_id: str | None = None
    ) -> dict[str, Any]:
        """A response whose words are given: the persona, then the exact text to say."""
        order = f"Say exactly this to the caller, then listen: {text.strip()}"
        full = f"{instructions.strip()}\n\n{order}" if instructions.strip() else order
        response: dict[str, Any] = {"instructions": full}
        if utterance_id:
            response["metadata"] = {"utteranceId": utterance_id}
        return {"type": "response.create", "response": response}

    # -- client events ----------------------------------------------------------------

    def session_update(self, instructions: str, tools: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "instructions": instructions,
                "output_modalities": ["audio"],
                "audio": {
                    "input": {
                        "format": dict(PCMU),
                        "transcription": {"model": self._transcription_model},
                        "turn_detection": self._turn_detection(),
                    },
                    "output": {"format": dict(PCMU), "voice": self._voice},
                },
                "tools": _unique_tools(tools),
                "tool_choice": "auto",
            },
        }

    def _turn_detection(self) -> dict[str, Any]:
        return {
            **self._vad.turn_detection(),
            "create_response": True,
            # We cancel on speech_started ourselves (and clear the carrier at the same
            # moment). Letting the server cancel as well would race our response.cancel
            # into "no active response" errors.
            "interrupt_response": False,
        }

    @staticmethod
    def greeting_request(instructions: str, greeting: str) -> dict[str, Any]:
        # Per-response instructions replace the session's for that response, so the
        # persona has to be repeated in front of the greeting instruction.
        opening = GREETING_INSTRUCTION.format(greeting=greeting.strip())
        text = f"{instructions.strip()}\n\n{opening}" if instructions.strip() else opening
        return {"type": "response.create", "response": {"instructions": text}}

    # -- tasks ------------------------------------------------------------------------

    async def _read_loop(self, ws: RealtimeConnection) -> None:
        lost = await self._receive(ws)  # None after a normal (1000/1001) close
        error = None if lost is None else f"OpenAI realtime connection lost: {lost}"
        if not self._closing:
            self._server_ended(error)

    def _server_ended(self, error: str | None) -> None:
        self._ended = True
        self._idle.set()  # release tool tasks waiting to send response.create
        if error is not None:
            log.warning("%s", error)
            self._call("on_error", error)
        self._call("on_closed")

    # -- server events ----------------------------------------------------------------

    async def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind in EV_AUDIO_DELTA:
            self._on_audio_delta(event)
        elif kind in EV_AUDIO_DONE:
            if isinstance(event.get("item_id"), str):
                self._call("on_audio_done", event["item_id"])
        elif kind == EV_SPEECH_STARTED:
            await self._on_speech_started()
        elif kind == EV_RESPONSE_CREATED:
            self._on_response_created(event)
        elif kind == EV_RESPONSE_DONE:
            self._on_response_done(event)
        elif kind == EV_USER_TRANSCRIPT:
            self._on_transcript("on_user_transcript", event)
        elif kind in EV_ASSISTANT_TRANSCRIPT:
            self._on_transcript("on_assistant_transcript", event, str(event.get("item_id") or ""))
        elif kind == EV_FUNCTION_CALL:
            self._on_function_call(event)
        elif kind == EV_ERROR:
            self._on_error(event)

    def _on_audio_delta(self, event: Mapping[str, Any]) -> None:
        if event.get("response_id") in self._cancelled:
            return  # already in flight when the caller barged in
        try:
            audio = base64.b64decode(str(event.get("delta") or ""), validate=True)
        except (binascii.Error, ValueError):
            log.warning("OpenAI realtime sent undecodable audio")
            return
        if audio:
            item_id = str(event.get("item_id") or event.get("response_id") or "unknown")
            utterance_id = self._utterances.get(str(event.get("response_id") or ""))
            self._call("on_audio", audio, item_id, utterance_id)

    async def _on_speech_started(self) -> None:
        # Clear even when no response is in progress: the model generates faster than
        # real time, so a finished response can still be queued towards the carrier.
        self._call("on_clear")
        response_id = self._response_id
        if response_id is None or response_id in self._cancelled:
            return
        self._cancelled.add(response_id)
        event_id = f"cancel_{next(self._event_seq)}"
        # Remembered so a "nothing to cancel" error (the response ended while our
        # cancel was on the wire) is not reported as a failure.
        self._cancel_ids.add(event_id)
        await self._send(
            {"type": "response.cancel", "event_id": event_id, "response_id": response_id}
        )

    def _on_response_created(self, event: Mapping[str, Any]) -> None:
        self._response_id = _response_id(event) or "unknown"
        response = event.get("response")
        metadata = response.get("metadata") if isinstance(response, Mapping) else None
        if isinstance(metadata, Mapping) and isinstance(metadata.get("utteranceId"), str):
            self._utterances[self._response_id] = metadata["utteranceId"]
        self._idle.clear()

    def _on_response_done(self, event: Mapping[str, Any]) -> None:
        done = _response_id(event)
        # response.done is the last event of a response, so no more late deltas to drop.
        self._cancelled.discard(done or "")
        self._utterances.pop(done or "", None)
        if done is None or done == self._response_id:
            self._response_id = None
            self._idle.set()

    def _on_transcript(self, callback: str, event: Mapping[str, Any], *args: Any) -> None:
        text = event.get("transcript")
        if isinstance(text, str) and text.strip():
            self._call(callback, text.strip(), *args)

    def _on_error(self, event: Mapping[str, Any]) -> None:
        error = event.get("error")
        error = error if isinstance(error, Mapping) else {}
        if error.get("event_id") in self._cancel_ids:
            log.debug("OpenAI realtime: cancel had nothing to cancel: %s", error.get("message"))
            return
        message = error.get("message") or error.get("code") or "unknown error"
        self._call("on_error", f"OpenAI realtime error: {message}")

    # -- function tools ---------------------------------------------------------------

    def _on_function_call(self, event: Mapping[str, Any]) -> None:
        call_id = str(event.get("call_id") or "")
        if not call_id:
            log.warning("OpenAI realtime function call without call_id")
            return
        self._pending_tools += 1
        # A task, so the caller keeps hearing (and barging in) while the tool runs.
        self._spawn(
            self._run_tool(call_id, str(event.get("name") or ""), event.get("arguments")),
            f"realtime-tool-{call_id}",
        )

    async def _run_tool(self, call_id: str, name: str, raw_arguments: Any) -> None:
        try:
            result = await self._tool_result(name, raw_arguments)
            await self._send(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "function_call_output",
                        "call_id": call_id,
                        "output": json.dumps(result, default=str),
                    },
                }
            )
        finally:
            self._pending_tools -= 1
        if self._closing or self._ended:
            return  # e.g. end_call: the handler closed the session from inside the tool
        if self._pending_tools:
            return  # the last of parallel calls asks for the follow-up response
        # The response that made the call is still open until response.done; asking
        # for a new one before that is rejected as "already has an active response".
        await self._idle.wait()
        await self._send({"type": "response.create"})

    async def _tool_result(self, name: str, raw_arguments: Any) -> Any:
        try:
            arguments = json.loads(raw_arguments or "{}")
        except (TypeError, ValueError):
            arguments = None
        if not isinstance(arguments, dict):
            # Told to the model rather than to the bridge: it can retry with valid JSON.
            return {"error": f'Invalid arguments for tool "{name}": expected a JSON object'}
        try:
            return await self._handler.on_tool_call(name, arguments)
        except Exception as exc:
            log.exception("realtime tool %s failed", name)
            return {"error": f'Tool "{name}" failed: {describe(exc)}'}

    # -- helpers ----------------------------------------------------------------------

    def _call(self, callback: str, *args: Any) -> None:
        try:
            getattr(self._handler, callback)(*args)
        except Exception:  # a bridge bug must not kill the reader (and the call)
            log.exception("realtime %s callback failed", callback)


def _unique_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """First definition of each name: configured tools may already define end_call when
    the bridge appends END_CALL_TOOL, and two definitions of one function are ambiguous."""
    seen: set[str] = set()
    unique: list[dict[str, Any]] = []
    for tool in tools:
        name = str(tool.get("name") or "")
        if name in seen:
            continue
        seen.add(name)
        unique.append(dict(tool))
    return unique


def _response_id(event: Mapping[str, Any]) -> str | None:
    response = event.get("response")
    if isinstance(response, Mapping) and isinstance(response.get("id"), str):
        return response["id"]
    return None

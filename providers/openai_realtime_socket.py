"""The websocket half of the OpenAI Realtime API, shared by STT and realtime voice.

Why it exists: providers/stt/openai_realtime.py (a transcription session) and
providers/realtime/openai.py (speech-to-speech) talk to the same `/v1/realtime` endpoint
with the same mechanics: Bearer auth, a connect timeout, JSON events both ways, caller audio
queued without waiting on the network and sent as `input_audio_buffer.append`, and a close
that stops every task. Those live here once; each subclass keeps its own protocol (what it
sends after connecting, what it does with the server's events, whether it reconnects).
docs/plugin-behaviour.md, "Speech-to-text" and "Realtime voice".

The socket itself is the openai SDK's realtime client (`AsyncOpenAI().realtime.connect`),
used for the connection only: events go out and come in as raw JSON, and the SDK's own
reconnect stays off (each subclass has its own policy).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import weakref
from abc import ABC, abstractmethod
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import openai
from openai.resources.realtime.realtime import AsyncRealtimeConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, WebSocketException

from providers.common import number_setting
from providers.errors import ProviderUnavailable

# The carriers' media frames: 20 ms of 8 kHz μ-law each.
FRAME_S = 0.02
# Both sessions let the server detect turns; audio kept from before speech starts.
PREFIX_PADDING_MS = 300
DEFAULT_VAD_THRESHOLD = 0.5
# Caller audio to the service: this, the base64 audio, and '"}' (see `_write_loop`).
_APPEND_HEAD = '{"type": "input_audio_buffer.append", "audio": "'

# One open socket to the service, as the SDK hands it out.
RealtimeConnection = AsyncRealtimeConnection

# One SDK client per event loop and (API key, URL), shared by every socket this process
# opens. A client per socket built the SDK's HTTP pool, and with it a new SSL context, each
# time (~17 ms on the loop): 31 % of the server's CPU while 200 streams came up
# (docs/performance.md, "Concurrent streams"). The pool itself is never used (sockets only),
# so a client forgotten below holds no connection and needs no closing.
_SDK_CLIENTS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str], openai.AsyncOpenAI]
] = weakref.WeakKeyDictionary()
# More than a few keys or URLs in one process means the config changed under it.
_MAX_SDK_CLIENTS = 8


def sdk_client(api_key: str, websocket_base_url: str) -> openai.AsyncOpenAI:
    """The running loop's SDK client for this key and URL (made on first use)."""
    clients = _SDK_CLIENTS.setdefault(asyncio.get_running_loop(), {})
    key = (api_key, websocket_base_url)
    client = clients.get(key)
    if client is None:
        if len(clients) >= _MAX_SDK_CLIENTS:
            clients.pop(next(iter(clients)))  # the oldest
        client = clients[key] = openai.AsyncOpenAI(
            api_key=api_key, websocket_base_url=websocket_base_url, max_retries=0
        )
    return client


def describe(exc: BaseException) -> str:
    """An exception for a message: its text, or its type when it has none."""
    return str(exc) or type(exc).__name__


@dataclass(frozen=True, slots=True)
class ServerVad:
    """The server-side turn detection both sessions configure: how loud is speech, and how
    much silence ends a turn."""

    threshold: float = DEFAULT_VAD_THRESHOLD
    silence_duration_ms: int = 500

    @classmethod
    def from_settings(
        cls, block: Mapping[str, Any], *, path: str, default_silence_ms: int
    ) -> ServerVad:
        """`vadThreshold` and `silenceDurationMs` of a provider block (`path` names it in
        errors)."""
        threshold = number_setting(block, "vadThreshold", DEFAULT_VAD_THRESHOLD, path=path)
        silence = number_setting(block, "silenceDurationMs", default_silence_ms, path=path)
        return cls(threshold=threshold, silence_duration_ms=int(silence))

    def turn_detection(self) -> dict[str, Any]:
        """The `turn_detection` object of a session update."""
        return {
            "type": "server_vad",
            "threshold": self.threshold,
            "prefix_padding_ms": PREFIX_PADDING_MS,
            "silence_duration_ms": self.silence_duration_ms,
        }


class OpenAiRealtimeSocket(ABC):
    """One call's socket to wss://…/v1/realtime: open, send events and audio, read, close.

    `url` is built by the subclass (providers.common.openai_realtime_url). Server events
    reach `_on_event`; the subclass starts its reader (around `_receive`) and the writer
    (`_write_loop`) with `_spawn`, and `close` stops every spawned task.
    """

    # Names the session in errors and logs ("STT connection failed: …").
    label: ClassVar[str] = "OpenAI realtime"
    # Headers beyond Authorization and the SDK's own; the GA protocol needs none.
    extra_headers: ClassVar[Mapping[str, str]] = {}
    # How long caller audio gathers before one `input_audio_buffer.append` carries it; 0
    # sends each frame as it comes. Per append the server pays JSON, base64, a websocket
    # mask and a socket write: one per 20 ms frame was a third of a busy server's CPU
    # (docs/performance.md, "Where the CPU goes").
    append_every_s: ClassVar[float] = 0.0

    def __init__(
        self, *, url: str, api_key: str, connect_timeout_s: float, max_queued_frames: int
    ) -> None:
        self.url = url
        self._api_key = api_key
        self._connect_timeout_s = connect_timeout_s
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(max_queued_frames)
        self._conn: RealtimeConnection | None = None
        # False once the reader (or a send) has seen `_conn` close.
        self._up = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self.dropped_frames = 0
        # The subclass's module logger, so log lines keep naming the session's module.
        self._log = logging.getLogger(type(self).__module__)

    @property
    def _ws(self) -> RealtimeConnection | None:
        """The open socket (None before connect and after close); assigning one marks it up."""
        return self._conn

    @_ws.setter
    def _ws(self, conn: RealtimeConnection | None) -> None:
        self._conn = conn
        self._up = conn is not None

    @property
    def connected(self) -> bool:
        """True while audio sent now would reach the service."""
        return self._conn is not None and self._up and not self._closing

    async def send_audio(self, ulaw: bytes) -> None:
        """Queue 8 kHz μ-law for the writer; never waits, drops (and counts) when down or full."""
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
        """Stop for good: every spawned task, then the socket. Safe to call twice."""
        if self._closing:
            return
        self._closing = True
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()

    # -- connection -------------------------------------------------------------------

    async def _open(self, events: Sequence[Mapping[str, Any]]) -> RealtimeConnection:
        """Connect and send the opening `events`; ProviderUnavailable when either fails."""
        base_url, query = _split_realtime_url(self.url)
        client = sdk_client(self._api_key, base_url)
        manager = client.realtime.connect(extra_query=query, extra_headers=dict(self.extra_headers))
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                conn = await manager.enter()
        except TimeoutError as exc:  # ours (no text), or the websockets handshake's own
            reason = str(exc) or f"no answer within {self._connect_timeout_s:g} s"
            raise ProviderUnavailable(f"{self.label} connection failed: {reason}") from exc
        except (OSError, WebSocketException, openai.OpenAIError) as exc:
            raise ProviderUnavailable(f"{self.label} connection failed: {describe(exc)}") from exc
        try:
            for event in events:
                await conn.send_raw(json.dumps(event))
        except BaseException as exc:  # cancelled by close() too: do not leak the socket
            with contextlib.suppress(Exception):
                await conn.close()
            if isinstance(exc, (ConnectionClosed, openai.OpenAIError)):
                raise ProviderUnavailable(
                    f"{self.label} connection failed: {describe(exc)}"
                ) from exc
            raise
        return conn

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run `coro` as a task that close() cancels."""
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, event: Mapping[str, Any]) -> bool:
        """Send one client event; False when there is no open socket (the reader reports it)."""
        return await self._send_text(json.dumps(event))

    async def _send_text(self, text: str) -> bool:
        """`_send` of an event already in JSON."""
        conn = self._conn
        if conn is None or self._closing:
            return False
        try:
            await conn.send_raw(text)
        except (ConnectionClosed, openai.OpenAIError):
            if self._conn is conn:
                self._up = False
            return False
        return True

    # -- tasks ------------------------------------------------------------------------

    async def _receive(self, ws: RealtimeConnection) -> str | None:
        """Hand each server event to `_on_event` until `ws` closes.

        Returns why the socket was lost, or None for a normal (1000/1001) close.
        """
        try:
            while True:
                event = self._decode(await ws.recv_bytes())
                if event is not None:
                    await self._on_event(event)
        except ConnectionClosedOK:
            return None
        except ConnectionClosed as exc:
            return describe(exc)
        finally:
            if self._conn is ws:
                self._up = False

    async def _write_loop(self) -> None:
        """Send queued caller audio; frames that cannot go now are dropped and counted."""
        while True:
            frames = [await self._queue.get()]
            if self.append_every_s:
                # Let the frames of the next moments join this one (the carrier sends one
                # every 20 ms); the queue's bound and drop count stay per frame.
                await asyncio.sleep(self.append_every_s - FRAME_S)
            # Coalesce whatever else is waiting: fewer, larger appends after a stall.
            while not self._queue.empty():
                frames.append(self._queue.get_nowait())
            # Base64 holds no character JSON escapes, so the event is two constant halves
            # around it: no encoder per append.
            audio = base64.b64encode(b"".join(frames)).decode("ascii")
            if not self.connected or not await self._send_text(_APPEND_HEAD + audio + '"}'):
                self.dropped_frames += len(frames)

    def _decode(self, message: str | bytes) -> dict[str, Any] | None:
        try:
            event = json.loads(message)
        except (TypeError, ValueError):
            self._log.warning("%s sent a non-JSON message", self.label)
            return None
        return event if isinstance(event, dict) else None

    @abstractmethod
    async def _on_event(self, event: dict[str, Any]) -> None:
        """One server event (a JSON object), in the order the server sent them."""


def _split_realtime_url(url: str) -> tuple[str, dict[str, str]]:
    """ws(s)://host/…/v1/realtime?q as the SDK takes it: the base it appends `/realtime` to,
    and the query."""
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path.removesuffix("/realtime"), "", ""))
    return base, dict(parse_qsl(parts.query))

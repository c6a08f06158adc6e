"""The carrier media-stream websocket: admit it, parse frames with the carrier's codec, hand on.

Thin on purpose, like every interface (docs/design.md, "3. Layout"): vendor framing lives
in the codec, the voice pipeline of an attached call in calls/streams/session.py, state
changes in calls/services/streams.py (reached through `stream_hop` only at
start, stop and per transcript — never per audio frame).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping
from typing import Any

from asgiref.typing import WebSocketResponseBodyEvent, WebSocketResponseStartEvent
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer

from calls.admission import Admission, Lease, LeasedAdmission, Slot
from calls.carrier import get_provider
from calls.config import get_config
from calls.db_threads import stream_hop
from calls.drain import draining
from calls.services.events import event_apply
from calls.services.stream_commands import group_name
from calls.services.streams import (
    StreamRejected,
    stream_attach,
    stream_detach,
)
from calls.streams.dispatch import dispatch_from
from calls.streams.limits import frame_too_big
from calls.streams.outbound import Outbound
from calls.streams.session import SessionFailed, StreamSession
from providers.base import EventType, NormalizedEvent
from providers.media import (
    AudioIn,
    DtmfIn,
    MarkDone,
    MediaCodec,
    MediaProtocolError,
    StreamStart,
    StreamStop,
)

logger = logging.getLogger(__name__)

_attach = stream_hop(stream_attach)
_detach = stream_hop(stream_detach)
_apply = stream_hop(event_apply)

# Close codes of docs/plugin-behaviour.md, "Media streams: limits and close codes".
POLICY_VIOLATION, TRY_AGAIN_LATER, INTERNAL_ERROR = 1008, 1013, 1011
MESSAGE_TOO_BIG = 1009
# Bodies of the 503 at the upgrade.
TOO_MANY, SHUTTING_DOWN = b"Too many media stream connections", b"Server shutting down"


class StreamAdmission:
    """Sockets in all, across the deployment (503 past maxConnections), and this process's
    sockets without a valid start yet, in all and per peer (1013 past the pending limits).

    `holder` names the process on its leases; tests give two instances two names to play
    two processes sharing one database.
    """

    def __init__(self, holder: str | None = None) -> None:
        self.connections = LeasedAdmission(holder)
        self.pending = Admission()


ADMISSION = StreamAdmission()


class MediaStreamConsumer(AsyncWebsocketConsumer):
    """Admission, framing and close codes of one carrier media socket; the voice pipeline of
    an attached call is its StreamSession."""

    codec: MediaCodec
    connection: Lease | None = None
    pending: Slot | None = None
    start_timer: asyncio.Task[None] | None = None
    session: StreamSession | None = None
    call_id: str | None = None
    stream_id: str | None = None
    torn_down: bool = False
    outbound: Outbound | None = None
    close_sent: bool = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Channels' AsyncConsumer.__call__, with a loop that costs nothing per message
        (calls/streams/dispatch.py)."""
        self.scope = scope
        layer = get_channel_layer(self.channel_layer_alias)
        layer_receive = None
        if layer is not None:
            self.channel_layer = layer
            self.channel_name = await layer.new_channel()
            layer_receive = functools.partial(layer.receive, self.channel_name)
        self.base_send = send
        try:
            await dispatch_from(receive, layer_receive, self.dispatch)
        except StopConsumer:
            pass

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels hops to a thread (aclose_old_connections) before every handler; for 50
        # frames/s per call that halves capacity. Our database work is explicit and rare, so
        # frames skip the hop (docs/performance.md, "Channels: a thread hop per message").
        kind = message["type"]
        # A leading underscore would name a private method: no message may call one.
        handler = None if kind.startswith("_") else getattr(self, kind.replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"No handler for message type {kind}")
        await handler(message)

    async def connect(self) -> None:
        streaming = get_config().streaming
        peer = (self.scope.get("client") or ("unknown", 0))[0]
        if draining():  # this process is shutting down: the carrier connects elsewhere
            await self._deny_busy(SHUTTING_DOWN)
            return
        self.connection = await ADMISSION.connections.take(limit=streaming.max_connections)
        if self.connection is None:
            await self._deny_busy()
            return
        try:
            self.codec = get_provider().media_codec()
            self.codec.upgrade(_upgrade_headers(self.scope))
            await self.accept()
        except BaseException:
            await self._release()  # no disconnect follows a connect that raised
            raise
        # Every frame after the accept goes through one ordered writer with a capped buffer.
        self.outbound = Outbound(self._transport_send, self._send_buffer_full)
        self.pending = ADMISSION.pending.take(
            peer,
            limit=streaming.max_pending_connections,
            per_peer=streaming.max_pending_connections_per_ip,
        )
        if self.pending is None:
            await self.close(TRY_AGAIN_LATER, "Too many pending media stream connections")
            return
        timeout = streaming.pre_start_timeout_ms / 1000
        self.start_timer = asyncio.create_task(self._start_timeout(timeout))

    async def _deny_busy(self, body: bytes = TOO_MANY) -> None:
        """503 at the upgrade when the deployment is full (streaming.maxConnections) or this
        process is draining.

        docs/plugin-behaviour.md, "Media streams: limits and close codes".
        """
        # The ASGI spec lets a server omit extensions (daphne does); asgiref also allows None.
        if "websocket.http.response" in (self.scope.get("extensions") or {}):
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
        # Checked here, not only by uvicorn's ws_max_size: Daphne (runserver) lets 1 MiB in.
        if frame_too_big(text_data, bytes_data):
            await self.close(MESSAGE_TOO_BIG, "Message too big")
            await self._teardown()
            return
        try:
            event = self.codec.decode(text_data if text_data is not None else bytes_data or b"")
        except MediaProtocolError as exc:
            if self.call_id is None or str(exc) == "Duplicate start":
                await self.close(POLICY_VIOLATION, str(exc)[:120])
            else:
                logger.warning("call=%s undecodable media frame: %s", self.call_id, exc)
            return
        if isinstance(event, AudioIn):
            if self.session is not None:
                await self.session.audio(event.ulaw)
        elif isinstance(event, MarkDone):
            if self.session is not None:
                self.session.mark_done(event.name)
        elif isinstance(event, StreamStart):
            await self._start(event)
        elif isinstance(event, DtmfIn):
            await self._dtmf(event.digit)
        elif isinstance(event, StreamStop):
            await self._teardown()
            await self.close()

    async def _start(self, start: StreamStart) -> None:
        try:
            attached = await _attach(
                provider_call_id=start.provider_call_id,
                token=start.token,
                stream_id=start.stream_id,
                lease_id=self.connection.lease_id if self.connection is not None else None,
            )
        except StreamRejected as exc:
            await self.close(POLICY_VIOLATION, exc.message)
            return
        if self.pending is not None:
            self.pending.release()
        self.call_id, self.stream_id = attached.call_id, start.stream_id
        await self.channel_layer.group_add(group_name(self.call_id), self.channel_name)
        self.session = StreamSession(
            call_id=self.call_id,
            send_audio=self._send_audio,
            send_mark=self._send_mark,
            send_clear=self._send_clear,
            on_ended=self._model_ended,
        )
        try:
            await self.session.open(attached.greeting)
        except SessionFailed as exc:
            await self._teardown()
            await self.close(INTERNAL_ERROR, str(exc))

    async def _model_ended(self) -> None:
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

    # The pipeline's sends queue on the writer and return at once (calls/streams/outbound.py):
    # they never wait for a slow peer, and a peer that stops reading is closed 1013.
    async def _send_audio(self, ulaw: bytes) -> None:
        if self.outbound is not None:
            self.outbound.audio(self.codec.encode_audio(ulaw))

    async def _send_mark(self, name: str) -> None:
        if self.outbound is not None:
            self.outbound.mark(self.codec.encode_mark(name), name)

    async def _send_clear(self) -> None:
        # Queued audio (and marks behind it) is dropped, never sent nor counted as accepted.
        if self.outbound is not None:
            self.outbound.clear(self.codec.encode_clear())

    @property
    def frames_accepted(self) -> int:
        """Audio frames the server accepted for this socket (dropped ones never count)."""
        return self.outbound.frames_accepted if self.outbound is not None else 0

    async def _transport_send(self, text: str) -> None:
        await self.send(text_data=text)

    async def _send_buffer_full(self) -> None:
        """The peer stopped reading: more than 1 MiB not accepted by the server."""
        logger.warning("call=%s media stream send buffer full; closing 1013", self.call_id)
        try:
            # First: under uvicorn the close frame itself waits until the peer reads again.
            await self._teardown()
        finally:
            await self.close(TRY_AGAIN_LATER, "Backpressure: send buffer exceeded")

    async def call_speak(self, message: dict[str, Any]) -> None:
        """Layer event from any process: say this on the stream."""
        if self.session is not None:
            await self.session.say(message)

    async def close(self, code: int | None = None, reason: str | None = None) -> None:
        # Counted out as soon as we close, not when the server reports the disconnect.
        await self._release()
        # Nothing queued may follow the close frame: queued frames are dropped.
        if self.outbound is not None:
            self.outbound.stop()
        # Once only: servers refuse any message after the close (a second close can come
        # while the first waits for a peer that does not read, e.g. a `stop` frame).
        if self.close_sent:
            return
        self.close_sent = True
        await super().close(code, reason)

    async def _release(self) -> None:
        if self.pending is not None:
            self.pending.release()
        if self.connection is not None:
            await self.connection.release()

    async def disconnect(self, code: int) -> None:
        await self._release()
        if self.outbound is not None:
            self.outbound.stop()
        await self._teardown()

    async def _teardown(self) -> None:
        """Stop the pipeline, leave the group and detach from the call; runs once."""
        if self.torn_down:
            return
        self.torn_down = True
        if self.start_timer is not None:
            self.start_timer.cancel()
        if self.session is not None:
            await self.session.close()
        if self.call_id is not None:
            await self.channel_layer.group_discard(group_name(self.call_id), self.channel_name)
            await _detach(call_id=self.call_id, stream_id=self.stream_id or "")


def _upgrade_headers(scope: Mapping[str, Any]) -> dict[str, str]:
    """ASGI header pairs as a dict with lower-case names (the codec reads its carrier's)."""
    return {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers", [])
    }

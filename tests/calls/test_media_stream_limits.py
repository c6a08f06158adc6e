"""Media-stream limits enforced by the consumer under any ASGI server (Twilio framing).

docs/plugin-behaviour.md, "Media streams: limits and close codes": 503 past
`maxConnections`, 1013 past the pending caps, 1009 for frames over 64 KiB, 1013 when more
than 1 MiB waits for a peer that does not read.

Two servers drive the real ASGI router: channels' communicator, which like Daphne
(`runserver`) enforces no frame size and accepts every send at once, and uvicorn in this
process on a loopback socket, with real clients (the websockets library, or a raw socket
that stops reading). The voice pipeline is replaced by a session that only floods audio,
so the writer's cap is what is under test.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import httpx
import pytest
import uvicorn
import websockets
from channels.db import database_sync_to_async
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from calls.carrier import provider_settings, set_provider
from calls.models import Call
from calls.streams.consumer import StreamAdmission
from calls.streams.limits import MAX_FRAME_BYTES, MAX_SEND_BUFFER_BYTES
from providers.twilio import TwilioProvider
from tests.fakes.stream_socket import Socket, socket_open

TOKEN = "12345678901234567890123456789012"
CALL_SID = "CA00000000000000000000000000000007"
TWILIO: dict[str, Any] = {
    "provider": "twilio",
    "fromNumber": "+15550001234",
    "twilio": {
        "accountSid": "AC00000000000000000000000000000001",
        "authToken": TOKEN,
        "apiBaseUrl": "http://127.0.0.1:9",
    },
    "publicUrl": "https://voice.example.com/voice/webhook",
    "streaming": {
        "enabled": True,
        "preStartTimeoutMs": 5000,
        "providers": {"openai": {"apiKey": "sk-test"}},
    },
    "tts": {"provider": "openai", "providers": {"openai": {"apiKey": "sk-test"}}},
}
# 16000 bytes of μ-law (2 s) is a media frame of about 21 KB of JSON.
CHUNK_BYTES = 16000

pytestmark = pytest.mark.django_db(transaction=True)


class FloodSession:
    """Stands in for StreamSession: on open, sends `chunks` audio chunks as fast as it can.

    Chunk n is filled with byte n % 256, so a reader can check the order.
    """

    chunks: ClassVar[int] = 0
    instances: ClassVar[list[FloodSession]] = []

    def __init__(self, *, send_audio: Any, **_: Any) -> None:
        self.send_audio = send_audio
        self.closed = False
        self.task: asyncio.Task[None] | None = None
        FloodSession.instances.append(self)

    async def open(self, greeting: str | None) -> None:
        self.task = asyncio.create_task(self._flood())

    async def _flood(self) -> None:
        for n in range(self.chunks):
            await self.send_audio(bytes([n % 256]) * CHUNK_BYTES)
            await asyncio.sleep(0)

    async def audio(self, ulaw: bytes) -> None:
        pass

    def mark_done(self, name: str) -> None:
        pass

    async def say(self, message: Any) -> None:
        pass

    async def close(self) -> None:
        self.closed = True
        if self.task is not None:
            self.task.cancel()


def _streaming(configure: Any, monkeypatch: pytest.MonkeyPatch, **limits: int) -> None:
    raw = json.loads(json.dumps(TWILIO))
    raw["streaming"].update(limits)
    cfg = configure(raw)
    carrier_api = httpx.Client(
        transport=httpx.MockTransport(
            lambda request: httpx.Response(200, json={"sid": CALL_SID, "status": "completed"})
        )
    )
    set_provider(TwilioProvider(settings=provider_settings(cfg), http=carrier_api))
    monkeypatch.setattr("calls.streams.consumer.ADMISSION", StreamAdmission())
    monkeypatch.setattr("calls.streams.consumer.StreamSession", FloodSession)
    FloodSession.chunks = 0
    FloodSession.instances.clear()


@pytest.fixture
def streaming(configure: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _streaming(configure, monkeypatch)


@pytest.fixture
def application() -> Any:
    from voicecall_project.asgi import application

    return application


@database_sync_to_async
def _make_call() -> Call:
    return Call.objects.create(
        provider="twilio",
        provider_call_id=CALL_SID,
        direction="outbound",
        mode="conversation",
        state="answered",
        stream_token="good-token",
        metadata={},
    )


refresh = database_sync_to_async(lambda call: Call.objects.get(pk=call.pk))


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def _detached(call: Call) -> bool:
    """The stream attached and has since been detached (the call counts it lost)."""
    fresh = await refresh(call)
    return fresh.stream_id == "" and fresh.stream_lost_at is not None


async def _attached(call: Call) -> bool:
    return (await refresh(call)).stream_id == "MZ1"


def _start(padding: str = "") -> str:
    params = {"token": "good-token"}
    if padding:
        params["padding"] = padding
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": "MZ1",
            "start": {
                "streamSid": "MZ1",
                "accountSid": "AC1",
                "callSid": CALL_SID,
                "tracks": ["inbound"],
                "customParameters": params,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        },
        ensure_ascii=False,
    )


def _start_of_size(size: int) -> str:
    """A valid start frame of exactly `size` UTF-8 bytes (padded with 'é', 2 bytes each)."""
    base = len(_start("").encode()) + len(', "padding": ""')
    padding = "é" * ((size - base) // 2) + "x" * ((size - base) % 2)
    frame = _start(padding)
    assert len(frame.encode()) == size
    return frame


def _media(payload: bytes) -> str:
    return json.dumps(
        {
            "event": "media",
            "streamSid": "MZ1",
            "media": {"track": "inbound", "payload": base64.b64encode(payload).decode()},
        }
    )


_open = socket_open


# == 503 at the upgrade, 1013 for pending sockets ==============================================


async def test_past_max_connections_the_upgrade_is_answered_503_where_the_server_can(
    configure: Any, monkeypatch: pytest.MonkeyPatch, application: Any
) -> None:
    _streaming(configure, monkeypatch, maxConnections=2)
    extension: dict[str, Any] = {"websocket.http.response": {}}
    held = [await _open(application, extensions=extension) for _ in range(2)]
    third = Socket(application, extensions=extension)
    await third.send_input({"type": "websocket.connect"})
    start = await third.receive_output(timeout=5)
    body = await third.receive_output(timeout=5)
    assert (start["type"], start["status"]) == ("websocket.http.response.start", 503)
    assert body["body"] == b"Too many media stream connections"
    # A socket that leaves gives its place back.
    await held[0].disconnect()
    await (await _open(application, extensions=extension)).disconnect()
    await held[1].disconnect()


async def test_past_max_connections_without_http_responses_the_upgrade_is_refused(
    configure: Any, monkeypatch: pytest.MonkeyPatch, application: Any
) -> None:
    # Daphne offers no websocket.http.response extension: the consumer closes instead.
    _streaming(configure, monkeypatch, maxConnections=1)
    held = await _open(application)
    refused = Socket(application)
    assert await refused.connect(timeout=5) == (False, 1000)
    await held.disconnect()


async def test_past_max_pending_connections_in_all_a_socket_is_closed_1013(
    configure: Any, monkeypatch: pytest.MonkeyPatch, application: Any
) -> None:
    _streaming(configure, monkeypatch, maxPendingConnections=2, maxPendingConnectionsPerIp=4)
    held = [await _open(application, client=(f"10.0.0.{n}", 5000)) for n in (1, 2)]
    third = await _open(application, client=("10.0.0.3", 5000))
    closed = await third.receive_output(timeout=5)
    assert (closed["type"], closed["code"], closed.get("reason")) == (
        "websocket.close",
        1013,
        "Too many pending media stream connections",
    )
    # A socket that starts is no longer pending: a new one is admitted again.
    await _make_call()
    await held[0].send_to(text_data=_start())
    await _until(_attached_any)
    fourth = await _open(application, client=("10.0.0.4", 5000))
    assert await fourth.receive_nothing(timeout=0.2)
    for communicator in (*held, fourth):
        await communicator.disconnect()


async def _attached_any() -> bool:
    return await database_sync_to_async(Call.objects.filter(stream_id="MZ1").exists)()


# == 1009 for frames over 64 KiB ===============================================================


async def test_a_start_frame_of_64_kib_is_read(streaming: None, application: Any) -> None:
    call = await _make_call()
    communicator = await _open(application)
    await communicator.send_to(text_data=_start_of_size(MAX_FRAME_BYTES))
    await _until(lambda: _attached(call))
    await communicator.disconnect()


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(lambda: _start_of_size(MAX_FRAME_BYTES + 1), id="text-utf8-bytes"),
        pytest.param(lambda: _start("x" * MAX_FRAME_BYTES), id="text-ascii"),
        pytest.param(lambda: _start("é" * (MAX_FRAME_BYTES // 2)), id="fewer-chars-than-bytes"),
        pytest.param(lambda: _start().encode() + b" " * MAX_FRAME_BYTES, id="binary"),
    ],
)
async def test_a_frame_over_64_kib_is_closed_1009_before_it_is_read(
    streaming: None, application: Any, frame: Any
) -> None:
    # Each frame is a valid start: without the cap it would attach the call.
    call = await _make_call()
    communicator = await _open(application)
    data = frame()
    if isinstance(data, bytes):
        await communicator.send_to(bytes_data=data)
    else:
        await communicator.send_to(text_data=data)
    closed = await communicator.receive_output(timeout=5)
    assert (closed["type"], closed["code"], closed.get("reason")) == (
        "websocket.close",
        1009,
        "Message too big",
    )
    await asyncio.sleep(0.1)
    assert (await refresh(call)).stream_id == ""
    assert FloodSession.instances == []


async def test_a_media_frame_over_64_kib_on_an_attached_stream_closes_it_1009(
    streaming: None, application: Any
) -> None:
    call = await _make_call()
    communicator = await _open(application)
    await communicator.send_to(text_data=_start())
    await _until(lambda: _attached(call))
    await communicator.send_to(text_data=_media(b"\x7f" * 49152))  # 64 KiB of base64
    closed = await communicator.receive_output(timeout=5)
    assert (closed["code"], closed.get("reason")) == (1009, "Message too big")
    await _until(lambda: _detached(call))
    assert FloodSession.instances[-1].closed


# == 1013 for a peer that does not read ========================================================


def _reads_until(app: Any, frames: int) -> tuple[Any, asyncio.Event]:
    """`app` behind a transport whose peer stops reading after `frames` frames: from then
    on the server never accepts a send, until the returned event is set."""
    reading = asyncio.Event()

    async def transport(scope: Any, receive: Any, send: Any) -> None:
        sent = 0

        async def slow_send(message: Any) -> None:
            nonlocal sent
            if message["type"] == "websocket.send":
                sent += 1
                if sent > frames:
                    await reading.wait()
            await send(message)

        await app(scope, receive, slow_send)

    return transport, reading


async def test_a_peer_that_stops_reading_is_closed_1013_once_1_mib_waits(
    streaming: None, application: Any
) -> None:
    FloodSession.chunks = 4 * MAX_SEND_BUFFER_BYTES // CHUNK_BYTES
    call = await _make_call()
    app, _ = _reads_until(application, frames=3)
    communicator = await _open(app)
    await communicator.send_to(text_data=_start())
    received = [json.loads(await communicator.receive_from(timeout=5)) for _ in range(3)]
    assert [base64.b64decode(f["media"]["payload"])[0] for f in received] == [0, 1, 2]
    closed = await communicator.receive_output(timeout=5)
    assert (closed["type"], closed["code"], closed.get("reason")) == (
        "websocket.close",
        1013,
        "Backpressure: send buffer exceeded",
    )
    await _until(lambda: _detached(call))
    assert FloodSession.instances[-1].closed


async def test_a_peer_that_reads_gets_every_frame_however_much_is_sent(
    streaming: None, application: Any
) -> None:
    FloodSession.chunks = 4 * MAX_SEND_BUFFER_BYTES // CHUNK_BYTES
    await _make_call()
    communicator = await _open(application)
    await communicator.send_to(text_data=_start())
    for n in range(FloodSession.chunks):
        frame = json.loads(await communicator.receive_from(timeout=5))
        assert base64.b64decode(frame["media"]["payload"])[0] == n % 256
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()


# == under uvicorn, over loopback ==============================================================


@contextlib.asynccontextmanager
async def _uvicorn(application: Any) -> AsyncIterator[int]:
    """The ASGI app served by uvicorn in this loop, as `voicecall serve` configures it."""
    listener = socket.socket()
    # Accepted sockets inherit it: a small, fixed kernel send buffer (no autotuning), so a
    # client that stops reading blocks uvicorn's sends after a few hundred KB on any machine.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        application,
        lifespan="off",
        log_config=None,
        access_log=False,
        ws_max_size=MAX_FRAME_BYTES,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        await _until(lambda: _true(server.started), timeout=10)
        yield int(listener.getsockname()[1])
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
        listener.close()


async def _true(value: bool) -> bool:
    return value


async def test_under_uvicorn_past_max_connections_the_upgrade_is_answered_503(
    configure: Any, monkeypatch: pytest.MonkeyPatch, application: Any
) -> None:
    _streaming(configure, monkeypatch, maxConnections=1)
    async with _uvicorn(application) as port:
        url = f"ws://127.0.0.1:{port}/voice/stream"
        async with websockets.connect(url):
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with websockets.connect(url):
                    pass
            assert refused.value.response.status_code == 503
            assert refused.value.response.body == b"Too many media stream connections"
        # The place is given back once the first socket has gone.
        await _until(lambda: _can_connect(url))


async def _can_connect(url: str) -> bool:
    try:
        async with websockets.connect(url):
            return True
    except websockets.InvalidStatus:
        return False


class RawClient:
    """A websocket client on a plain socket: it reads only when told to.

    Its receive buffer is kept small, so a server that keeps sending soon finds the peer
    not reading.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.protocol = ClientProtocol(
            parse_uri(f"ws://127.0.0.1:{port}/voice/stream"), max_size=None
        )
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.setblocking(False)
        self.loop = asyncio.get_running_loop()

    async def connect(self) -> None:
        await self.loop.sock_connect(self.sock, ("127.0.0.1", self.port))
        self.protocol.send_request(self.protocol.connect())
        await self._flush()
        while self.protocol.handshake_exc is None and self.protocol.state is State.CONNECTING:
            await self._read()
        assert self.protocol.state is State.OPEN, self.protocol.handshake_exc
        self.protocol.events_received()  # the handshake response

    async def send_text(self, text: str) -> None:
        self.protocol.send_text(text.encode())
        await self._flush()

    async def frames(self) -> AsyncIterator[Frame]:
        """Read again: every frame the server sent, up to and including its close frame."""
        while True:
            for event in self.protocol.events_received():
                assert isinstance(event, Frame)
                yield event
                if event.opcode is Opcode.CLOSE:
                    return
            await asyncio.wait_for(self._read(), timeout=10)

    async def _read(self) -> None:
        data = await self.loop.sock_recv(self.sock, 65536)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()

    async def _flush(self) -> None:
        for chunk in self.protocol.data_to_send():
            await self.loop.sock_sendall(self.sock, chunk)

    def close(self) -> None:
        self.sock.close()


async def test_under_uvicorn_a_client_that_stops_reading_is_closed_1013(
    streaming: None, application: Any
) -> None:
    # Enough to fill the kernel's socket buffers and uvicorn's, then 1 MiB more.
    FloodSession.chunks = 4 * MAX_SEND_BUFFER_BYTES // CHUNK_BYTES
    call = await _make_call()
    async with _uvicorn(application) as port:
        client = RawClient(port)
        try:
            await client.connect()
            await client.send_text(_start())
            # The client reads nothing more; the server gives up on it by itself.
            await _until(lambda: _detached(call), timeout=20)
            assert FloodSession.instances[-1].closed
            # Reading again, the client finds the frames uvicorn took, in order, then 1013.
            media = []
            async for frame in client.frames():
                if frame.opcode is Opcode.TEXT:
                    media.append(json.loads(bytes(frame.data))["media"]["payload"])
            close = Close.parse(frame.data)
            assert (close.code, close.reason) == (1013, "Backpressure: send buffer exceeded")
            firsts = [base64.b64decode(payload)[0] for payload in media]
            assert firsts == [n % 256 for n in range(len(firsts))]
            assert 0 < len(firsts) < FloodSession.chunks
        finally:
            client.close()

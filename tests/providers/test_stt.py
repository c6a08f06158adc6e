"""OpenAI realtime STT against a real loopback websocket server (no network beyond 127.0.0.1)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from http import HTTPStatus
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from providers.errors import ProviderNotConfigured, ProviderUnavailable
from providers.stt import build_stt
from providers.stt.openai_realtime import OpenAiRealtimeStt, realtime_url

DELTA = "conversation.item.input_audio_transcription.delta"
COMPLETED = "conversation.item.input_audio_transcription.completed"
SPEECH_STARTED = "input_audio_buffer.speech_started"


class Recorder:
    """SttCallbacks that remember everything."""

    def __init__(self) -> None:
        self.partials: list[str] = []
        self.finals: list[str] = []
        self.speech_starts = 0
        self.errors: list[str] = []

    def on_partial(self, text: str) -> None:
        self.partials.append(text)

    def on_final(self, text: str) -> None:
        self.finals.append(text)

    def on_speech_start(self) -> None:
        self.speech_starts += 1

    def on_error(self, message: str) -> None:
        self.errors.append(message)


class Conn:
    """One accepted client socket: what it sent, and a handle to talk back or drop it."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.ended = asyncio.Event()

    async def next(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.inbox.get(), 2)

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(event))

    async def audio(self, nbytes: int) -> bytes:
        """Decoded appends until `nbytes` arrived."""
        data = b""
        while len(data) < nbytes:
            event = await self.next()
            assert event["type"] == "input_audio_buffer.append"
            data += base64.b64decode(event["audio"])
        return data


class FakeRealtime:
    def __init__(self) -> None:
        self.conns: asyncio.Queue[Conn] = asyncio.Queue()
        self.server: Server | None = None
        self.port = 0

    async def handler(self, ws: ServerConnection) -> None:
        conn = Conn(ws)
        await self.conns.put(conn)
        try:
            async for message in ws:
                await conn.inbox.put(json.loads(message))
        finally:
            conn.ended.set()

    async def accept(self) -> Conn:
        return await asyncio.wait_for(self.conns.get(), 2)


@pytest.fixture
async def fake() -> AsyncIterator[FakeRealtime]:
    fake = FakeRealtime()
    async with serve(fake.handler, "127.0.0.1", 0) as server:
        fake.server = server
        fake.port = server.sockets[0].getsockname()[1]
        yield fake


class FakeSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


async def until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


def session(fake: FakeRealtime, rec: Recorder, **kwargs: Any) -> OpenAiRealtimeStt:
    return OpenAiRealtimeStt(
        api_key="sk-test", callbacks=rec, base_url=f"http://127.0.0.1:{fake.port}", **kwargs
    )


async def test_open_sends_session_update_with_headers_and_config(fake: FakeRealtime) -> None:
    settings = {
        "provider": "openai",
        "providers": {
            "openai": {
                "apiKey": "sk-abc",
                "model": "gpt-4o-mini-transcribe",
                "silenceDurationMs": 600,
                "vadThreshold": 0.7,
                "baseUrl": f"http://127.0.0.1:{fake.port}",
            }
        },
    }
    stt = build_stt(settings, Recorder())
    await stt.connect()
    try:
        conn = await fake.accept()
        request = conn.ws.request
        assert request is not None
        assert request.path == "/v1/realtime?intent=transcription"
        assert request.headers["Authorization"] == "Bearer sk-abc"
        assert request.headers["OpenAI-Beta"] == "realtime=v1"
        assert await conn.next() == {
            "type": "transcription_session.update",
            "session": {
                "input_audio_format": "g711_ulaw",
                "input_audio_transcription": {"model": "gpt-4o-mini-transcribe"},
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.7,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 600,
                },
            },
        }
        assert stt.connected
    finally:
        await stt.close()


async def test_defaults_from_reference(fake: FakeRealtime) -> None:
    stt = session(fake, Recorder())
    await stt.connect()
    try:
        update = await (await fake.accept()).next()
        assert update["session"]["input_audio_transcription"] == {"model": "gpt-4o-transcribe"}
        assert update["session"]["turn_detection"] == {
            "type": "server_vad",
            "threshold": 0.5,
            "prefix_padding_ms": 300,
            "silence_duration_ms": 800,
        }
    finally:
        await stt.close()


async def test_audio_is_appended_as_base64_ulaw_in_order(fake: FakeRealtime) -> None:
    stt = session(fake, Recorder())
    await stt.connect()
    try:
        conn = await fake.accept()
        await conn.next()  # session update
        frames = [bytes([i]) * 160 for i in (0x10, 0x7F, 0xFF)]
        for frame in frames:
            await stt.send_audio(frame)
            await asyncio.sleep(0)
        assert await conn.audio(480) == b"".join(frames)
        assert stt.dropped_frames == 0
    finally:
        await stt.close()


async def test_server_events_reach_the_callbacks(fake: FakeRealtime) -> None:
    rec = Recorder()
    stt = session(fake, rec)
    await stt.connect()
    try:
        conn = await fake.accept()
        await conn.next()
        await conn.send({"type": SPEECH_STARTED, "audio_start_ms": 0, "item_id": "a"})
        await conn.send({"type": DELTA, "item_id": "a", "content_index": 0, "delta": "Hel"})
        await conn.send({"type": DELTA, "item_id": "a", "content_index": 0, "delta": "lo there"})
        await conn.send(
            {"type": COMPLETED, "item_id": "a", "content_index": 0, "transcript": "Hello there."}
        )
        await conn.send({"type": DELTA, "item_id": "b", "content_index": 0, "delta": "Bye"})
        await conn.send(
            {"type": "error", "error": {"type": "invalid_request_error", "message": "bad audio"}}
        )
        await until(lambda: bool(rec.errors))
        assert rec.speech_starts == 1
        # Partials accumulate per item and start fresh after the final.
        assert rec.partials == ["Hel", "Hello there", "Bye"]
        assert rec.finals == ["Hello there."]
        assert rec.errors == ["STT error: bad audio"]
    finally:
        await stt.close()


async def test_a_callback_that_raises_does_not_stop_the_reader(fake: FakeRealtime) -> None:
    rec = Recorder()

    def boom(text: str) -> None:
        raise RuntimeError("consumer bug")

    rec.on_partial = boom  # type: ignore[method-assign]
    stt = session(fake, rec)
    await stt.connect()
    try:
        conn = await fake.accept()
        await conn.next()
        await conn.send({"type": DELTA, "item_id": "a", "delta": "x"})
        await conn.send({"type": COMPLETED, "item_id": "a", "transcript": "x"})
        await until(lambda: rec.finals == ["x"])
    finally:
        await stt.close()


async def test_reconnects_after_the_server_drops_the_socket(fake: FakeRealtime) -> None:
    sleep, rec = FakeSleep(), Recorder()
    stt = session(fake, rec, sleep=sleep)
    await stt.connect()
    try:
        first = await fake.accept()
        await first.next()
        first.ws.transport.abort()  # an abrupt drop, no close frame
        second = await fake.accept()
        assert (await second.next())["type"] == "transcription_session.update"
        assert sleep.delays == [1.0]
        await until(lambda: stt.connected)
        await stt.send_audio(b"\x01" * 160)
        assert await second.audio(160) == b"\x01" * 160
        assert rec.errors == []
    finally:
        await stt.close()


async def test_gives_up_after_five_reconnects_with_exponential_backoff(
    fake: FakeRealtime,
) -> None:
    sleep, rec = FakeSleep(), Recorder()
    stt = session(fake, rec, sleep=sleep)
    await stt.connect()
    try:
        await (await fake.accept()).next()
        assert fake.server is not None
        fake.server.close()  # closes the socket and stops listening: every retry is refused
        await until(lambda: bool(rec.errors))
        assert sleep.delays == [1.0, 2.0, 4.0, 8.0, 16.0]
        assert rec.errors == ["STT connection lost; 5 reconnect attempts failed"]
        assert not stt.connected
        await stt.send_audio(b"\xff" * 160)
        assert stt.dropped_frames == 1
    finally:
        await stt.close()


async def test_close_is_clean_and_final(fake: FakeRealtime) -> None:
    sleep = FakeSleep()
    stt = session(fake, Recorder(), sleep=sleep)
    await stt.connect()
    conn = await fake.accept()
    await conn.next()
    await stt.close()
    await asyncio.wait_for(conn.ended.wait(), 2)
    assert conn.ws.close_code == 1000
    assert not stt.connected
    await asyncio.sleep(0.05)
    assert sleep.delays == []  # a close we asked for is not a drop
    assert fake.conns.empty()
    await stt.send_audio(b"\xff" * 160)
    assert stt.dropped_frames == 1
    await stt.close()  # idempotent


async def test_audio_before_connect_is_dropped_and_counted() -> None:
    stt = OpenAiRealtimeStt(api_key="sk", callbacks=Recorder())
    await stt.send_audio(b"\xff" * 160)
    await stt.send_audio(b"\xff" * 160)
    assert stt.dropped_frames == 2
    assert not stt.connected


async def test_a_full_queue_drops_instead_of_blocking(fake: FakeRealtime) -> None:
    stt = session(fake, Recorder(), max_queued_frames=2)
    await stt.connect()
    try:
        conn = await fake.accept()
        await conn.next()
        # No await yields in between, so the writer cannot drain: 2 fit, 3 are dropped.
        for value in range(5):
            await stt.send_audio(bytes([value]) * 160)
        assert stt.dropped_frames == 3
        assert await conn.audio(320) == b"\x00" * 160 + b"\x01" * 160
    finally:
        await stt.close()


async def test_connect_failure_raises_provider_unavailable() -> None:
    async with serve(lambda ws: None, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
    stt = OpenAiRealtimeStt(
        api_key="sk", callbacks=Recorder(), base_url=f"http://127.0.0.1:{port}", connect_timeout_s=1
    )
    with pytest.raises(ProviderUnavailable, match="STT connection failed"):
        await stt.connect()
    assert not stt.connected


async def test_rejected_handshake_raises_provider_unavailable() -> None:
    def unauthorized(conn: ServerConnection, request: Request) -> Response:
        return conn.respond(HTTPStatus.UNAUTHORIZED, "Incorrect API key provided\n")

    async with serve(lambda ws: None, "127.0.0.1", 0, process_request=unauthorized) as server:
        port = server.sockets[0].getsockname()[1]
        stt = OpenAiRealtimeStt(
            api_key="bad", callbacks=Recorder(), base_url=f"http://127.0.0.1:{port}"
        )
        with pytest.raises(ProviderUnavailable, match="STT connection failed: .*401"):
            await stt.connect()


def test_missing_api_key_names_the_key() -> None:
    with pytest.raises(ProviderNotConfigured, match=r"streaming\.providers\.openai\.apiKey"):
        build_stt({"providers": {"openai": {"model": "gpt-4o-transcribe"}}}, Recorder())
    with pytest.raises(ProviderNotConfigured, match=r"streaming\.providers\.openai\.apiKey"):
        build_stt({}, Recorder())


def test_unknown_provider_and_bad_numbers_are_not_configured() -> None:
    with pytest.raises(ProviderNotConfigured, match='"deepgram"'):
        build_stt({"provider": "deepgram", "providers": {"deepgram": {"apiKey": "k"}}}, Recorder())
    with pytest.raises(ProviderNotConfigured, match="vadThreshold"):
        build_stt({"providers": {"openai": {"apiKey": "k", "vadThreshold": "loud"}}}, Recorder())


def test_build_stt_defaults_to_openai() -> None:
    stt = build_stt({"providers": {"openai": {"apiKey": "k"}}}, Recorder())
    assert isinstance(stt, OpenAiRealtimeStt)
    assert stt.url == "wss://api.openai.com/v1/realtime?intent=transcription"


@pytest.mark.parametrize(
    ("base", "url"),
    [
        (None, "wss://api.openai.com/v1/realtime?intent=transcription"),
        ("https://api.openai.com/v1/", "wss://api.openai.com/v1/realtime?intent=transcription"),
        (
            "http://localhost:8080/proxy",
            "ws://localhost:8080/proxy/v1/realtime?intent=transcription",
        ),
        ("wss://gw.example", "wss://gw.example/v1/realtime?intent=transcription"),
    ],
)
def test_realtime_url(base: str | None, url: str) -> None:
    assert realtime_url(base) == url

"""OpenAI realtime STT against a real loopback websocket server (no network beyond 127.0.0.1)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from http import HTTPStatus
from typing import Any, get_args

import openai
import pytest
from openai.types.realtime import (
    RealtimeClientEvent,
    RealtimeServerEvent,
    RealtimeTranscriptionSessionCreateRequest,
    SessionUpdateEvent,
)
from pydantic import BaseModel, TypeAdapter, ValidationError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from providers.errors import ProviderNotConfigured, ProviderUnavailable
from providers.stt import build_stt, openai_realtime
from providers.stt.openai_realtime import OpenAiRealtimeStt, realtime_url

DELTA = "conversation.item.input_audio_transcription.delta"
COMPLETED = "conversation.item.input_audio_transcription.completed"
SPEECH_STARTED = "input_audio_buffer.speech_started"
FAILED = "conversation.item.input_audio_transcription.failed"


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


async def test_open_sends_the_ga_session_update_without_the_beta_header(
    fake: FakeRealtime,
) -> None:
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
        # The beta protocol's header is gone: GA sessions refuse the beta event names.
        assert "OpenAI-Beta" not in request.headers
        # The socket is the openai SDK's realtime client, not a hand-written one.
        assert request.headers["User-Agent"].startswith("AsyncOpenAI/Python")
        assert await conn.next() == {
            "type": "session.update",
            "session": {
                "type": "transcription",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcmu"},
                        "transcription": {"model": "gpt-4o-mini-transcribe"},
                        "turn_detection": {
                            "type": "server_vad",
                            "threshold": 0.7,
                            "prefix_padding_ms": 300,
                            "silence_duration_ms": 600,
                        },
                    }
                },
            },
        }
        assert stt.connected
    finally:
        await stt.close()


def unknown_fields(model: BaseModel, where: str = "") -> list[str]:
    """Keys the SDK's models do not declare (they allow extras, so parsing alone would pass
    a misspelt or misplaced field)."""
    found = [f"{where}{key}" for key in model.model_extra or {}]
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            found += unknown_fields(value, f"{where}{name}.")
    return found


def test_session_update_is_the_sdks_ga_transcription_session_update() -> None:
    """The opening event parses as the SDK's own GA `session.update` with a transcription
    session, every field in a place the SDK declares; the beta event does not parse."""
    stt = OpenAiRealtimeStt(api_key="sk", callbacks=Recorder(), model="gpt-4o-transcribe")
    event = TypeAdapter(RealtimeClientEvent).validate_python(stt.session_update())
    assert isinstance(event, SessionUpdateEvent)
    assert isinstance(event.session, RealtimeTranscriptionSessionCreateRequest)
    assert unknown_fields(event) == []
    assert event.session.audio is not None and event.session.audio.input is not None
    audio_in = event.session.audio.input
    assert audio_in.format is not None and audio_in.format.type == "audio/pcmu"
    assert audio_in.transcription is not None
    assert audio_in.transcription.model == "gpt-4o-transcribe"
    assert audio_in.turn_detection is not None and audio_in.turn_detection.type == "server_vad"
    beta = {
        "type": "transcription_session.update",
        "session": {
            "input_audio_format": "g711_ulaw",
            "input_audio_transcription": {"model": "gpt-4o-transcribe"},
        },
    }
    with pytest.raises(ValidationError):
        TypeAdapter(RealtimeClientEvent).validate_python(beta)


def test_consumed_server_events_carry_ga_names() -> None:
    ga_names = {
        name
        for member in get_args(get_args(RealtimeServerEvent)[0])
        for name in get_args(member.model_fields["type"].annotation)
    }
    consumed = {
        openai_realtime.EV_DELTA,
        openai_realtime.EV_COMPLETED,
        openai_realtime.EV_FAILED,
        openai_realtime.EV_SPEECH_STARTED,
        openai_realtime.EV_ERROR,
    }
    assert consumed <= ga_names
    assert {DELTA, COMPLETED, SPEECH_STARTED, FAILED} <= ga_names


async def test_defaults_from_reference(fake: FakeRealtime) -> None:
    stt = session(fake, Recorder())
    await stt.connect()
    try:
        update = await (await fake.accept()).next()
        audio_in = update["session"]["audio"]["input"]
        assert audio_in["transcription"] == {"model": "gpt-4o-transcribe"}
        assert audio_in["turn_detection"] == {
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


async def test_caller_audio_at_carrier_pace_goes_out_in_100_ms_appends(fake: FakeRealtime) -> None:
    """One append per 20 ms frame cost a third of a busy server's CPU; the transcription
    socket gets the same audio, in order, five frames at a time."""
    stt = session(fake, Recorder())
    await stt.connect()
    try:
        conn = await fake.accept()
        await conn.next()  # session update
        frames = [bytes([0x10 + i]) * 160 for i in range(5)]
        for frame in frames:  # a frame every 20 ms, as a carrier sends them
            await stt.send_audio(frame)
            await asyncio.sleep(0.02)
        appends = []
        received = b""
        while len(received) < 800:
            event = await conn.next()
            assert event["type"] == "input_audio_buffer.append"
            appends.append(base64.b64decode(event["audio"]))
            received += appends[-1]
        assert received == b"".join(frames)
        # Sent one by one these would be five appends; a stalled loop only merges more.
        assert len(appends) <= 2
        assert stt.dropped_frames == 0
    finally:
        await stt.close()


_event_ids = iter(range(1, 1_000_000))


def ga(event: dict[str, Any]) -> dict[str, Any]:
    """`event` as the GA server sends it: an event_id added, and checked against the SDK's
    own server event types (required fields present, the type a GA one)."""
    event = {"event_id": f"event_{next(_event_ids)}", **event}
    parsed = TypeAdapter(RealtimeServerEvent).validate_python(event)
    assert parsed.type == event["type"]
    return event


USAGE = {"type": "duration", "seconds": 1.2}


async def test_ga_server_events_reach_the_callbacks(fake: FakeRealtime) -> None:
    rec = Recorder()
    stt = session(fake, rec)
    await stt.connect()
    try:
        conn = await fake.accept()
        await conn.next()
        await conn.send(ga({"type": SPEECH_STARTED, "audio_start_ms": 0, "item_id": "a"}))
        await conn.send(
            ga({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 900, "item_id": "a"})
        )
        await conn.send(ga({"type": DELTA, "item_id": "a", "content_index": 0, "delta": "Hel"}))
        await conn.send(
            ga({"type": DELTA, "item_id": "a", "content_index": 0, "delta": "lo there"})
        )
        await conn.send(
            ga(
                {
                    "type": COMPLETED,
                    "item_id": "a",
                    "content_index": 0,
                    "transcript": "Hello there.",
                    "usage": USAGE,
                }
            )
        )
        await conn.send(ga({"type": DELTA, "item_id": "b", "content_index": 0, "delta": "Bye"}))
        await conn.send(
            ga(
                {
                    "type": FAILED,
                    "item_id": "b",
                    "content_index": 0,
                    "error": {"type": "server_error", "message": "could not transcribe"},
                }
            )
        )
        await conn.send(
            ga({"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}})
        )
        await until(lambda: len(rec.errors) == 2)
        assert rec.speech_starts == 1
        # Partials accumulate per item and start fresh after the final.
        assert rec.partials == ["Hel", "Hello there", "Bye"]
        assert rec.finals == ["Hello there."]
        assert rec.errors == ["STT error: could not transcribe", "STT error: bad"]
    finally:
        await stt.close()


async def test_beta_event_names_are_not_taken_for_transcripts(fake: FakeRealtime) -> None:
    """Only the GA names count: a beta-only session event is ignored, not misread."""
    rec = Recorder()
    stt = session(fake, rec)
    await stt.connect()
    try:
        conn = await fake.accept()
        await conn.next()
        await conn.send({"type": "transcription_session.updated", "session": {}})
        await conn.send(ga({"type": "session.updated", "session": {"type": "transcription"}}))
        await conn.send(
            ga(
                {
                    "type": COMPLETED,
                    "item_id": "a",
                    "content_index": 0,
                    "transcript": "ok",
                    "usage": USAGE,
                }
            )
        )
        await until(lambda: rec.finals == ["ok"])
        assert rec.errors == [] and rec.partials == []
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
        reopened = await second.next()
        assert reopened["type"] == "session.update"
        assert reopened["session"]["type"] == "transcription"
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


async def test_sockets_share_one_sdk_client_per_key_and_url(
    fake: FakeRealtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A client per socket built the SDK's HTTP pool and an SSL context every time; sharing
    # must still give each key its own Authorization.
    made: list[str] = []
    real = openai.AsyncOpenAI

    def counting(**kwargs: Any) -> openai.AsyncOpenAI:
        made.append(kwargs["api_key"])
        return real(**kwargs)

    monkeypatch.setattr(openai, "AsyncOpenAI", counting)
    sessions = [
        OpenAiRealtimeStt(
            api_key=key, callbacks=Recorder(), base_url=f"http://127.0.0.1:{fake.port}"
        )
        for key in ("sk-one", "sk-one", "sk-two")
    ]
    try:
        seen = []
        for stt in sessions:
            await stt.connect()
            request = (await fake.accept()).ws.request
            assert request is not None
            seen.append(request.headers["Authorization"])
        assert seen == ["Bearer sk-one", "Bearer sk-one", "Bearer sk-two"]
        assert made == ["sk-one", "sk-two"]
    finally:
        for stt in sessions:
            await stt.close()


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


async def test_a_server_that_never_answers_hits_the_connect_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # takes the upgrade request and never answers it
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        stt = OpenAiRealtimeStt(
            api_key="sk",
            callbacks=Recorder(),
            base_url=f"http://127.0.0.1:{port}",
            connect_timeout_s=0.2,
        )
        async with asyncio.timeout(2):
            with pytest.raises(ProviderUnavailable, match=r"no answer within 0\.2 s"):
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

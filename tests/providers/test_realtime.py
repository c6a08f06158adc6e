"""OpenAI realtime voice against a real loopback websocket server acting as the Realtime API
(no network beyond 127.0.0.1)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from providers.errors import ProviderNotConfigured, ProviderUnavailable
from providers.realtime import END_CALL_TOOL, build_realtime
from providers.realtime.openai import OpenAiRealtime, realtime_url

LOOKUP_TOOL = {
    "type": "function",
    "name": "lookup",
    "description": "Look something up.",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
}


class Recorder:
    """A RealtimeHandler that remembers everything; tool calls wait for `tool_gate`."""

    def __init__(self) -> None:
        self.audio: list[bytes] = []
        self.items: list[tuple[str, str | None]] = []  # (item_id, utterance_id) per chunk
        self.audio_done: list[str] = []
        self.clears = 0
        self.user: list[str] = []
        self.assistant: list[str] = []
        self.assistant_items: list[str] = []
        self.tool_calls: list[tuple[str, dict[str, Any]]] = []
        self.tool_result: dict[str, Any] = {"ok": True}
        self.tool_error: Exception | None = None
        self.tool_hook: Callable[[], Awaitable[None]] | None = None
        self.tool_gate = asyncio.Event()
        self.tool_gate.set()
        self.errors: list[str] = []
        self.closed = 0

    def on_audio(self, ulaw: bytes, item_id: str, utterance_id: str | None) -> None:
        self.audio.append(ulaw)
        self.items.append((item_id, utterance_id))

    def on_audio_done(self, item_id: str) -> None:
        self.audio_done.append(item_id)

    def on_clear(self) -> None:
        self.clears += 1

    def on_user_transcript(self, text: str) -> None:
        self.user.append(text)

    def on_assistant_transcript(self, text: str, item_id: str) -> None:
        self.assistant.append(text)
        self.assistant_items.append(item_id)

    async def on_tool_call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        self.tool_calls.append((name, arguments))
        await self.tool_gate.wait()
        if self.tool_hook is not None:
            await self.tool_hook()
        if self.tool_error is not None:
            raise self.tool_error
        return self.tool_result

    def on_error(self, message: str) -> None:
        self.errors.append(message)

    def on_closed(self) -> None:
        self.closed += 1


class Conn:
    """One accepted client socket: what it sent, and a handle to talk back or drop it."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def next(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.inbox.get(), 2)

    async def next_non_audio(self) -> dict[str, Any]:
        while (event := await self.next())["type"] == "input_audio_buffer.append":
            pass
        return event

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(event))

    async def expect_nothing_but(self, session: OpenAiRealtime, marker: bytes) -> None:
        """Nothing else was sent: after a pause, the next message is the marker's append."""
        await asyncio.sleep(0.05)
        await session.send_audio(marker)
        event = await self.next()
        assert event["type"] == "input_audio_buffer.append", event
        assert base64.b64decode(event["audio"]) == marker


class FakeRealtime:
    def __init__(self) -> None:
        self.conns: asyncio.Queue[Conn] = asyncio.Queue()
        self.port = 0
        self.reject: HTTPStatus | None = None

    async def handler(self, ws: ServerConnection) -> None:
        conn = Conn(ws)
        await self.conns.put(conn)
        async for message in ws:
            await conn.inbox.put(json.loads(message))

    def process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        if self.reject is not None:
            return ws.respond(self.reject, "no\n")
        return None

    async def accept(self) -> Conn:
        return await asyncio.wait_for(self.conns.get(), 2)


@pytest.fixture
async def fake() -> AsyncIterator[FakeRealtime]:
    fake = FakeRealtime()
    async with serve(fake.handler, "127.0.0.1", 0, process_request=fake.process_request) as server:
        fake.port = server.sockets[0].getsockname()[1]
        yield fake


async def until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


def make(fake: FakeRealtime, rec: Recorder, **kwargs: Any) -> OpenAiRealtime:
    return OpenAiRealtime(
        api_key="sk-test", handler=rec, base_url=f"http://127.0.0.1:{fake.port}", **kwargs
    )


@pytest.fixture
async def live(fake: FakeRealtime) -> AsyncIterator[tuple[OpenAiRealtime, Recorder, Conn]]:
    """A connected session (no greeting) whose session.update was already consumed."""
    rec = Recorder()
    session = make(fake, rec)
    await session.connect(instructions="Be brief.", greeting=None, tools=[END_CALL_TOOL])
    conn = await fake.accept()
    assert (await conn.next())["type"] == "session.update"
    try:
        yield session, rec, conn
    finally:
        await session.close()


# -- connect, session.update, greeting --------------------------------------------------


async def test_session_update_headers_and_greeting(fake: FakeRealtime) -> None:
    settings = {
        "enabled": True,
        "provider": "openai",
        "providers": {
            "openai": {
                "apiKey": "sk-abc",
                "model": "gpt-realtime-mini",
                "voice": "marin",
                "baseUrl": f"http://127.0.0.1:{fake.port}/v1",
            }
        },
    }
    session = build_realtime(settings, Recorder())
    await session.connect(
        instructions="You are the front desk.",
        greeting="Hi, this is Ada.",
        tools=[LOOKUP_TOOL, END_CALL_TOOL],
    )
    try:
        conn = await fake.accept()
        request = conn.ws.request
        assert request is not None
        assert request.path == "/v1/realtime?model=gpt-realtime-mini"
        assert request.headers["Authorization"] == "Bearer sk-abc"
        # GA protocol: the beta header would switch the server to the beta event names.
        assert "OpenAI-Beta" not in request.headers
        assert await conn.next() == {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "instructions": "You are the front desk.",
                "output_modalities": ["audio"],
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcmu"},
                        "transcription": {"model": "gpt-4o-transcribe"},
                        "turn_detection": {
                            "type": "server_vad",
                            "threshold": 0.5,
                            "prefix_padding_ms": 300,
                            "silence_duration_ms": 500,
                            "create_response": True,
                            "interrupt_response": False,
                        },
                    },
                    "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"},
                },
                "tools": [LOOKUP_TOOL, END_CALL_TOOL],
                "tool_choice": "auto",
            },
        }
        assert await conn.next() == {
            "type": "response.create",
            "response": {
                "instructions": (
                    "You are the front desk.\n\nStart the call by greeting the caller naturally. "
                    "Include this greeting: Hi, this is Ada."
                )
            },
        }
    finally:
        await session.close()


async def test_defaults_and_no_greeting(fake: FakeRealtime) -> None:
    session = build_realtime(
        {"providers": {"openai": {"apiKey": "sk-x", "baseUrl": f"http://127.0.0.1:{fake.port}"}}},
        Recorder(),
    )
    assert isinstance(session, OpenAiRealtime)
    await session.connect(instructions="", greeting=None, tools=[])
    try:
        conn = await fake.accept()
        assert conn.ws.request is not None
        assert conn.ws.request.path == "/v1/realtime?model=gpt-realtime"
        update = (await conn.next())["session"]
        assert update["audio"]["output"]["voice"] == "alloy"
        assert update["tools"] == []
        # No response.create: the first thing after the session update is caller audio.
        await conn.expect_nothing_but(session, b"\x01" * 160)
    finally:
        await session.close()


async def test_vad_settings_and_duplicate_tools(fake: FakeRealtime) -> None:
    session = build_realtime(
        {
            "providers": {
                "openai": {
                    "apiKey": "sk-x",
                    "baseUrl": f"http://127.0.0.1:{fake.port}",
                    "vadThreshold": "0.8",
                    "silenceDurationMs": 700,
                    "transcriptionModel": "gpt-4o-mini-transcribe",
                }
            }
        },
        Recorder(),
    )
    mine = {**END_CALL_TOOL, "description": "custom"}
    await session.connect(instructions="x", greeting=None, tools=[mine, END_CALL_TOOL])
    try:
        update = (await (await fake.accept()).next())["session"]
        vad = update["audio"]["input"]["turn_detection"]
        assert (vad["threshold"], vad["silence_duration_ms"]) == (0.8, 700)
        assert update["audio"]["input"]["transcription"] == {"model": "gpt-4o-mini-transcribe"}
        assert update["tools"] == [mine]
    finally:
        await session.close()


def test_end_call_tool_definition() -> None:
    assert END_CALL_TOOL == {
        "type": "function",
        "name": "end_call",
        "description": "Hang up the call when the conversation is over.",
        "parameters": {"type": "object", "properties": {"reason": {"type": "string"}}},
    }


@pytest.mark.parametrize(
    ("base", "url"),
    [
        (None, "wss://api.openai.com/v1/realtime?model=gpt-realtime"),
        ("https://proxy.example/openai/v1/", "wss://proxy.example/openai/v1/realtime?model=m%2F1"),
        ("ws://127.0.0.1:9", "ws://127.0.0.1:9/v1/realtime?model=gpt-realtime"),
    ],
)
def test_realtime_url(base: str | None, url: str) -> None:
    model = "m/1" if "proxy" in url else "gpt-realtime"
    assert realtime_url(base, model) == url


# -- configuration errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    "settings", [{}, {"providers": {"openai": {"apiKey": "  "}}}, {"providers": {"openai": None}}]
)
def test_missing_api_key(settings: dict[str, Any]) -> None:
    with pytest.raises(ProviderNotConfigured, match=r"realtime\.providers\.openai\.apiKey"):
        build_realtime(settings, Recorder())


def test_unknown_provider() -> None:
    with pytest.raises(ProviderNotConfigured, match=r'realtime\.provider "google"'):
        build_realtime({"provider": "google", "providers": {"google": {"apiKey": "k"}}}, Recorder())


def test_bad_number() -> None:
    with pytest.raises(ProviderNotConfigured, match=r"realtime\.providers\.openai\.vadThreshold"):
        build_realtime(
            {"providers": {"openai": {"apiKey": "k", "vadThreshold": "loud"}}}, Recorder()
        )


async def test_rejected_handshake_is_unavailable(fake: FakeRealtime) -> None:
    fake.reject = HTTPStatus.UNAUTHORIZED
    session = make(fake, Recorder())
    with pytest.raises(ProviderUnavailable, match="401"):
        await session.connect(instructions="x", greeting=None, tools=[])


async def test_refused_connection_is_unavailable() -> None:
    session = OpenAiRealtime(api_key="k", handler=Recorder(), base_url="http://127.0.0.1:1")
    with pytest.raises(ProviderUnavailable):
        await session.connect(instructions="x", greeting=None, tools=[])


# -- caller audio -----------------------------------------------------------------------


async def test_audio_appends(live: tuple[OpenAiRealtime, Recorder, Conn]) -> None:
    session, _, conn = live
    frames = [bytes([n]) * 160 for n in range(1, 6)]
    for frame in frames:
        await session.send_audio(frame)
    data = b""
    while len(data) < 800:
        event = await conn.next()
        assert event["type"] == "input_audio_buffer.append"
        data += base64.b64decode(event["audio"])
    assert data == b"".join(frames)
    assert session.dropped_frames == 0


async def test_audio_drops_when_full_or_not_connected(fake: FakeRealtime) -> None:
    session = make(fake, Recorder(), max_queued_frames=2)
    await session.send_audio(b"\xff" * 160)  # not connected yet
    assert session.dropped_frames == 1
    await session.connect(instructions="x", greeting=None, tools=[])
    try:
        # No await yields to the writer between these, so only two fit.
        for _ in range(5):
            await session.send_audio(b"\xff" * 160)
        assert session.dropped_frames == 4
    finally:
        await session.close()
    await session.send_audio(b"\xff" * 160)
    assert session.dropped_frames == 5


# -- model audio and barge-in -----------------------------------------------------------


def delta(
    audio: bytes, response_id: str = "resp_1", kind: str = "response.output_audio.delta"
) -> dict[str, Any]:
    return {
        "type": kind,
        "response_id": response_id,
        "item_id": "item_1",
        "output_index": 0,
        "content_index": 0,
        "delta": base64.b64encode(audio).decode(),
    }


def created(response_id: str) -> dict[str, Any]:
    return {"type": "response.created", "response": {"id": response_id, "status": "in_progress"}}


def done(response_id: str) -> dict[str, Any]:
    return {"type": "response.done", "response": {"id": response_id, "status": "completed"}}


SPEECH_STARTED = {
    "type": "input_audio_buffer.speech_started",
    "audio_start_ms": 10,
    "item_id": "item_u",
}


async def test_audio_deltas_reach_on_audio(live: tuple[OpenAiRealtime, Recorder, Conn]) -> None:
    _, rec, conn = live
    await conn.send(created("resp_1"))
    await conn.send(delta(b"\x10\x20\x30"))
    await conn.send(delta(b"\x40" * 321, kind="response.audio.delta"))  # beta name
    await until(lambda: len(rec.audio) == 2)
    assert rec.audio == [b"\x10\x20\x30", b"\x40" * 321]
    assert rec.items == [("item_1", None), ("item_1", None)]  # the model's own turn
    await conn.send(
        {
            "type": "response.output_audio.done",
            "response_id": "resp_1",
            "item_id": "item_1",
            "output_index": 0,
            "content_index": 0,
        }
    )
    await until(lambda: rec.audio_done == ["item_1"])


async def test_a_said_response_carries_its_utterance_id_to_the_audio(
    live: tuple[OpenAiRealtime, Recorder, Conn],
) -> None:
    session, rec, conn = live
    await session.say("Your table is ready.", utterance_id="utt-7")
    request = await conn.next_non_audio()
    assert request["type"] == "response.create"
    assert request["response"]["metadata"] == {"utteranceId": "utt-7"}
    # The server echoes the metadata on response.created: its audio is that utterance's.
    await conn.send(
        {
            "type": "response.created",
            "response": {
                "id": "resp_9",
                "status": "in_progress",
                "metadata": request["response"]["metadata"],
            },
        }
    )
    await conn.send(delta(b"\x01", response_id="resp_9"))
    await conn.send(done("resp_9"))
    await conn.send(created("resp_10"))
    await conn.send(delta(b"\x02", response_id="resp_10"))
    await until(lambda: len(rec.audio) == 2)
    assert rec.items == [("item_1", "utt-7"), ("item_1", None)]


async def test_truncate_cuts_the_item_to_what_was_played(
    live: tuple[OpenAiRealtime, Recorder, Conn],
) -> None:
    session, _, conn = live
    await session.truncate("item_1", 1234)
    assert await conn.next_non_audio() == {
        "type": "conversation.item.truncate",
        "item_id": "item_1",
        "content_index": 0,
        "audio_end_ms": 1234,
    }


async def test_barge_in_clears_and_cancels_active_response(
    live: tuple[OpenAiRealtime, Recorder, Conn],
) -> None:
    session, rec, conn = live
    await conn.send(created("resp_1"))
    await conn.send(delta(b"\x01"))
    await conn.send(SPEECH_STARTED)
    cancel = await conn.next_non_audio()
    assert cancel["type"] == "response.cancel"
    assert cancel["response_id"] == "resp_1"
    assert rec.clears == 1
    # Audio of the cancelled response still in flight is not played to the caller.
    await conn.send(delta(b"\x02"))
    # A second speech start before response.done clears again but does not re-cancel.
    await conn.send(SPEECH_STARTED)
    await until(lambda: rec.clears == 2)
    await conn.expect_nothing_but(session, b"\x03")
    await conn.send({**done("resp_1"), "response": {"id": "resp_1", "status": "cancelled"}})
    await conn.send(created("resp_2"))
    await conn.send(delta(b"\x04", response_id="resp_2"))
    await until(lambda: len(rec.audio) == 2)
    assert rec.audio == [b"\x01", b"\x04"]


async def test_barge_in_after_response_done_clears_without_cancel(
    live: tuple[OpenAiRealtime, Recorder, Conn],
) -> None:
    session, rec, conn = live
    await conn.send(created("resp_1"))
    await conn.send(done("resp_1"))
    await conn.send(SPEECH_STARTED)
    # The finished response may still be queued towards the carrier: clear anyway.
    await until(lambda: rec.clears == 1)
    await conn.expect_nothing_but(session, b"\x05")


async def test_error_for_our_cancel_is_not_reported(
    live: tuple[OpenAiRealtime, Recorder, Conn],
) -> None:
    _, rec, conn = live
    await conn.send(created("resp_1"))
    await conn.send(SPEECH_STARTED)
    cancel = await conn.next_non_audio()
    await conn.send(
        {
            "type": "error",
            "event_id": "ev_1",
            "error": {
                "type": "invalid_request_error",
                "code": "response_cancel_not_active",
                "message": "no active response",
                "event_id": cancel["event_id"],
            },
        }
    )
    await conn.send(
        {
            "type": "error",
            "event_id": "ev_2",
            "error": {"type": "server_error", "message": "The server had an error"},
        }
    )
    await until(lambda: bool(rec.errors))
    assert rec.errors == ["OpenAI realtime error: The server had an error"]


# -- transcripts ------------------------------------------------------------------------


async def test_transcripts(live: tuple[OpenAiRealtime, Recorder, Conn]) -> None:
    _, rec, conn = live
    await conn.send(
        {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": "item_u",
            "content_index": 0,
            "transcript": " I need help. ",
        }
    )
    await conn.send(
        {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": "item_v",
            "content_index": 0,
            "transcript": "  ",
        }
    )
    await conn.send(
        {
            "type": "response.output_audio_transcript.done",
            "response_id": "r",
            "item_id": "i",
            "output_index": 0,
            "content_index": 0,
            "transcript": "Sure, what with?",
        }
    )
    await conn.send({"type": "response.audio_transcript.done", "transcript": "Beta name."})
    await until(lambda: len(rec.assistant) == 2)
    assert rec.user == ["I need help."]
    assert rec.assistant == ["Sure, what with?", "Beta name."]
    assert rec.assistant_items == ["i", ""]  # the item the words belong to, when named


# -- function calls ---------------------------------------------------------------------


def function_call(name: str, arguments: str, call_id: str = "call_1") -> dict[str, Any]:
    return {
        "type": "response.function_call_arguments.done",
        "response_id": "resp_1",
        "item_id": "item_f",
        "output_index": 0,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


async def test_function_call_round_trip(live: tuple[OpenAiRealtime, Recorder, Conn]) -> None:
    session, rec, conn = live
    rec.tool_gate.clear()
    rec.tool_result = {"answer": 42}
    await conn.send(created("resp_1"))
    await conn.send(function_call("lookup", '{"q": "hours"}'))
    await until(lambda: bool(rec.tool_calls))
    assert rec.tool_calls == [("lookup", {"q": "hours"})]
    # Audio keeps flowing while the tool runs, and nothing is answered before it returns.
    await conn.expect_nothing_but(session, b"\x06")
    rec.tool_gate.set()
    assert await conn.next_non_audio() == {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": "call_1", "output": '{"answer": 42}'},
    }
    # The follow-up response waits for the calling response to finish.
    await conn.expect_nothing_but(session, b"\x07")
    await conn.send(done("resp_1"))
    assert await conn.next_non_audio() == {"type": "response.create"}


async def test_function_call_failure_goes_back_to_model(
    live: tuple[OpenAiRealtime, Recorder, Conn],
) -> None:
    _, rec, conn = live
    rec.tool_error = RuntimeError("db down")
    await conn.send(function_call("lookup", "{}"))
    item = await conn.next_non_audio()
    assert item["item"]["call_id"] == "call_1"
    assert json.loads(item["item"]["output"]) == {"error": 'Tool "lookup" failed: db down'}
    assert await conn.next_non_audio() == {"type": "response.create"}


async def test_function_call_with_bad_arguments_skips_handler(
    live: tuple[OpenAiRealtime, Recorder, Conn],
) -> None:
    _, rec, conn = live
    await conn.send(function_call("end_call", "{not json", call_id="call_9"))
    item = await conn.next_non_audio()
    assert item["item"]["call_id"] == "call_9"
    assert "Invalid arguments" in json.loads(item["item"]["output"])["error"]
    assert rec.tool_calls == []


async def test_parallel_calls_ask_for_one_response(
    live: tuple[OpenAiRealtime, Recorder, Conn],
) -> None:
    session, rec, conn = live
    rec.tool_gate.clear()
    await conn.send(function_call("lookup", '{"q": "a"}', call_id="call_a"))
    await conn.send(function_call("end_call", '{"reason": "done"}', call_id="call_b"))
    await until(lambda: len(rec.tool_calls) == 2)
    assert rec.tool_calls[1] == ("end_call", {"reason": "done"})
    rec.tool_gate.set()
    outputs = {(await conn.next_non_audio())["item"]["call_id"] for _ in range(2)}
    assert outputs == {"call_a", "call_b"}
    assert await conn.next_non_audio() == {"type": "response.create"}
    await conn.expect_nothing_but(session, b"\x08")


async def test_end_call_closing_the_session_inside_the_tool(fake: FakeRealtime) -> None:
    rec = Recorder()
    session = make(fake, rec)
    rec.tool_hook = session.close  # the bridge hangs up and closes from the end_call tool
    await session.connect(instructions="x", greeting=None, tools=[END_CALL_TOOL])
    conn = await fake.accept()
    await conn.send(created("resp_1"))  # still open: a follow-up would wait for it
    await conn.send(function_call("end_call", '{"reason": "bye"}'))
    await asyncio.wait_for(conn.ws.wait_closed(), 2)
    # The tool task finished instead of waiting forever for response.done.
    await until(lambda: not session._tasks)
    assert rec.tool_calls == [("end_call", {"reason": "bye"})]
    assert (rec.closed, rec.errors) == (0, [])


# -- errors and closing -----------------------------------------------------------------


async def test_error_event(live: tuple[OpenAiRealtime, Recorder, Conn]) -> None:
    _, rec, conn = live
    await conn.send(
        {
            "type": "error",
            "event_id": "ev",
            "error": {"type": "invalid_request_error", "message": "Invalid value: 'audio/xyz'"},
        }
    )
    await until(lambda: bool(rec.errors))
    assert rec.errors == ["OpenAI realtime error: Invalid value: 'audio/xyz'"]
    assert rec.closed == 0


async def test_server_close_reports_closed(live: tuple[OpenAiRealtime, Recorder, Conn]) -> None:
    session, rec, conn = live
    await conn.ws.close()
    await until(lambda: rec.closed == 1)
    assert rec.errors == []
    assert not session.connected
    await session.send_audio(b"\xff")
    assert session.dropped_frames == 1


async def test_server_error_close_reports_error_then_closed(
    live: tuple[OpenAiRealtime, Recorder, Conn],
) -> None:
    _, rec, conn = live
    await conn.ws.close(1011, "internal error")
    await until(lambda: rec.closed == 1)
    assert len(rec.errors) == 1
    assert "1011" in rec.errors[0]


async def test_our_close_is_quiet_and_idempotent(fake: FakeRealtime) -> None:
    rec = Recorder()
    session = make(fake, rec)
    await session.connect(instructions="x", greeting=None, tools=[])
    conn = await fake.accept()
    await session.close()
    await session.close()
    await asyncio.wait_for(conn.ws.wait_closed(), 2)
    await asyncio.sleep(0.02)
    assert (rec.closed, rec.errors) == (0, [])
    with pytest.raises(ProviderUnavailable):
        await session.connect(instructions="x", greeting=None, tools=[])


async def test_close_during_connect(fake: FakeRealtime) -> None:
    session = make(fake, Recorder())
    connecting = asyncio.create_task(session.connect(instructions="x", greeting=None, tools=[]))
    await asyncio.sleep(0)  # connect() is now waiting for the handshake
    await session.close()
    with pytest.raises(ProviderUnavailable, match="closed while connecting"):
        await connecting
    conn = await fake.accept()
    await asyncio.wait_for(conn.ws.wait_closed(), 2)


def test_say_asks_for_a_response_with_the_exact_words_after_the_persona() -> None:
    from providers.realtime.openai import OpenAiRealtime

    event = OpenAiRealtime.say_request("You are Ada.", "Your table is ready.")
    assert event["type"] == "response.create"
    text = event["response"]["instructions"]
    assert text.startswith("You are Ada.")
    assert text.endswith("Say exactly this to the caller, then listen: Your table is ready.")

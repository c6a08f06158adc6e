"""Realtime voice over the media stream, end to end over the ASGI router.

docs/plugin-behaviour.md, "Realtime voice"; docs/voice-path.md (one voice answers; model
audio framed, paced and marked like TTS audio; barge-in truncates the model's item).

The speech-to-speech model is faked at the provider seam (its wire protocol is tested in
tests/providers/test_realtime.py); codec, consumer, link, services and database are real.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from calls.carrier import provider_settings, set_provider
from calls.models import Call, TranscriptEntry
from calls.services.speech import speak
from calls.services.stream_plans import stream_url
from calls.streams.consumer import StreamAdmission
from providers.realtime.openai import END_CALL_TOOL
from providers.twilio import TwilioProvider

TOKEN = "12345678901234567890123456789012"
CALL_SID = "CA0000000000000000000000000000000a"
CONFIG = {
    "provider": "twilio",
    "fromNumber": "+15550001234",
    "inboundPolicy": "open",
    "twilio": {"accountSid": "AC00000000000000000000000000000001", "authToken": TOKEN},
    "publicUrl": "https://voice.example.com/voice/webhook",
    "realtime": {
        "enabled": True,
        "instructions": "You are Ada at Acme.",
        "providers": {"openai": {"apiKey": "sk-test"}},
    },
}

pytestmark = pytest.mark.django_db(transaction=True)


class FakeRealtime:
    sessions: list[FakeRealtime] = []

    def __init__(self, settings: Any, handler: Any) -> None:
        self.handler = handler
        self.connected_with: dict[str, Any] = {}
        self.audio = b""
        self.said: list[tuple[str, str | None]] = []
        self.truncated: list[tuple[str, int]] = []
        self.closed = False
        FakeRealtime.sessions.append(self)

    async def connect(self, *, instructions: str, greeting: str | None, tools: list) -> None:
        self.connected_with = {"instructions": instructions, "greeting": greeting, "tools": tools}

    async def send_audio(self, ulaw: bytes) -> None:
        self.audio += ulaw

    async def say(self, text: str, *, utterance_id: str | None = None) -> None:
        self.said.append((text, utterance_id))

    async def truncate(self, item_id: str, played_ms: int) -> None:
        self.truncated.append((item_id, played_ms))

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def carrier_api(configure: Any, monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    cfg = configure(CONFIG)
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={"sid": CALL_SID, "status": "completed"})

    set_provider(
        TwilioProvider(
            settings=provider_settings(cfg),
            http=httpx.Client(transport=httpx.MockTransport(handler)),
        )
    )
    monkeypatch.setattr("calls.streams.consumer.ADMISSION", StreamAdmission())
    monkeypatch.setattr("calls.streams.session.build_realtime", FakeRealtime)
    FakeRealtime.sessions.clear()
    return requests


@pytest.fixture
def application() -> Any:
    from voicecall_project.asgi import application

    return application


make_call = database_sync_to_async(
    lambda **fields: Call.objects.create(
        **{
            "provider": "twilio",
            "provider_call_id": CALL_SID,
            "direction": "inbound",
            "mode": "conversation",
            "state": "answered",
            "stream_token": "tok",
            "metadata": {"initialMessage": "Thanks for calling Acme."},
            **fields,
        }
    )
)
refresh = database_sync_to_async(lambda call: Call.objects.get(pk=call.pk))
lines = database_sync_to_async(
    lambda call: list(TranscriptEntry.objects.filter(call=call).values_list("speaker", "text"))
)


def _start() -> str:
    return json.dumps(
        {
            "event": "start",
            "streamSid": "MZ9",
            "start": {
                "streamSid": "MZ9",
                "callSid": CALL_SID,
                "customParameters": {"token": "tok"},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        }
    )


async def _attached(application: Any) -> tuple[WebsocketCommunicator, FakeRealtime]:
    communicator = WebsocketCommunicator(application, "/voice/stream/realtime")
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_to(text_data=_start())
    for _ in range(200):
        if FakeRealtime.sessions and FakeRealtime.sessions[-1].connected_with:
            return communicator, FakeRealtime.sessions[-1]
        await asyncio.sleep(0.01)
    raise AssertionError("realtime session never connected")


async def _eventually(check: Any) -> Any:
    for _ in range(200):
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_realtime_calls_stream_on_the_realtime_path(carrier_api: list) -> None:
    assert (
        await database_sync_to_async(stream_url)()
        == "wss://voice.example.com/voice/stream/realtime"
    )


async def test_the_model_greets_with_our_instructions_and_the_end_call_tool(
    carrier_api: list, application: Any
) -> None:
    call = await make_call()
    communicator, model = await _attached(application)
    assert model.connected_with == {
        "instructions": "You are Ada at Acme.",
        "greeting": "Thanks for calling Acme.",
        "tools": [END_CALL_TOOL],
    }
    # Nothing is on the record until the caller has heard the model say it.
    assert (await lines(call)) == []
    await communicator.send_to(
        text_data=json.dumps(
            {
                "event": "media",
                "streamSid": "MZ9",
                "media": {"track": "inbound", "payload": base64.b64encode(b"\x01" * 160).decode()},
            }
        )
    )
    await _eventually(lambda: asyncio.sleep(0, model.audio))
    assert model.audio == b"\x01" * 160
    await communicator.disconnect()


async def _frames(communicator: WebsocketCommunicator, count: int) -> list[dict[str, Any]]:
    return [json.loads(await communicator.receive_from(timeout=5)) for _ in range(count)]


def _echo(name: str) -> str:
    return json.dumps({"event": "mark", "streamSid": "MZ9", "mark": {"name": name}})


async def test_model_audio_is_framed_paced_and_marked_like_tts_audio(
    carrier_api: list, application: Any
) -> None:
    call = await make_call(metadata={})
    communicator, model = await _attached(application)
    # A burst: 100 ms of audio in one delta, as the model sends it (faster than real time).
    model.handler.on_audio(b"\x10" * 800, "item_1", None)
    model.handler.on_assistant_transcript("Hi there.", "item_1")
    model.handler.on_audio_done("item_1")
    loop = asyncio.get_running_loop()
    frames, times = [], []
    for _ in range(6):
        frames.append(json.loads(await communicator.receive_from(timeout=5)))
        times.append(loop.time())
    assert [f["event"] for f in frames] == ["media"] * 5 + ["mark"]
    assert {len(base64.b64decode(f["media"]["payload"])) for f in frames[:5]} == {160}
    # Paced: five 20 ms frames take about 80 ms from the first to the last, not 0.
    assert times[4] - times[0] >= 0.06
    assert (await lines(call)) == []  # played, but not yet confirmed heard
    await communicator.send_to(text_data=_echo(frames[5]["mark"]["name"]))
    assert await _eventually(lambda: _equals(lines(call), [("bot", "Hi there.")]))
    assert model.truncated == []
    await communicator.disconnect()


async def test_barge_in_clears_truncates_the_item_and_cuts_the_line(
    carrier_api: list, application: Any
) -> None:
    call = await make_call(metadata={})
    communicator, model = await _attached(application)
    words = "one two three four five six seven eight nine ten"
    model.handler.on_audio(b"\x10" * 8000, "item_7", None)  # 1 s of speech in one burst
    model.handler.on_assistant_transcript(words, "item_7")
    model.handler.on_audio_done("item_7")
    await _frames(communicator, 10)  # about 200 ms played
    model.handler.on_clear()
    for _ in range(40):  # frames already on their way, then the clear
        if json.loads(await communicator.receive_from(timeout=5))["event"] == "clear":
            break
    else:
        raise AssertionError("no clear")
    ((item, played_ms),) = await _eventually(lambda: asyncio.sleep(0, model.truncated))
    assert item == "item_7" and 180 <= played_ms <= 400
    ((speaker, text, interrupted),) = await _eventually(lambda: _bot_lines(call))
    assert speaker == "bot" and interrupted is True
    assert text and words.startswith(text) and words[len(text)] == " "
    assert len(text) < len(words) / 2
    await communicator.disconnect()


async def _bot_lines(call: Call) -> list[tuple[str, str, bool]]:
    return await database_sync_to_async(
        lambda: list(
            TranscriptEntry.objects.filter(call=call, speaker="bot").values_list(
                "speaker", "text", "interrupted"
            )
        )
    )()


async def test_transcripts_land_on_the_call(carrier_api: list, application: Any) -> None:
    call = await make_call(metadata={})
    communicator, model = await _attached(application)
    model.handler.on_audio(b"\x10" * 160, "item_1", None)
    model.handler.on_audio_done("item_1")
    model.handler.on_assistant_transcript("Hi, how can I help?", "item_1")
    mark = (await _frames(communicator, 2))[1]
    await communicator.send_to(text_data=_echo(mark["mark"]["name"]))
    assert await _eventually(lambda: _equals(lines(call), [("bot", "Hi, how can I help?")]))
    model.handler.on_user_transcript("I'd like to book a cleaning.")
    # Words the model wrote but never spoke (no audio) were never heard: no line.
    model.handler.on_assistant_transcript("Never played.", "item_9")
    expected = [("bot", "Hi, how can I help?"), ("user", "I'd like to book a cleaning.")]
    assert await _eventually(lambda: _equals(lines(call), expected))
    await communicator.disconnect()


async def _equals(awaitable: Any, expected: Any) -> bool:
    return (await awaitable) == expected


async def test_the_end_call_tool_hangs_up_and_other_tools_are_refused(
    carrier_api: list, application: Any
) -> None:
    call = await make_call(metadata={})
    communicator, model = await _attached(application)
    assert await model.handler.on_tool_call("weather", {}) == {
        "error": 'Tool "weather" not available'
    }
    assert await model.handler.on_tool_call("end_call", {"reason": "done"}) == {"ok": True}
    assert (await refresh(call)).state == "hangup-bot"
    assert any(r.url.path.endswith(f"{CALL_SID}.json") for r in carrier_api)
    await communicator.disconnect()


async def test_speech_for_a_realtime_call_is_handed_to_the_model(
    carrier_api: list, application: Any
) -> None:
    call = await make_call(metadata={})
    communicator, model = await _attached(application)
    call = await _eventually(lambda: _attached_row(call))
    spoken = await database_sync_to_async(speak)(
        call, "Your appointment is confirmed.", listen_after=True
    )
    assert model.said == [("Your appointment is confirmed.", spoken.utterance_id)]
    await communicator.disconnect()


async def _attached_row(call: Call) -> Call | None:
    row = await refresh(call)
    return row if row.stream_id else None


async def test_when_the_model_ends_the_session_the_call_ends(
    carrier_api: list, application: Any
) -> None:
    call = await make_call(metadata={})
    communicator, model = await _attached(application)
    model.handler.on_closed()
    closed = await communicator.receive_output(timeout=5)
    assert closed["type"] == "websocket.close"
    assert (await refresh(call)).state == "hangup-bot"
    assert model.closed

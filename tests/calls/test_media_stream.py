"""The media-stream websocket end to end over the real ASGI router (Twilio framing).

STT and TTS are faked at the provider seam (their wire protocols are tested in
tests/providers/test_stt.py and test_tts.py); everything else is the real thing: codec,
consumer, playback, services, database and the in-process channel layer.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from calls.carrier import provider_settings, set_provider
from calls.models import Call, ContinueOperation, TranscriptEntry
from calls.services.actions import call_send_dtmf
from calls.services.speech import speak
from calls.services.stream_plans import stream_plan
from calls.services.timers import timers_sweep
from calls.services.turns import turn_claim
from calls.streams.consumer import StreamAdmission
from providers.twilio import TwilioProvider
from tests.metrics_samples import sample

TOKEN = "12345678901234567890123456789012"
TWILIO = {
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
        "preStartTimeoutMs": 300,
        "maxPendingConnectionsPerIp": 2,
        "providers": {"openai": {"apiKey": "sk-test"}},
    },
    "tts": {"provider": "openai", "providers": {"openai": {"apiKey": "sk-test"}}},
}
CALL_SID = "CA00000000000000000000000000000009"
# What the Twilio REST API was asked, in order.
CARRIER_REQUESTS: list[httpx.Request] = []

pytestmark = pytest.mark.django_db(transaction=True)


class FakeStt:
    instances: list[FakeStt] = []

    def __init__(self, callbacks: Any) -> None:
        self.callbacks = callbacks
        self.audio = b""
        self.closed = False
        FakeStt.instances.append(self)

    async def connect(self) -> None:
        pass

    async def send_audio(self, ulaw: bytes) -> None:
        self.audio += ulaw

    async def close(self) -> None:
        self.closed = True


class FakeTts:
    spoken: list[str] = []

    async def stream(self, text: str) -> AsyncIterator[bytes]:
        FakeTts.spoken.append(text)
        yield b"\x11" * 320


@pytest.fixture
def streaming(configure: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = configure(TWILIO)
    # The Twilio REST API answers hang-ups (the lost-stream timer hangs up the call).
    CARRIER_REQUESTS.clear()

    def carrier(request: httpx.Request) -> httpx.Response:
        CARRIER_REQUESTS.append(request)
        return httpx.Response(200, json={"sid": CALL_SID, "status": "completed"})

    carrier_api = httpx.Client(transport=httpx.MockTransport(carrier))
    set_provider(TwilioProvider(settings=provider_settings(cfg), http=carrier_api))
    monkeypatch.setattr("calls.streams.consumer.ADMISSION", StreamAdmission())
    FakeStt.instances.clear()
    FakeTts.spoken.clear()
    monkeypatch.setattr(
        "calls.streams.session.build_stt", lambda settings, callbacks: FakeStt(callbacks)
    )
    monkeypatch.setattr("calls.streams.session.build_tts", lambda tts, http=None: FakeTts())


@pytest.fixture
def application() -> Any:
    from voicecall_project.asgi import application

    return application


def _make_call(**fields: Any) -> Call:
    defaults = dict(
        provider="twilio",
        provider_call_id=CALL_SID,
        direction="outbound",
        mode="conversation",
        state="answered",
        stream_token="good-token",
        metadata={"initialMessage": "Hi, it's the clinic."},
    )
    defaults.update(fields)
    return Call.objects.create(**defaults)


make_call_async = database_sync_to_async(_make_call)
refresh = database_sync_to_async(lambda call: Call.objects.get(pk=call.pk))


def _start(token: str = "good-token", sid: str = CALL_SID, stream_sid: str = "MZ1") -> str:
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": stream_sid,
            "start": {
                "streamSid": stream_sid,
                "accountSid": "AC1",
                "callSid": sid,
                "tracks": ["inbound"],
                "customParameters": {"token": token},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        }
    )


def _media(payload: bytes) -> str:
    return json.dumps(
        {
            "event": "media",
            "streamSid": "MZ1",
            "media": {
                "track": "inbound",
                "chunk": "1",
                "timestamp": "20",
                "payload": base64.b64encode(payload).decode(),
            },
        }
    )


async def _connect(application: Any) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, "/voice/stream")
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def _frames_until(communicator: WebsocketCommunicator, kind: str) -> list[dict]:
    frames = []
    while True:
        frame = json.loads(await communicator.receive_from(timeout=5))
        frames.append(frame)
        if frame["event"] == kind:
            return frames


async def test_a_fetch_for_a_live_call_gets_the_stream_document_with_its_token(
    streaming: None,
) -> None:
    call = await make_call_async(stream_token="")
    plan = await database_sync_to_async(stream_plan)(call)
    assert plan.url == "wss://voice.example.com/voice/stream"
    call = await refresh(call)
    assert plan.token == call.stream_token and len(call.stream_token) >= 16


async def test_a_stream_with_the_wrong_token_is_closed_1008(
    streaming: None, application: Any
) -> None:
    await make_call_async()
    communicator = await _connect(application)
    await communicator.send_to(text_data=_start(token="forged"))
    closed = await communicator.receive_output(timeout=5)
    assert (closed["type"], closed["code"]) == ("websocket.close", 1008)
    assert closed.get("reason") == "Unknown call"


async def test_a_socket_that_never_starts_is_closed_after_the_pre_start_timeout(
    streaming: None, application: Any
) -> None:
    communicator = await _connect(application)
    closed = await communicator.receive_output(timeout=5)
    assert (closed["code"], closed.get("reason")) == (1008, "Start timeout")


async def test_a_malformed_first_frame_is_closed_1008(streaming: None, application: Any) -> None:
    communicator = await _connect(application)
    await communicator.send_to(text_data="{not json")
    closed = await communicator.receive_output(timeout=5)
    assert closed["code"] == 1008


async def test_too_many_pending_sockets_from_one_peer_are_closed_1013(
    streaming: None, application: Any
) -> None:
    held = [await _connect(application) for _ in range(2)]
    third = await _connect(application)
    closed = await third.receive_output(timeout=5)
    assert (closed["code"], closed.get("reason")) == (
        1013,
        "Too many pending media stream connections",
    )
    for communicator in held:
        await communicator.disconnect()


async def test_the_greeting_is_spoken_on_the_stream_and_the_callers_words_come_back(
    streaming: None, application: Any
) -> None:
    call = await make_call_async()
    communicator = await _connect(application)
    await communicator.send_to(text_data=_start())
    frames = await _frames_until(communicator, "mark")
    assert FakeTts.spoken == ["Hi, it's the clinic."]
    audio = [f for f in frames if f["event"] == "media"]
    assert len(audio) >= 2 and all(f["streamSid"] == "MZ1" for f in audio)
    call = await refresh(call)
    assert call.stream_id == "MZ1" and "initialMessage" not in call.metadata

    await communicator.send_to(text_data=_media(b"\x7f" * 160))
    await communicator.send_to(text_data=_media(b"\x7e" * 160))
    await asyncio.sleep(0.05)
    stt = FakeStt.instances[-1]
    assert stt.audio == b"\x7f" * 160 + b"\x7e" * 160

    stt.callbacks.on_final("Tuesday works.")
    for _ in range(100):
        lines = await database_sync_to_async(
            lambda: list(TranscriptEntry.objects.filter(call=call).values_list("speaker", "text"))
        )()
        if ("user", "Tuesday works.") in lines:
            break
        await asyncio.sleep(0.02)
    assert lines == [("bot", "Hi, it's the clinic."), ("user", "Tuesday works.")]
    await communicator.disconnect()


async def test_speech_from_any_process_reaches_the_stream_over_the_channel_layer(
    streaming: None, application: Any
) -> None:
    call = await make_call_async(metadata={})
    communicator = await _connect(application)
    await communicator.send_to(text_data=_start())
    for _ in range(100):
        call = await refresh(call)
        if call.stream_id:
            break
        await asyncio.sleep(0.02)
    await database_sync_to_async(speak)(call, "Your table is ready.", listen_after=True)
    await _frames_until(communicator, "mark")
    assert FakeTts.spoken == ["Your table is ready."]
    await communicator.disconnect()


async def test_a_lost_stream_ends_the_call_after_the_grace_period(
    streaming: None, application: Any
) -> None:
    call = await make_call_async(metadata={})
    communicator = await _connect(application)
    await communicator.send_to(text_data=_start())
    await asyncio.sleep(0.1)
    await communicator.send_to(
        text_data=json.dumps({"event": "stop", "streamSid": "MZ1", "stop": {"callSid": CALL_SID}})
    )
    await communicator.wait(timeout=5)
    call = await refresh(call)
    assert call.stream_id == "" and call.stream_lost_at is not None
    assert FakeStt.instances[-1].closed

    sweep = database_sync_to_async(timers_sweep)
    await sweep(now=call.stream_lost_at - timedelta(milliseconds=500))
    assert (await refresh(call)).state == "answered"
    report = await sweep(now=call.stream_lost_at + timedelta(milliseconds=1))
    assert report.fired.get("stream_lost") == 1
    assert (await refresh(call)).state == "hangup-bot"


async def test_a_stream_whose_speech_recognition_cannot_connect_is_closed_1011(
    streaming: None, application: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from providers.errors import ProviderUnavailable

    class DeadStt(FakeStt):
        async def connect(self) -> None:
            raise ProviderUnavailable("STT connection failed: refused")

    monkeypatch.setattr(
        "calls.streams.session.build_stt", lambda settings, callbacks: DeadStt(callbacks)
    )
    call = await make_call_async(metadata={})
    failures = sample("voicecall_provider_errors_total", provider="openai", kind="stt")
    communicator = await _connect(application)
    await communicator.send_to(text_data=_start())
    closed = await communicator.receive_output(timeout=5)
    assert (closed["code"], closed.get("reason")) == (1011, "STT connection failed")
    call = await refresh(call)
    assert call.stream_id == "" and call.stream_lost_at is not None
    # Counted as the speech vendor's failure (docs/operations.md, "Metrics").
    assert sample("voicecall_provider_errors_total", provider="openai", kind="stt") == (
        failures + 1
    )


async def test_a_second_start_on_an_attached_stream_is_closed_1008(
    streaming: None, application: Any
) -> None:
    await make_call_async(metadata={})
    communicator = await _connect(application)
    await communicator.send_to(text_data=_start())
    await asyncio.sleep(0.1)
    await communicator.send_to(text_data=_start())
    closed = await communicator.receive_output(timeout=5)
    assert (closed["code"], closed.get("reason")) == (1008, "Duplicate start")


def _open_turn(call: Call) -> str:
    """A background `continue` waiting for the caller's answer (its prompt already said)."""
    token = "turn-1"
    deadline = timezone.now() + timedelta(minutes=3)
    turn_claim(call, token=token, started=timezone.now(), deadline=deadline, lease_until=deadline)
    ContinueOperation.objects.create(
        call=call, message="Which day suits you?", turn_token=token, deadline_at=deadline
    )
    return token


async def _until(predicate: Any) -> None:
    for _ in range(100):
        if await database_sync_to_async(predicate)():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the database never got there")


def _sent_twiml() -> ET.Element:
    [update] = [r for r in CARRIER_REQUESTS if r.url.path.endswith(f"/Calls/{CALL_SID}.json")]
    return ET.fromstring(parse_qs(update.content.decode())["Twiml"][0])


def _user_lines(call: Call) -> list[tuple[str, str | None]]:
    return list(
        TranscriptEntry.objects.filter(call=call, speaker="user").values_list("text", "turn_token")
    )


async def test_dtmf_on_a_streaming_call_reconnects_it_to_a_new_stream_with_a_new_token(
    streaming: None, application: Any
) -> None:
    call = await make_call_async(state="listening", metadata={})
    first = await _connect(application)
    await first.send_to(text_data=_start(stream_sid="MZ1"))
    await _until(lambda: Call.objects.get(pk=call.pk).stream_id == "MZ1")
    FakeStt.instances[-1].callbacks.on_final("Hello?")
    await _until(lambda: _user_lines(call) == [("Hello?", None)])
    turn = await database_sync_to_async(_open_turn)(call)

    await database_sync_to_async(call_send_dtmf)(call_id=call.call_id, digits="1#")

    # The digits, then straight back to a stream, with a token of its own.
    document = _sent_twiml()
    assert [(c.tag, c.get("digits")) for c in document] == [("Play", "1#"), ("Connect", None)]
    stream = document.find("Connect/Stream")
    assert stream is not None and stream.get("url") == "wss://voice.example.com/voice/stream"
    [(name, token)] = [(p.get("name"), p.get("value")) for p in stream.iter("Parameter")]
    assert name == "token" and token != "good-token" and re.fullmatch("[0-9a-f]{32}", token)
    assert (await refresh(call)).stream_token == token

    # The new TwiML ends the first stream.
    await first.send_to(
        text_data=json.dumps({"event": "stop", "streamSid": "MZ1", "stop": {"callSid": CALL_SID}})
    )
    await first.wait(timeout=5)
    lost = await refresh(call)
    assert lost.stream_id == "" and lost.stream_lost_at is not None and lost.turn_token == turn

    second = await _connect(application)
    await second.send_to(text_data=_start(token=token, stream_sid="MZ2"))
    await _until(lambda: Call.objects.get(pk=call.pk).stream_id == "MZ2")
    back = await refresh(call)
    assert back.stream_lost_at is None and back.turn_token == turn and back.stream_token == ""

    # Neither token opens another stream: the first one's, nor the one just used.
    for used in ("good-token", token):
        intruder = await _connect(application)
        await intruder.send_to(text_data=_start(token=used, stream_sid="MZ-x"))
        closed = await intruder.receive_output(timeout=5)
        assert (closed["code"], closed.get("reason")) == (1008, "Unknown call")
    assert (await refresh(call)).stream_id == "MZ2"

    # The new stream answers the turn that was open across the reconnect, on the same call.
    FakeStt.instances[-1].callbacks.on_final("Tuesday works.")
    await _until(lambda: len(_user_lines(call)) == 2)
    lines = await database_sync_to_async(_user_lines)(call)
    assert lines == [("Hello?", None), ("Tuesday works.", turn)]
    operation = await database_sync_to_async(ContinueOperation.objects.get)(call=call)
    assert (operation.status, operation.result.get("transcript")) == ("done", "Tuesday works.")

    # The grace deadline the first stream left is gone: the sweep keeps the call.
    report = await database_sync_to_async(timers_sweep)(
        now=lost.stream_lost_at + timedelta(seconds=1)
    )
    assert report.fired.get("stream_lost") is None
    assert (await refresh(call)).state not in ("hangup-bot", "completed")
    await second.disconnect()

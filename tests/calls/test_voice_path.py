"""The voice path tells the truth, on Twilio, Telnyx and Plivo streams.

docs/voice-path.md. Each carrier's own framing over the real ASGI router and consumer; the
stream's holder and `speak` talk over the in-process channel layer, as two processes would.
TTS and STT are faked at the provider seam; the carrier withholds or sends mark echoes as the
test says.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection

from calls.carrier import set_provider
from calls.exceptions import CapacityReached, SpeechFailed
from calls.models import Call, TranscriptEntry, Turn
from calls.selectors import call_record
from calls.services import stream_commands
from calls.services.speech import Spoken, speak
from calls.services.turn_records import turn_reply_claim, turn_stages
from calls.streams.consumer import StreamAdmission
from calls.streams.playback import MAX_PENDING
from providers.errors import ProviderError
from providers.tts import FailoverTts
from tests.fakes.carriers.base import CarrierDriver
from tests.fakes.carriers.plivo import PlivoDriver
from tests.fakes.carriers.telnyx import TelnyxDriver
from tests.fakes.carriers.twilio import TwilioDriver
from tests.fakes.plivo import helpers as plivo_helpers
from tests.fakes.telnyx import helpers as telnyx_helpers
from tests.metrics_samples import sample

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "0123456789abcdef0123456789abcdef"
STREAMING = {"enabled": True, "providers": {"openai": {"apiKey": "sk-test"}}}
TTS = {"provider": "openai", "providers": {"openai": {"apiKey": "sk-test"}}}
WORDS = "one two three four five six seven eight nine ten eleven twelve"


@dataclass(frozen=True)
class Carrier:
    """One carrier's stream framing, as its media servers speak it."""

    name: str
    call_id: str
    driver: Callable[[], CarrierDriver]
    start: Callable[[str, str], dict[str, Any]]
    echo: Callable[[str], dict[str, Any]]
    audio_event: str
    mark_event: str
    clear_event: str

    def mark_name(self, frame: dict[str, Any]) -> str:
        return frame["mark"]["name"] if "mark" in frame else frame["name"]


TWILIO_SID = "CA00000000000000000000000000000077"
CARRIERS = [
    Carrier(
        name="twilio",
        call_id=TWILIO_SID,
        driver=TwilioDriver,
        start=lambda sid, token: {
            "event": "start",
            "streamSid": "MZ1",
            "start": {
                "streamSid": "MZ1",
                "callSid": sid,
                "customParameters": {"token": token},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        },
        echo=lambda name: {"event": "mark", "streamSid": "MZ1", "mark": {"name": name}},
        audio_event="media",
        mark_event="mark",
        clear_event="clear",
    ),
    Carrier(
        name="telnyx",
        call_id=telnyx_helpers.CALL_CONTROL_ID,
        driver=TelnyxDriver,
        start=lambda cid, token: {
            "event": "start",
            "stream_id": "S1",
            "start": {
                "call_control_id": cid,
                "custom_parameters": {"token": token},
                "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1},
            },
        },
        echo=lambda name: {"event": "mark", "mark": {"name": name}},
        audio_event="media",
        mark_event="mark",
        clear_event="clear",
    ),
    Carrier(
        name="plivo",
        call_id=plivo_helpers.CALL_UUID,
        driver=PlivoDriver,
        start=lambda cid, token: {
            "event": "start",
            "start": {
                "callId": cid,
                "streamId": "S1",
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
            },
            "extra_headers": f"token={token}",
        },
        echo=lambda name: {"event": "playedStream", "streamId": "S1", "name": name},
        audio_event="playAudio",
        mark_event="checkpoint",
        clear_event="clearAudio",
    ),
]


class FakeStt:
    instances: list[FakeStt] = []

    def __init__(self, callbacks: Any) -> None:
        self.callbacks = callbacks
        FakeStt.instances.append(self)

    async def connect(self) -> None:
        pass

    async def send_audio(self, ulaw: bytes) -> None:
        pass

    async def close(self) -> None:
        pass


class FakeTts:
    """Speaks `seconds` of audio per utterance at once; fails or blocks when told to."""

    seconds = 0.2
    fail: str | None = None
    gate: asyncio.Event | None = None

    async def stream(self, text: str) -> AsyncIterator[bytes]:
        if FakeTts.gate is not None:
            await FakeTts.gate.wait()
        if FakeTts.fail is not None:
            raise ProviderError(FakeTts.fail)
        yield b"\x11" * int(8000 * FakeTts.seconds)


@pytest.fixture(params=CARRIERS, ids=lambda carrier: carrier.name)
def carrier(request: Any, configure: Any, monkeypatch: pytest.MonkeyPatch) -> Carrier:
    spec: Carrier = request.param
    driver = spec.driver()
    cfg = configure(driver.config(streaming=STREAMING, tts=TTS))
    set_provider(driver.adapter(cfg))
    monkeypatch.setattr("calls.streams.consumer.ADMISSION", StreamAdmission())
    monkeypatch.setattr("calls.streams.session.build_stt", lambda s, callbacks: FakeStt(callbacks))
    monkeypatch.setattr("calls.streams.session.build_tts", lambda tts, http=None: FakeTts())
    FakeStt.instances.clear()
    monkeypatch.setattr(FakeTts, "seconds", 0.2)
    monkeypatch.setattr(FakeTts, "fail", None)
    monkeypatch.setattr(FakeTts, "gate", None)
    return spec


@pytest.fixture
def application() -> Any:
    from voicecall_project.asgi import application

    return application


@database_sync_to_async
def _make_call(carrier: Carrier, **fields: Any) -> Call:
    values = {
        "provider": carrier.name,
        "provider_call_id": carrier.call_id,
        "direction": "outbound",
        "mode": "conversation",
        "state": "listening",
        "stream_token": TOKEN,
        **fields,
    }
    return Call.objects.create(**values)


@database_sync_to_async
def _row(call: Call) -> Call:
    return Call.objects.get(pk=call.pk)


@database_sync_to_async
def _bot_lines(call: Call) -> list[tuple[str, bool, str]]:
    return list(
        TranscriptEntry.objects.filter(call=call, speaker="bot").values_list(
            "text", "interrupted", "utterance_id"
        )
    )


# A plain worker thread, as an RPC request on another process would be: never the thread
# the stream's own database writes use.
def _speak_and_close(*args: Any, **kwargs: Any) -> Spoken:
    try:
        return speak(*args, **kwargs)
    finally:
        connection.close()  # the worker thread's own connection, back to the pool


_speak = sync_to_async(_speak_and_close, thread_sensitive=False)


async def _attached(application: Any, carrier: Carrier, call: Call) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, "/voice/stream")
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_to(text_data=json.dumps(carrier.start(carrier.call_id, TOKEN)))
    for _ in range(200):
        if (await _row(call)).stream_id and FakeStt.instances:
            return communicator
        await asyncio.sleep(0.01)
    raise AssertionError("stream never attached")


async def _until_event(
    communicator: WebsocketCommunicator, event: str, *, limit: int = 500
) -> list[dict[str, Any]]:
    frames = []
    for _ in range(limit):
        frame = json.loads(await communicator.receive_from(timeout=5))
        frames.append(frame)
        if frame["event"] == event:
            return frames
    raise AssertionError(f"no {event} frame")


async def test_the_bot_line_is_written_when_the_echo_says_it_was_heard(
    carrier: Carrier, application: Any
) -> None:
    call = await _make_call(carrier)
    communicator = await _attached(application, carrier, call)
    call = await _row(call)
    speaking = asyncio.ensure_future(
        _speak(call, "Your table is ready.", listen_after=True, wait=True)
    )
    frames = await _until_event(communicator, carrier.mark_event)
    assert {f["event"] for f in frames[:-1]} == {carrier.audio_event}
    assert len(frames) - 1 == 10  # 200 ms as ten 20 ms frames
    await asyncio.sleep(0.05)
    assert await _bot_lines(call) == []  # queued and played is not yet heard
    assert not speaking.done()

    await communicator.send_to(text_data=json.dumps(carrier.echo(carrier.mark_name(frames[-1]))))
    spoken: Spoken = await asyncio.wait_for(speaking, 5)
    assert (spoken.heard, spoken.interrupted) == (True, False)
    assert await _bot_lines(call) == [("Your table is ready.", False, spoken.utterance_id)]
    await communicator.disconnect()


async def test_barge_in_cuts_the_line_to_what_played_and_flags_it(
    carrier: Carrier, application: Any
) -> None:
    FakeTts.seconds = 2.0
    call = await _make_call(carrier)
    communicator = await _attached(application, carrier, call)
    call = await _row(call)
    speaking = asyncio.ensure_future(_speak(call, WORDS, listen_after=True, wait=True))
    for _ in range(25):  # about half a second of the two played
        frame = json.loads(await communicator.receive_from(timeout=5))
        assert frame["event"] == carrier.audio_event

    FakeStt.instances[-1].callbacks.on_speech_start()  # the caller talks over the bot
    await _until_event(communicator, carrier.clear_event)
    spoken: Spoken = await asyncio.wait_for(speaking, 5)
    assert (spoken.heard, spoken.interrupted) == (False, True)

    ((text, interrupted, utterance_id),) = await _bot_lines(call)
    assert interrupted is True and utterance_id == spoken.utterance_id
    assert text and WORDS.startswith(text) and WORDS[len(text)] == " "  # whole words
    # About a quarter of the audio played: a quarter of the words, give or take one.
    assert len(WORDS) * 0.1 < len(text) < len(WORDS) * 0.5
    record = await database_sync_to_async(call_record)(await _row(call))
    assert record["transcript"][-1] == {
        "timestamp": record["transcript"][-1]["timestamp"],
        "speaker": "bot",
        "text": text,
        "isFinal": True,
        "interrupted": True,
    }
    await communicator.disconnect()


async def test_a_failed_tts_is_an_error_and_the_stream_stays_up(
    carrier: Carrier, application: Any
) -> None:
    FakeTts.fail = "TTS failed: openai: timed out; elevenlabs: 401"
    call = await _make_call(carrier)
    communicator = await _attached(application, carrier, call)
    call = await _row(call)
    with pytest.raises(SpeechFailed, match="TTS failed: openai: timed out; elevenlabs: 401"):
        await _speak(call, "Are you there?", listen_after=True, wait=True)
    assert await _bot_lines(call) == []

    FakeTts.fail = None  # the next utterance plays on the same socket
    speaking = asyncio.ensure_future(_speak(call, "Sorry, go on.", listen_after=True, wait=True))
    frames = await _until_event(communicator, carrier.mark_event)
    await communicator.send_to(text_data=json.dumps(carrier.echo(carrier.mark_name(frames[-1]))))
    assert (await asyncio.wait_for(speaking, 5)).heard is True
    await communicator.disconnect()


async def test_a_full_speech_queue_refuses_the_words(carrier: Carrier, application: Any) -> None:
    FakeTts.gate = asyncio.Event()  # the first utterance never gets its audio
    call = await _make_call(carrier)
    communicator = await _attached(application, carrier, call)
    call = await _row(call)
    for index in range(MAX_PENDING + 1):  # one playing, eight waiting
        await _speak(call, f"line {index}", listen_after=True)
    with pytest.raises(CapacityReached, match="Speech queue is full"):
        await _speak(call, "one too many", listen_after=True)
    FakeTts.gate.set()
    await communicator.disconnect()


async def test_no_process_holding_the_stream_is_an_error_not_silence(
    carrier: Carrier, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream_commands, "ACK_TIMEOUT_S", 0.2)
    # The row says a stream is attached, but the process that held it is gone.
    call = await _make_call(carrier, stream_id="MZ-gone")
    with pytest.raises(SpeechFailed, match="No media stream for call"):
        await _speak(call, "Hello?", listen_after=True)
    assert (await _row(call)).state == "listening"
    assert await _bot_lines(call) == []


async def test_a_streamed_turn_is_stamped_from_the_vad_to_the_echo(
    carrier: Carrier, application: Any
) -> None:
    call = await _make_call(carrier)
    communicator = await _attached(application, carrier, call)
    ears = FakeStt.instances[-1].callbacks
    ears.on_speech_stop(800)  # the VAD waited 800 ms of silence before deciding
    ears.on_final("Is Tuesday free?")
    for _ in range(200):
        turn = await database_sync_to_async(Turn.objects.filter(call_id=call.pk).first)()
        if turn is not None:
            break
        await asyncio.sleep(0.01)
    assert turn is not None and turn.initiator == "caller"
    assert turn.endpointed_at - turn.caller_stopped_at == timedelta(milliseconds=800)
    assert turn.transcript_at >= turn.endpointed_at

    # The reply, as the responder says it: ready, then spoken on the stream.
    assert await database_sync_to_async(turn_reply_claim)(
        call=call, entry_id=turn.caller_entry_id, utterance_id="reply-1"
    )
    speaking = asyncio.ensure_future(
        _speak(
            await _row(call), "Yes, it is.", listen_after=True, wait=True, utterance_id="reply-1"
        )
    )
    frames = await _until_event(communicator, carrier.mark_event)
    await communicator.send_to(text_data=json.dumps(carrier.echo(carrier.mark_name(frames[-1]))))
    await asyncio.wait_for(speaking, 5)
    turn = await database_sync_to_async(Turn.objects.get)(pk=turn.pk)
    stages = turn_stages(turn)
    assert stages["endpointingMs"] == 800
    # 200 ms of audio played between the first frame and the echo.
    assert stages["playedMs"] is not None and stages["playedMs"] >= 150
    assert stages["totalMs"] is not None and stages["totalMs"] >= 800
    assert not turn.interrupted
    await communicator.disconnect()


class _DownVendor:
    """A TTS vendor of the chain that fails every utterance before any audio."""

    name = "elevenlabs"

    async def stream(self, text: str) -> AsyncIterator[bytes]:
        raise ProviderError('TTS provider "elevenlabs" returned HTTP 503: busy')
        yield b""  # an async generator, as the vendors' streams are


async def test_a_tts_vendor_failing_on_a_stream_is_counted_by_its_name(
    carrier: Carrier, application: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "calls.streams.session.build_tts",
        lambda tts, http=None: FailoverTts([_DownVendor()]),
    )
    before = sample("voicecall_provider_errors_total", provider="elevenlabs", kind="tts")
    call = await _make_call(carrier)
    communicator = await _attached(application, carrier, call)
    with pytest.raises(SpeechFailed, match="TTS failed"):
        await _speak(await _row(call), "Are you there?", listen_after=True, wait=True)
    assert sample("voicecall_provider_errors_total", provider="elevenlabs", kind="tts") == (
        before + 1
    )
    await communicator.disconnect()


async def test_every_stream_of_a_process_shares_one_pooled_tts_client(
    carrier: Carrier, application: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients: list[Any] = []

    def build(tts: Any, http: Any = None) -> FakeTts:
        clients.append(http)
        return FakeTts()

    monkeypatch.setattr("calls.streams.session.build_tts", build)
    first = await _make_call(carrier)
    communicator = await _attached(application, carrier, first)
    await communicator.disconnect()
    second = await _make_call(carrier, provider_call_id=carrier.call_id + "2")
    carrier_start = carrier.start(carrier.call_id + "2", TOKEN)
    again = WebsocketCommunicator(application, "/voice/stream")
    assert (await again.connect())[0]
    await again.send_to(text_data=json.dumps(carrier_start))
    for _ in range(200):
        if len(clients) == 2:
            break
        await asyncio.sleep(0.01)
    assert len(clients) == 2 and clients[0] is clients[1] is not None
    assert (await _row(second)).stream_id
    await again.disconnect()

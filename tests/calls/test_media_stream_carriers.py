"""Media streams on Plivo and Telnyx: the same consumer as Twilio, each carrier's way in.

Plivo connects the stream from the answer fetch's `<Stream>` (token in extraHeaders, echoed as
the start frame's `extra_headers`); Telnyx from the dial request (`stream_auth_token`, sent
back as the `x-telnyx-streaming-auth-token` upgrade header) or, for an inbound call, from
`streaming_start` on call.answered (token also in `custom_parameters`). The flows run the real
adapters on the carrier drivers' fake REST APIs, signed webhooks, and the real consumer over the
ASGI router; STT and TTS are faked at the provider seam as in test_media_stream.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import httpx
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from calls.carrier import set_provider
from calls.models import Call, TranscriptEntry
from calls.services.actions import call_send_dtmf
from calls.services.dialling import call_initiate
from calls.services.stream_plans import stream_plan
from calls.services.streams import stream_attach
from calls.streams.consumer import StreamAdmission
from providers.base import CallTarget, PlaceCall, ReplyContext, StreamPlan
from providers.plivo.media import PlivoMediaCodec
from providers.telnyx.media import TelnyxMediaCodec
from tests.fakes.carriers.base import (
    CALLEE,
    FRIEND,
    GREETING,
    OUR_NUMBER,
    PUBLIC_HOST,
    CarrierDriver,
)
from tests.fakes.carriers.plivo import PlivoDriver
from tests.fakes.carriers.telnyx import TelnyxDriver
from tests.fakes.plivo import helpers as plivo_helpers
from tests.fakes.telnyx import helpers as telnyx_helpers

STREAM_URL = f"wss://{PUBLIC_HOST}/voice/stream"
PLAN = StreamPlan(url="wss://voice.example.com/voice/stream", token="0123456789abcdef" * 2)
STREAMING = {
    "enabled": True,
    "preStartTimeoutMs": 2000,
    "providers": {"openai": {"apiKey": "sk-test"}},
}
TTS = {"provider": "openai", "providers": {"openai": {"apiKey": "sk-test"}}}
OPENING = "Hi, this is the clinic calling about your appointment."


# == adapters: what each carrier is told ========================================================


def _stream_element(body: bytes) -> ET.Element:
    root = ET.fromstring(body.decode())
    assert root.tag == "Response" and [child.tag for child in root] == ["Stream"]
    return root[0]


def test_plivo_answer_for_a_streaming_call_is_a_bidirectional_mulaw_stream() -> None:
    reply = plivo_helpers.provider().render_reply(
        plivo_helpers.webhook(
            "https://voice.example.com/voice/webhook?callId=c1&flow=answer",
            {"CallUUID": plivo_helpers.CALL_UUID, "Event": "StartApp", "CallStatus": "in-progress"},
        ),
        ReplyContext(call_id="c1", known=True, state="answered", stream=PLAN),
    )
    assert (reply.status, reply.content_type) == (200, "text/xml")
    stream = _stream_element(reply.body)
    assert stream.text == PLAN.url
    assert stream.attrib == {
        "bidirectional": "true",
        "keepCallAlive": "true",
        "contentType": "audio/x-mulaw;rate=8000",
        "extraHeaders": f"token={PLAN.token}",
    }


def test_plivo_extra_headers_token_is_the_one_the_codec_reads_back() -> None:
    reply = plivo_helpers.provider().render_reply(
        plivo_helpers.webhook(
            "https://voice.example.com/voice/webhook?callId=c1&flow=answer",
            {"CallUUID": plivo_helpers.CALL_UUID, "Event": "StartApp"},
        ),
        ReplyContext(call_id="c1", known=True, stream=PLAN),
    )
    extra_headers = _stream_element(reply.body).get("extraHeaders")
    start = PlivoMediaCodec().decode(_plivo_start(plivo_helpers.CALL_UUID, extra_headers))
    assert start.token == PLAN.token  # type: ignore[union-attr]


def test_plivo_hangup_callbacks_never_carry_a_stream() -> None:
    reply = plivo_helpers.provider().render_reply(
        plivo_helpers.webhook(
            "https://voice.example.com/voice/webhook?callId=c1&flow=hangup",
            {"CallUUID": plivo_helpers.CALL_UUID, "CallStatus": "completed"},
        ),
        ReplyContext(call_id="c1", known=True, stream=PLAN),
    )
    assert reply.body == b"<Response></Response>"


def test_plivo_and_telnyx_hand_out_their_codecs() -> None:
    assert isinstance(plivo_helpers.provider().media_codec(), PlivoMediaCodec)
    assert isinstance(telnyx_helpers.provider().media_codec(), TelnyxMediaCodec)


TELNYX_STREAM_FIELDS = {
    "stream_url": PLAN.url,
    "stream_track": "inbound_track",
    "stream_codec": "PCMU",
    "stream_bidirectional_mode": "rtp",
    "stream_bidirectional_codec": "PCMU",
    "stream_auth_token": PLAN.token,
}
DIALED = httpx.Response(
    200,
    json={
        "data": {
            "call_control_id": telnyx_helpers.CALL_CONTROL_ID,
            "is_alive": False,
            "record_type": "call",
        }
    },
)


def _telnyx_dial(stream: StreamPlan | None) -> dict[str, Any]:
    carrier = telnyx_helpers.Carrier(DIALED)
    telnyx_helpers.provider(carrier).place_call(
        PlaceCall(
            call_id="c1",
            to_number=CALLEE,
            from_number=OUR_NUMBER,
            webhook_url=f"{telnyx_helpers.HOOK_URL}?callId=c1",
            mode="conversation",
            stream=stream,
        )
    )
    assert carrier.paths() == ["/v2/calls"]
    return carrier.json()


def test_telnyx_dial_of_a_streaming_call_carries_the_stream_fields() -> None:
    body = _telnyx_dial(PLAN)
    assert {key: body.get(key) for key in TELNYX_STREAM_FIELDS} == TELNYX_STREAM_FIELDS


def test_telnyx_dial_without_a_stream_has_no_stream_fields() -> None:
    assert not [key for key in _telnyx_dial(None) if key.startswith("stream")]


def test_telnyx_inbound_stream_starts_with_streaming_start_and_its_token() -> None:
    carrier = telnyx_helpers.Carrier()
    target = CallTarget(call_id="c1", provider_call_id=telnyx_helpers.CALL_CONTROL_ID, stream=PLAN)
    telnyx_helpers.provider(carrier).start_stream(target)
    assert carrier.paths() == ["/v2/calls/v3:TEST-call-control-id-0001/actions/streaming_start"]
    body = carrier.json()
    uuid.UUID(body.pop("command_id"))
    assert body == {
        **TELNYX_STREAM_FIELDS,
        "custom_parameters": [{"name": "token", "value": PLAN.token}],
        "client_state": base64.b64encode(b"c1").decode(),
    }


def test_telnyx_codec_takes_the_token_from_the_upgrade_header() -> None:
    codec = TelnyxMediaCodec()
    codec.upgrade({"x-telnyx-streaming-auth-token": PLAN.token})
    start = codec.decode(_telnyx_start("v3:leg", params={}))
    assert start.token == PLAN.token  # type: ignore[union-attr]


def test_telnyx_codec_without_header_or_parameter_has_no_token() -> None:
    codec = TelnyxMediaCodec()
    codec.upgrade({"user-agent": "telnyx"})
    assert codec.decode(_telnyx_start("v3:leg", params={})).token is None  # type: ignore[union-attr]


# == the consumer, end to end ===================================================================

transactional = pytest.mark.django_db(transaction=True)


class FakeStt:
    instances: ClassVar[list[FakeStt]] = []

    def __init__(self, callbacks: Any) -> None:
        self.callbacks = callbacks
        self.audio = b""
        FakeStt.instances.append(self)

    async def connect(self) -> None:
        pass

    async def send_audio(self, ulaw: bytes) -> None:
        self.audio += ulaw

    async def close(self) -> None:
        pass


class FakeTts:
    spoken: ClassVar[list[str]] = []

    async def stream(self, text: str) -> AsyncIterator[bytes]:
        FakeTts.spoken.append(text)
        yield b"\x11" * 320


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("calls.streams.consumer.ADMISSION", StreamAdmission())
    FakeStt.instances.clear()
    FakeTts.spoken.clear()
    monkeypatch.setattr(
        "calls.streams.session.build_stt", lambda settings, callbacks: FakeStt(callbacks)
    )
    monkeypatch.setattr("calls.streams.session.build_tts", lambda tts, http=None: FakeTts())


def _started(driver: CarrierDriver, configure: Any) -> CarrierDriver:
    cfg = configure(driver.config(streaming=STREAMING, tts=TTS))
    set_provider(driver.adapter(cfg))
    return driver


@pytest.fixture
def plivo(configure: Any, fakes: None) -> PlivoDriver:
    return _started(PlivoDriver(), configure)  # type: ignore[return-value]


@pytest.fixture
def telnyx(configure: Any, fakes: None) -> TelnyxDriver:
    return _started(TelnyxDriver(), configure)  # type: ignore[return-value]


@pytest.fixture
def application() -> Any:
    from voicecall_project.asgi import application

    return application


def _dial_and_answer(driver: CarrierDriver) -> Call:
    """An outbound conversation, dialled and answered (the answer webhook, signed)."""
    call = call_initiate(to=CALLEE, message=OPENING, mode="conversation")
    call.refresh_from_db()
    driver.post_all(Client(), driver.answered(call))
    call.refresh_from_db()
    return call


def _plivo_start(call_uuid: str, extra_headers: str | None) -> str:
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": 1,
            "start": {
                "callId": call_uuid,
                "streamId": "st-1",
                "accountId": plivo_helpers.AUTH_ID,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
            },
            "extra_headers": extra_headers,
        }
    )


def _plivo_media(payload: bytes) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": 2,
            "streamId": "st-1",
            "media": {
                "track": "inbound",
                "timestamp": "1705312200000",
                "chunk": 1,
                "payload": base64.b64encode(payload).decode(),
            },
        }
    )


def _telnyx_start(control_id: str, *, params: dict[str, str]) -> str:
    return json.dumps(
        {
            "event": "start",
            "sequence_number": "1",
            "stream_id": "ts-1",
            "start": {
                "call_control_id": control_id,
                "custom_parameters": params,
                "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1},
            },
        }
    )


def _telnyx_media(payload: bytes) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequence_number": "2",
            "stream_id": "ts-1",
            "media": {
                "track": "inbound",
                "chunk": "1",
                "timestamp": "20",
                "payload": base64.b64encode(payload).decode(),
            },
        }
    )


async def _connect(
    application: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, "/voice/stream", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def _frames_until(communicator: WebsocketCommunicator, kind: str) -> list[dict[str, Any]]:
    frames = []
    while True:
        frame = json.loads(await communicator.receive_from(timeout=5))
        frames.append(frame)
        if frame["event"] == kind:
            return frames


async def _closed_with(communicator: WebsocketCommunicator) -> tuple[int, str | None]:
    closed = await communicator.receive_output(timeout=5)
    assert closed["type"] == "websocket.close"
    return closed["code"], closed.get("reason")


async def _hears(call: Call, communicator: WebsocketCommunicator, media: list[str]) -> None:
    """Caller audio reaches STT, and its final transcript lands on the call."""
    for frame in media:
        await communicator.send_to(text_data=frame)
    await asyncio.sleep(0.05)
    stt = FakeStt.instances[-1]
    assert stt.audio == b"\x7f" * 160 + b"\x7e" * 160
    stt.callbacks.on_final("Tuesday works.")
    lines: list[tuple[str, str]] = []
    for _ in range(100):
        lines = await database_sync_to_async(
            lambda: list(
                TranscriptEntry.objects.filter(call=call, speaker="user").values_list(
                    "speaker", "text"
                )
            )
        )()
        if lines:
            break
        await asyncio.sleep(0.02)
    assert lines == [("user", "Tuesday works.")]


refresh = database_sync_to_async(lambda call: Call.objects.get(pk=call.pk))


# -- Plivo ---------------------------------------------------------------------------------------


def _plivo_stream_token(driver: PlivoDriver) -> str:
    """The token of the `<Stream>` our reply to the answer fetch handed Plivo."""
    streams = [el for doc in driver.reply_xmls() for el in ET.fromstring(doc).iter("Stream")]
    assert len(streams) == 1 and streams[0].text == STREAM_URL
    key, _, token = (streams[0].get("extraHeaders") or "").partition("=")
    assert key == "token" and token.isalnum()
    return token


@transactional
async def test_plivo_stream_attaches_greets_with_play_audio_and_hears_the_caller(
    plivo: PlivoDriver, application: Any
) -> None:
    call = await database_sync_to_async(_dial_and_answer)(plivo)
    assert call.metadata.get("initialMessage") == OPENING  # deferred to the stream
    token = _plivo_stream_token(plivo)
    assert token == call.stream_token

    communicator = await _connect(application)
    await communicator.send_to(text_data=_plivo_start(call.provider_call_id, f"token={token}"))
    frames = await _frames_until(communicator, "checkpoint")
    assert FakeTts.spoken == [OPENING]
    audio = [f for f in frames if f["event"] == "playAudio"]
    assert len(audio) >= 2 and all(
        f["media"]["contentType"] == "audio/x-mulaw" and f["media"]["sampleRate"] == 8000
        for f in audio
    )
    assert frames[-1]["streamId"] == "st-1" and frames[-1]["name"]
    call = await refresh(call)
    assert call.stream_id == "st-1" and "initialMessage" not in call.metadata

    await _hears(call, communicator, [_plivo_media(b"\x7f" * 160), _plivo_media(b"\x7e" * 160)])
    await communicator.disconnect()


@transactional
async def test_plivo_stream_with_a_wrong_token_is_closed_1008(
    plivo: PlivoDriver, application: Any
) -> None:
    call = await database_sync_to_async(_dial_and_answer)(plivo)
    communicator = await _connect(application)
    await communicator.send_to(text_data=_plivo_start(call.provider_call_id, "token=forged1"))
    assert await _closed_with(communicator) == (1008, "Unknown call")
    assert (await refresh(call)).stream_id == ""


@pytest.mark.django_db
def test_a_redelivered_answer_fetch_gets_the_kept_stream_whose_token_still_opens_it(
    plivo: PlivoDriver,
) -> None:
    # The replay is answered with the reply kept for it, not a new plan: the carrier may
    # connect with either copy, so the token must be the one still waiting on the call.
    call = call_initiate(to=CALLEE, message=OPENING, mode="conversation")
    call.refresh_from_db()
    client = Client()
    [answer] = plivo.answered(call)
    plivo.post(client, answer)
    plivo.post(client, answer)
    first, again = plivo.reply_xmls()
    assert again == first
    token = _plivo_stream_token_of(first)
    call.refresh_from_db()
    assert call.stream_token == token
    stream_attach(provider_call_id=call.provider_call_id, token=token, stream_id="st-1")
    assert Call.objects.get(pk=call.pk).stream_id == "st-1"


def _plivo_stream_token_of(document: str) -> str:
    [stream] = ET.fromstring(document).iter("Stream")
    key, _, token = (stream.get("extraHeaders") or "").partition("=")
    assert key == "token"
    return token


@transactional
async def test_plivo_dtmf_goes_out_of_band_and_the_stream_stays(
    plivo: PlivoDriver, application: Any
) -> None:
    call = await database_sync_to_async(_dial_and_answer)(plivo)
    communicator = await _connect(application)
    await communicator.send_to(
        text_data=_plivo_start(call.provider_call_id, f"token={_plivo_stream_token(plivo)}")
    )
    await _frames_until(communicator, "checkpoint")
    before = len(plivo.api.requests)

    await database_sync_to_async(call_send_dtmf)(call_id=call.call_id, digits="1#")

    [dtmf] = plivo.api.requests[before:]  # the REST DTMF command, nothing else
    assert (dtmf.method, dtmf.url.path.rstrip("/").rsplit("/", 1)[-1]) == ("POST", "DTMF")
    await _stays_attached(call, communicator, "st-1")
    await _hears(call, communicator, [_plivo_media(b"\x7f" * 160), _plivo_media(b"\x7e" * 160)])
    await communicator.disconnect()


async def _stays_attached(call: Call, communicator: WebsocketCommunicator, stream_id: str) -> None:
    """No detach, no new stream and no new token: the socket is still ours."""
    assert await communicator.receive_nothing(timeout=0.2)
    after = await refresh(call)
    assert (after.stream_id, after.stream_token, after.stream_lost_at) == (stream_id, "", None)


# -- Telnyx --------------------------------------------------------------------------------------


@transactional
async def test_telnyx_dialled_stream_attaches_by_its_auth_header_and_greets_with_media(
    telnyx: TelnyxDriver, application: Any
) -> None:
    call = await database_sync_to_async(_dial_and_answer)(telnyx)
    dial = telnyx.dials[call.provider_call_id]
    assert (
        dial["stream_url"],
        dial["stream_bidirectional_mode"],
        dial["stream_bidirectional_codec"],
    ) == (STREAM_URL, "rtp", "PCMU")
    assert dial["stream_auth_token"] == call.stream_token
    assert call.metadata.get("initialMessage") == OPENING
    assert "speak" not in [action for _, action, _ in telnyx.commands()]

    communicator = await _connect(
        application,
        headers=[(b"x-telnyx-streaming-auth-token", dial["stream_auth_token"].encode())],
    )
    await communicator.send_to(text_data=json.dumps({"event": "connected", "version": "1.0.0"}))
    await communicator.send_to(text_data=_telnyx_start(call.provider_call_id, params={}))
    frames = await _frames_until(communicator, "mark")
    assert FakeTts.spoken == [OPENING]
    audio = [f for f in frames if f["event"] == "media"]
    assert len(audio) >= 2 and all(
        set(f) == {"event", "media"} and f["media"]["payload"] for f in audio
    )
    assert frames[-1]["mark"]["name"]
    assert (await refresh(call)).stream_id == "ts-1"

    await _hears(call, communicator, [_telnyx_media(b"\x7f" * 160), _telnyx_media(b"\x7e" * 160)])
    await communicator.disconnect()


@transactional
@pytest.mark.parametrize("header", [b"forged", None], ids=["wrong-header", "no-token"])
async def test_telnyx_stream_without_the_right_token_is_closed_1008(
    telnyx: TelnyxDriver, application: Any, header: bytes | None
) -> None:
    call = await database_sync_to_async(_dial_and_answer)(telnyx)
    headers = [(b"x-telnyx-streaming-auth-token", header)] if header else None
    communicator = await _connect(application, headers=headers)
    await communicator.send_to(text_data=_telnyx_start(call.provider_call_id, params={}))
    assert await _closed_with(communicator) == (1008, "Unknown call")


def _inbound_answered(driver: TelnyxDriver) -> Call:
    control_id = driver.new_provider_call_id()
    client = Client()
    driver.post_all(client, driver.inbound(control_id, FRIEND, OUR_NUMBER))
    call = Call.objects.get(provider_call_id=control_id)
    driver.post_all(client, driver.inbound_answered(call))
    call.refresh_from_db()
    return call


@transactional
async def test_telnyx_inbound_call_streams_after_answer_and_greets_the_caller(
    telnyx: TelnyxDriver, application: Any
) -> None:
    call = await database_sync_to_async(_inbound_answered)(telnyx)
    actions = telnyx.commands(call.provider_call_id)
    assert [action for _, action, _ in actions] == ["answer", "streaming_start"]
    answer, start = actions[0][2], actions[1][2]
    assert not [key for key in answer if key.startswith("stream")]
    assert (
        start["stream_url"],
        start["stream_track"],
        start["stream_bidirectional_mode"],
        start["stream_auth_token"],
    ) == (STREAM_URL, "inbound_track", "rtp", call.stream_token)
    params = {p["name"]: p["value"] for p in start["custom_parameters"]}

    communicator = await _connect(application)
    await communicator.send_to(text_data=_telnyx_start(call.provider_call_id, params=params))
    await _frames_until(communicator, "mark")
    assert FakeTts.spoken == [GREETING]
    assert (await refresh(call)).stream_id == "ts-1"
    await communicator.disconnect()


@transactional
async def test_telnyx_dtmf_goes_out_of_band_and_the_stream_stays(
    telnyx: TelnyxDriver, application: Any
) -> None:
    call = await database_sync_to_async(_dial_and_answer)(telnyx)
    dial = telnyx.dials[call.provider_call_id]
    communicator = await _connect(
        application,
        headers=[(b"x-telnyx-streaming-auth-token", dial["stream_auth_token"].encode())],
    )
    await communicator.send_to(text_data=_telnyx_start(call.provider_call_id, params={}))
    await _frames_until(communicator, "mark")

    await database_sync_to_async(call_send_dtmf)(call_id=call.call_id, digits="1#")

    actions = [action for _, action, _ in telnyx.commands(call.provider_call_id)]
    assert actions == ["send_dtmf"]  # no streaming_start after it
    await _stays_attached(call, communicator, "ts-1")
    await _hears(call, communicator, [_telnyx_media(b"\x7f" * 160), _telnyx_media(b"\x7e" * 160)])
    await communicator.disconnect()


@pytest.mark.django_db
def test_telnyx_notify_call_dials_without_a_stream(telnyx: TelnyxDriver) -> None:
    # The carrier speaks a notify message itself; a stream attaching too would race it.
    call = call_initiate(to=CALLEE, message=OPENING, mode="notify")
    call.refresh_from_db()
    dial = telnyx.dials[call.provider_call_id]
    assert not [key for key in dial if key.startswith("stream")]


@pytest.mark.django_db
def test_stream_tokens_fit_plivos_extra_headers_alphabet(plivo: PlivoDriver) -> None:
    # plivo.com/docs/voice/xml/audiostream: extraHeaders allows only [A-Za-z0-9].
    calls = [
        Call.objects.create(
            provider="plivo",
            provider_call_id=str(uuid.uuid4()),
            direction="outbound",
            mode="conversation",
            state="answered",
        )
        for _ in range(20)
    ]
    tokens = {plan.token for plan in map(stream_plan, calls) if plan is not None}
    assert len(tokens) == 20 and all(token.isalnum() and len(token) >= 32 for token in tokens)

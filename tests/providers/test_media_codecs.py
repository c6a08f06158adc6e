"""Media-stream wire codecs: Twilio, Telnyx, Plivo.

docs/carriers.md, "Twilio: media streams", "Telnyx: media streams" and
"Plivo: media streams".
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers.media import (
    AudioIn,
    Connected,
    DtmfIn,
    MarkDone,
    MediaCodec,
    MediaProtocolError,
    StreamStart,
    StreamStop,
)
from providers.plivo.media import PlivoMediaCodec
from providers.telnyx.media import TelnyxMediaCodec
from providers.twilio.media import TwilioMediaCodec

CALL_ID = "CA00000000000000000000000000000001"
STREAM_ID = "MZ11111111111111111111111111111111"
SILENCE_B64 = "/////////////////////w=="  # 16 bytes of μ-law silence (0xFF)


def dump(frame: dict[str, Any]) -> str:
    return json.dumps(frame)


def decode_all(codec: MediaCodec, frames: list[str]) -> list[Any]:
    return [codec.decode(frame) for frame in frames]


# --- Twilio ----------------------------------------------------------------------------------

# An illustrative Twilio session (docs/carriers.md, "Test vectors"), verbatim.
TWILIO_REFERENCE_SESSION = [
    '{"event":"connected","protocol":"Call","version":"1.0.0"}',
    '{"event":"start","sequenceNumber":"1","streamSid":"MZ11111111111111111111111111111111",'
    '"start":{"streamSid":"MZ11111111111111111111111111111111",'
    '"accountSid":"AC00000000000000000000000000000001",'
    '"callSid":"CA00000000000000000000000000000001","tracks":["inbound"],'
    '"customParameters":{"session":"abc123"},'
    '"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}',
    '{"event":"media","sequenceNumber":"2","streamSid":"MZ11111111111111111111111111111111",'
    '"media":{"track":"inbound","chunk":"1","timestamp":"20",'
    '"payload":"/////////////////////w=="}}',
    '{"event":"stop","sequenceNumber":"120","streamSid":"MZ11111111111111111111111111111111",'
    '"stop":{"accountSid":"AC00000000000000000000000000000001",'
    '"callSid":"CA00000000000000000000000000000001"}}',
]


def twilio_start(
    *,
    call_id: str | None = CALL_ID,
    stream_id: str = STREAM_ID,
    params: dict[str, str] | None = None,
    media_format: dict[str, Any] | None = None,
) -> str:
    start: dict[str, Any] = {
        "streamSid": stream_id,
        "accountSid": "AC00000000000000000000000000000001",
        "tracks": ["inbound"],
        "customParameters": params or {},
        "mediaFormat": media_format
        or {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    if call_id is not None:
        start["callSid"] = call_id
    return dump({"event": "start", "sequenceNumber": "1", "streamSid": stream_id, "start": start})


def twilio_media(payload: str, track: str = "inbound") -> str:
    return dump(
        {
            "event": "media",
            "sequenceNumber": "2",
            "streamSid": STREAM_ID,
            "media": {"track": track, "chunk": "1", "timestamp": "20", "payload": payload},
        }
    )


def twilio_dtmf(digit: str) -> str:
    return dump(
        {
            "event": "dtmf",
            "sequenceNumber": "3",
            "streamSid": STREAM_ID,
            "dtmf": {"track": "inbound_track", "digit": digit},
        }
    )


def twilio_mark(name: str) -> str:
    return dump(
        {"event": "mark", "sequenceNumber": "4", "streamSid": STREAM_ID, "mark": {"name": name}}
    )


def twilio_stop() -> str:
    return dump(
        {
            "event": "stop",
            "sequenceNumber": "5",
            "streamSid": STREAM_ID,
            "stop": {"accountSid": "AC00000000000000000000000000000001", "callSid": CALL_ID},
        }
    )


def started_twilio(**params: str) -> TwilioMediaCodec:
    codec = TwilioMediaCodec()
    codec.decode(twilio_start(params=params))
    return codec


def test_twilio_reference_session_decodes_to_neutral_events() -> None:
    codec = TwilioMediaCodec()
    assert decode_all(codec, TWILIO_REFERENCE_SESSION) == [
        Connected(),
        StreamStart(
            stream_id=STREAM_ID, provider_call_id=CALL_ID, token=None, params={"session": "abc123"}
        ),
        AudioIn(b"\xff" * 16),
        StreamStop(),
    ]
    assert codec.stream_id == STREAM_ID


def test_twilio_token_comes_from_custom_parameters_and_stays_out_of_params() -> None:
    start = TwilioMediaCodec().decode(twilio_start(params={"token": "tok-1", "session": "s"}))
    assert isinstance(start, StreamStart)
    assert (start.token, dict(start.params)) == ("tok-1", {"session": "s"})


def test_twilio_dtmf_and_mark_echo_become_neutral_events() -> None:
    codec = started_twilio()
    assert codec.decode(twilio_dtmf("5")) == DtmfIn("5")
    assert codec.decode(twilio_mark("utt-7")) == MarkDone("utt-7")


def test_twilio_ignores_outbound_track_echoes() -> None:
    assert started_twilio().decode(twilio_media(SILENCE_B64, track="outbound")) is None


def test_twilio_accepts_base64url_payload_without_padding() -> None:
    # b"\xfb\xff" is "+/8=" in standard base64 and "-_8" in unpadded base64url.
    assert started_twilio().decode(twilio_media("-_8")) == AudioIn(b"\xfb\xff")


def test_twilio_start_without_call_sid_is_refused() -> None:
    with pytest.raises(MediaProtocolError, match=r"^Missing callSid$"):
        TwilioMediaCodec().decode(twilio_start(call_id=None))


@pytest.mark.parametrize("dropped", ["top level", "inside start"])
def test_twilio_start_finds_the_stream_sid_in_either_place(dropped: str) -> None:
    frame = json.loads(twilio_start())
    del (frame if dropped == "top level" else frame["start"])["streamSid"]
    codec = TwilioMediaCodec()
    codec.decode(dump(frame))
    assert codec.stream_id == STREAM_ID


def test_twilio_start_without_any_stream_sid_is_refused() -> None:
    frame = json.loads(twilio_start())
    del frame["start"]["streamSid"], frame["streamSid"]
    with pytest.raises(MediaProtocolError, match=r"^Missing streamSid$"):
        TwilioMediaCodec().decode(dump(frame))


def test_twilio_refuses_a_media_format_other_than_ulaw_8k() -> None:
    start = twilio_start(media_format={"encoding": "audio/x-l16", "sampleRate": 16000})
    with pytest.raises(MediaProtocolError, match="audio/x-l16 at 16000 Hz"):
        TwilioMediaCodec().decode(start)


def test_twilio_encode_audio_is_the_media_frame_twilio_expects() -> None:
    frame = json.loads(started_twilio().encode_audio(b"\x00\x7f\xff"))
    assert frame == {
        "event": "media",
        "streamSid": STREAM_ID,
        "media": {"payload": base64.b64encode(b"\x00\x7f\xff").decode()},
    }
    assert base64.b64decode(frame["media"]["payload"], validate=True) == b"\x00\x7f\xff"


def test_every_audio_frame_of_a_stream_is_its_own_valid_frame() -> None:
    """The frame's JSON is built once per stream and filled per frame: the stream id keeps
    its escaping and no payload leaks into the next frame."""
    codec = TwilioMediaCodec()
    odd_id = 'MZ"quoted\\slash@@payload@@'
    codec.decode(twilio_start(stream_id=odd_id))
    for ulaw in (b"\x00" * 160, b"", b"\xff\x7f", bytes(range(256))):
        frame = json.loads(codec.encode_audio(ulaw))
        assert frame == {
            "event": "media",
            "streamSid": odd_id,
            "media": {"payload": base64.b64encode(ulaw).decode()},
        }


def test_twilio_encode_mark_and_clear_address_the_stream() -> None:
    codec = started_twilio()
    assert json.loads(codec.encode_mark("utt-7")) == {
        "event": "mark",
        "streamSid": STREAM_ID,
        "mark": {"name": "utt-7"},
    }
    assert json.loads(codec.encode_clear()) == {"event": "clear", "streamSid": STREAM_ID}


# --- Telnyx ----------------------------------------------------------------------------------

TELNYX_CALL_ID = "v3:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ"
TELNYX_STREAM_ID = "32de0dea-53cb-4b21-89a4-9e1819c043bc"


def telnyx_start(
    *,
    call_id: str | None = TELNYX_CALL_ID,
    stream_id: str = TELNYX_STREAM_ID,
    params: Any = None,
    media_format: dict[str, Any] | None = None,
) -> str:
    start: dict[str, Any] = {
        "user_id": "3e6f995f-85f7-4705-9741-53b116d28237",
        "call_session_id": "ff55a038-6f5d-11ef-9692-02420aeffb1f",
        "from": "+15555550100",
        "to": "+15555550199",
        "tags": [],
        "client_state": "",
        "custom_parameters": {} if params is None else params,
        "media_format": media_format or {"encoding": "PCMU", "sample_rate": 8000, "channels": 1},
    }
    if call_id is not None:
        start["call_control_id"] = call_id
    return dump({"event": "start", "sequence_number": "1", "stream_id": stream_id, "start": start})


def telnyx_media(payload: str, track: str = "inbound") -> str:
    return dump(
        {
            "event": "media",
            "sequence_number": "2",
            "stream_id": TELNYX_STREAM_ID,
            "media": {"track": track, "chunk": "1", "timestamp": "20", "payload": payload},
        }
    )


def telnyx_dtmf(digit: str) -> str:
    return dump(
        {
            "event": "dtmf",
            "sequence_number": "3",
            "stream_id": TELNYX_STREAM_ID,
            "dtmf": {"digit": digit},
        }
    )


def telnyx_mark(name: str) -> str:
    return dump(
        {
            "event": "mark",
            "sequence_number": "4",
            "stream_id": TELNYX_STREAM_ID,
            "mark": {"name": name},
        }
    )


def telnyx_stop() -> str:
    return dump(
        {
            "event": "stop",
            "sequence_number": "5",
            "stream_id": TELNYX_STREAM_ID,
            "stop": {
                "user_id": "3e6f995f-85f7-4705-9741-53b116d28237",
                "call_control_id": TELNYX_CALL_ID,
            },
        }
    )


def started_telnyx() -> TelnyxMediaCodec:
    codec = TelnyxMediaCodec()
    codec.decode(telnyx_start())
    return codec


def test_telnyx_session_decodes_to_neutral_events() -> None:
    codec = TelnyxMediaCodec()
    frames = [
        dump({"event": "connected", "version": "1.0.0"}),
        telnyx_start(params={"token": "tok-1", "session": "abc123"}),
        telnyx_media(SILENCE_B64),
        telnyx_dtmf("#"),
        telnyx_mark("utt-7"),
        telnyx_stop(),
    ]
    assert decode_all(codec, frames) == [
        Connected(),
        StreamStart(
            stream_id=TELNYX_STREAM_ID,
            provider_call_id=TELNYX_CALL_ID,
            token="tok-1",
            params={"session": "abc123"},
        ),
        AudioIn(b"\xff" * 16),
        DtmfIn("#"),
        MarkDone("utt-7"),
        StreamStop(),
    ]
    assert codec.stream_id == TELNYX_STREAM_ID


def test_telnyx_accepts_custom_parameters_in_the_command_list_shape() -> None:
    params = [{"name": "token", "value": "tok-1"}, {"name": "session", "value": "abc123"}]
    start = TelnyxMediaCodec().decode(telnyx_start(params=params))
    assert isinstance(start, StreamStart)
    assert (start.token, dict(start.params)) == ("tok-1", {"session": "abc123"})


@pytest.mark.parametrize(
    ("media_format", "named"),
    [
        ({"encoding": "PCMA", "sample_rate": 8000, "channels": 1}, "PCMA at 8000 Hz"),
        ({"encoding": "L16", "sample_rate": 16000, "channels": 1}, "L16 at 16000 Hz"),
        ({"encoding": "PCMU", "sample_rate": 16000, "channels": 1}, "PCMU at 16000 Hz"),
    ],
)
def test_telnyx_refuses_a_codec_other_than_pcmu_8k_naming_it(
    media_format: dict[str, Any], named: str
) -> None:
    with pytest.raises(MediaProtocolError, match=named):
        TelnyxMediaCodec().decode(telnyx_start(media_format=media_format))


def test_telnyx_start_without_call_control_id_is_refused() -> None:
    with pytest.raises(MediaProtocolError, match=r"^Missing call_control_id$"):
        TelnyxMediaCodec().decode(telnyx_start(call_id=None))


def test_telnyx_start_without_top_level_stream_id_is_refused() -> None:
    frame = json.loads(telnyx_start())
    del frame["stream_id"]
    with pytest.raises(MediaProtocolError, match=r"^Missing stream_id$"):
        TelnyxMediaCodec().decode(dump(frame))


def test_telnyx_ignores_outbound_track_and_error_frames() -> None:
    codec = started_telnyx()
    assert codec.decode(telnyx_media(SILENCE_B64, track="outbound")) is None
    error = {"event": "error", "payload": {"code": 100002, "title": "Unknown error", "detail": "x"}}
    assert codec.decode(dump(error)) is None


def test_telnyx_outbound_frames_have_the_documented_shapes() -> None:
    codec = started_telnyx()
    frame = json.loads(codec.encode_audio(b"\x00\x7f\xff"))
    assert frame == {"event": "media", "media": {"payload": "AH//"}}
    assert base64.b64decode(frame["media"]["payload"], validate=True) == b"\x00\x7f\xff"
    assert json.loads(codec.encode_mark("utt-7")) == {"event": "mark", "mark": {"name": "utt-7"}}
    assert json.loads(codec.encode_clear()) == {"event": "clear"}


# --- Plivo -----------------------------------------------------------------------------------

PLIVO_CALL_ID = "12345678-1234-1234-1234-123456789abc"
PLIVO_STREAM_ID = "87654321-4321-4321-4321-cba987654321"


def plivo_start(
    *,
    call_id: str | None = PLIVO_CALL_ID,
    stream_id: str = PLIVO_STREAM_ID,
    extra_headers: Any = "",
    media_format: Any = None,
) -> str:
    start: dict[str, Any] = {
        "streamId": stream_id,
        "accountId": "MA0000000000000000XX",
        "tracks": ["inbound"],
        "mediaFormat": media_format or {"encoding": "audio/x-mulaw", "sampleRate": 8000},
    }
    if call_id is not None:
        start["callId"] = call_id
    return dump(
        {"event": "start", "sequenceNumber": 1, "start": start, "extra_headers": extra_headers}
    )


def plivo_media(payload: str, track: str = "inbound") -> str:
    return dump(
        {
            "event": "media",
            "sequenceNumber": 2,
            "streamId": PLIVO_STREAM_ID,
            "media": {"track": track, "timestamp": "1705312200000", "chunk": 1, "payload": payload},
            "extra_headers": "",
        }
    )


def plivo_dtmf(digit: str) -> str:
    return dump(
        {
            "event": "dtmf",
            "sequenceNumber": 3,
            "streamId": PLIVO_STREAM_ID,
            "dtmf": {"digit": digit},
        }
    )


def plivo_played(name: str) -> str:
    return dump({"event": "playedStream", "streamId": PLIVO_STREAM_ID, "name": name})


def plivo_stop() -> str:
    return dump({"event": "stop", "sequenceNumber": 5, "streamId": PLIVO_STREAM_ID})


def started_plivo() -> PlivoMediaCodec:
    codec = PlivoMediaCodec()
    codec.decode(plivo_start())
    return codec


def test_plivo_session_decodes_to_neutral_events() -> None:
    codec = PlivoMediaCodec()
    frames = [
        plivo_start(extra_headers="token=tok1;session=abc123"),
        plivo_media(SILENCE_B64),
        plivo_dtmf("9"),
        plivo_played("utt-7"),
        dump({"event": "clearedAudio", "streamId": PLIVO_STREAM_ID}),
        plivo_stop(),
    ]
    assert decode_all(codec, frames) == [
        StreamStart(
            stream_id=PLIVO_STREAM_ID,
            provider_call_id=PLIVO_CALL_ID,
            token="tok1",
            params={"session": "abc123"},
        ),
        AudioIn(b"\xff" * 16),
        DtmfIn("9"),
        MarkDone("utt-7"),
        None,
        StreamStop(),
    ]
    assert codec.stream_id == PLIVO_STREAM_ID


@pytest.mark.parametrize(
    "extra_headers", ["token=tok1,session=abc123", {"token": "tok1", "session": "abc123"}]
)
def test_plivo_reads_extra_headers_in_the_xml_spelling_and_as_an_object(extra_headers: Any) -> None:
    start = PlivoMediaCodec().decode(plivo_start(extra_headers=extra_headers))
    assert isinstance(start, StreamStart)
    assert (start.token, dict(start.params)) == ("tok1", {"session": "abc123"})


def test_plivo_start_without_extra_headers_has_no_token() -> None:
    start = PlivoMediaCodec().decode(plivo_start(extra_headers=""))
    assert isinstance(start, StreamStart)
    assert (start.token, dict(start.params)) == (None, {})


def test_plivo_reads_the_played_spelling_of_the_checkpoint_echo() -> None:
    frame = dump({"event": "played", "streamId": PLIVO_STREAM_ID, "name": "utt-7"})
    assert started_plivo().decode(frame) == MarkDone("utt-7")


@pytest.mark.parametrize(
    ("media_format", "named"),
    [
        ({"encoding": "audio/x-l16", "sampleRate": 8000}, "audio/x-l16 at 8000 Hz"),
        ({"encoding": "audio/x-l16;rate=16000"}, "audio/x-l16 at 16000 Hz"),
        ({"encoding": "audio/x-mulaw", "sampleRate": 16000}, "audio/x-mulaw at 16000 Hz"),
    ],
)
def test_plivo_refuses_a_content_type_other_than_ulaw_8k_naming_it(
    media_format: dict[str, Any], named: str
) -> None:
    with pytest.raises(MediaProtocolError, match=named):
        PlivoMediaCodec().decode(plivo_start(media_format=media_format))


def test_plivo_accepts_the_content_type_spelling_of_ulaw_8k() -> None:
    start = plivo_start(media_format={"encoding": "audio/x-mulaw;rate=8000"})
    assert isinstance(PlivoMediaCodec().decode(start), StreamStart)


def test_plivo_start_without_media_format_is_refused_because_the_default_is_l16() -> None:
    frame = json.loads(plivo_start())
    del frame["start"]["mediaFormat"]
    with pytest.raises(MediaProtocolError, match=r"^Missing mediaFormat$"):
        PlivoMediaCodec().decode(dump(frame))


def test_plivo_start_without_call_id_is_refused() -> None:
    with pytest.raises(MediaProtocolError, match=r"^Missing callId$"):
        PlivoMediaCodec().decode(plivo_start(call_id=None))


def test_plivo_outbound_frames_have_the_documented_shapes() -> None:
    codec = started_plivo()
    frame = json.loads(codec.encode_audio(b"\x00\x7f\xff"))
    assert frame == {
        "event": "playAudio",
        "media": {"contentType": "audio/x-mulaw", "sampleRate": 8000, "payload": "AH//"},
    }
    assert base64.b64decode(frame["media"]["payload"], validate=True) == b"\x00\x7f\xff"
    assert json.loads(codec.encode_mark("utt-7")) == {
        "event": "checkpoint",
        "streamId": PLIVO_STREAM_ID,
        "name": "utt-7",
    }
    assert json.loads(codec.encode_clear()) == {"event": "clearAudio", "streamId": PLIVO_STREAM_ID}


# --- Contract: every carrier's codec behaves the same through the neutral types -------------


@dataclass(frozen=True)
class Carrier:
    """How one carrier frames an equivalent session, and how it reads our outbound frames."""

    name: str
    codec: Callable[[], MediaCodec]
    start: Callable[..., str]
    media: Callable[..., str]
    dtmf: Callable[[str], str]
    mark_echo: Callable[[str], str]
    stop: Callable[[], str]
    start_with_token: Callable[[str, str], str]
    stream_id: str
    call_id: str
    audio_event: str
    mark_event: str
    clear_event: str


def _plivo_headers(token: str, session: str) -> str:
    return plivo_start(extra_headers=f"token={token};session={session}")


CARRIERS = [
    Carrier(
        "twilio",
        TwilioMediaCodec,
        twilio_start,
        twilio_media,
        twilio_dtmf,
        twilio_mark,
        twilio_stop,
        lambda t, s: twilio_start(params={"token": t, "session": s}),
        STREAM_ID,
        CALL_ID,
        "media",
        "mark",
        "clear",
    ),
    Carrier(
        "telnyx",
        TelnyxMediaCodec,
        telnyx_start,
        telnyx_media,
        telnyx_dtmf,
        telnyx_mark,
        telnyx_stop,
        lambda t, s: telnyx_start(params={"token": t, "session": s}),
        TELNYX_STREAM_ID,
        TELNYX_CALL_ID,
        "media",
        "mark",
        "clear",
    ),
    Carrier(
        "plivo",
        PlivoMediaCodec,
        plivo_start,
        plivo_media,
        plivo_dtmf,
        plivo_played,
        plivo_stop,
        _plivo_headers,
        PLIVO_STREAM_ID,
        PLIVO_CALL_ID,
        "playAudio",
        "checkpoint",
        "clearAudio",
    ),
]
by_carrier = pytest.mark.parametrize("carrier", CARRIERS, ids=lambda c: c.name)


def started(carrier: Carrier) -> MediaCodec:
    codec = carrier.codec()
    codec.decode(carrier.start())
    return codec


@by_carrier
def test_equivalent_sessions_give_the_same_neutral_events(carrier: Carrier) -> None:
    frames = [
        carrier.start_with_token("tok1", "abc123"),
        carrier.media(SILENCE_B64),
        carrier.media(SILENCE_B64, track="outbound"),
        carrier.dtmf("7"),
        carrier.mark_echo("utt-7"),
        carrier.stop(),
    ]
    assert decode_all(carrier.codec(), frames) == [
        StreamStart(
            stream_id=carrier.stream_id,
            provider_call_id=carrier.call_id,
            token="tok1",
            params={"session": "abc123"},
        ),
        AudioIn(b"\xff" * 16),
        None,
        DtmfIn("7"),
        MarkDone("utt-7"),
        StreamStop(),
    ]


@by_carrier
@given(ulaw=st.binary(max_size=400))
def test_outbound_audio_reads_back_as_the_same_bytes_under_the_carrier_event(
    carrier: Carrier, ulaw: bytes
) -> None:
    frame = json.loads(started(carrier).encode_audio(ulaw))
    assert frame["event"] == carrier.audio_event
    assert base64.b64decode(frame["media"]["payload"], validate=True) == ulaw


@by_carrier
@given(ulaw=st.binary(max_size=400), urlsafe=st.booleans())
def test_inbound_audio_decodes_to_the_bytes_the_carrier_encoded(
    carrier: Carrier, ulaw: bytes, urlsafe: bool
) -> None:
    encoded = (
        base64.urlsafe_b64encode(ulaw).decode().rstrip("=")
        if urlsafe
        else base64.b64encode(ulaw).decode()
    )
    assert started(carrier).decode(carrier.media(encoded)) == AudioIn(ulaw)


@by_carrier
def test_mark_and_clear_use_the_carrier_events(carrier: Carrier) -> None:
    codec = started(carrier)
    assert json.loads(codec.encode_mark("utt-7"))["event"] == carrier.mark_event
    assert json.loads(codec.encode_clear())["event"] == carrier.clear_event


@by_carrier
@pytest.mark.parametrize(
    "message", ["not json", "[1, 2]", '"start"', '{"no": "event"}', '{"event": 7}', b"\xff\xfe{"]
)
def test_malformed_frames_are_protocol_errors(carrier: Carrier, message: str | bytes) -> None:
    with pytest.raises(MediaProtocolError):
        carrier.codec().decode(message)


@by_carrier
def test_frames_arrive_as_bytes_too(carrier: Carrier) -> None:
    assert isinstance(carrier.codec().decode(carrier.start().encode()), StreamStart)


@by_carrier
@pytest.mark.parametrize("payload", ["***secret***", "QUJD\nRA==", "A"])
def test_bad_base64_is_a_protocol_error_that_does_not_echo_the_payload(
    carrier: Carrier, payload: str
) -> None:
    with pytest.raises(MediaProtocolError, match="not valid base64") as raised:
        started(carrier).decode(carrier.media(payload))
    assert "secret" not in str(raised.value)


@by_carrier
def test_media_without_payload_is_a_protocol_error(carrier: Carrier) -> None:
    frame = json.loads(carrier.media(SILENCE_B64))
    del frame["media"]["payload"]
    with pytest.raises(MediaProtocolError, match=r"^Missing payload$"):
        started(carrier).decode(dump(frame))


@by_carrier
@pytest.mark.parametrize("kind", ["dtmf", "mark_echo"])
def test_dtmf_and_mark_without_their_value_are_protocol_errors(carrier: Carrier, kind: str) -> None:
    frame = json.loads(getattr(carrier, kind)("1"))
    holder = frame.get("dtmf") or frame.get("mark") or frame
    holder.pop("digit", None)
    holder.pop("name", None)
    with pytest.raises(MediaProtocolError, match=r"^Missing (digit|name)$"):
        started(carrier).decode(dump(frame))


@by_carrier
def test_a_second_start_is_a_duplicate(carrier: Carrier) -> None:
    codec = started(carrier)
    with pytest.raises(MediaProtocolError, match=r"^Duplicate start$"):
        codec.decode(carrier.start(stream_id="another-stream"))
    assert codec.stream_id == carrier.stream_id


@by_carrier
def test_unknown_events_are_ignored(carrier: Carrier) -> None:
    assert started(carrier).decode(dump({"event": "somethingNew", "x": {}})) is None


@by_carrier
@pytest.mark.parametrize(
    "encode",
    [lambda c: c.encode_audio(b"\xff"), lambda c: c.encode_mark("m"), lambda c: c.encode_clear()],
    ids=["audio", "mark", "clear"],
)
def test_outbound_frames_before_start_are_refused(
    carrier: Carrier, encode: Callable[[MediaCodec], str]
) -> None:
    codec = carrier.codec()
    assert codec.stream_id is None
    with pytest.raises(MediaProtocolError, match="No stream has started"):
        encode(codec)


def test_the_neutral_module_names_no_carrier_or_vendor_field() -> None:
    source = Path(__file__).parents[2].joinpath("providers", "media.py").read_text()
    for vendor_word in (
        "twilio",
        "telnyx",
        "plivo",
        "streamSid",
        "callSid",
        "call_control_id",
        "callId",
        "playAudio",
        "customParameters",
    ):
        assert vendor_word.lower() not in source.lower()

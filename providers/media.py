"""Carrier-neutral media-stream events and the per-stream wire codec interface (no Django here).

A `MediaCodec` turns one carrier's websocket frames into the events below and our replies into
that carrier's frames. It is pure: no I/O, no ORM, no awaits. Audio crosses this boundary as
8 kHz μ-law bytes in both directions; resampling and PCM conversion happen in the pipeline.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

import orjson

ULAW = "audio/x-mulaw"
ULAW_RATE = 8000


@dataclass(frozen=True, slots=True)
class StreamStart:
    """The carrier opened the stream for a call; `token` is the per-call secret we handed out."""

    stream_id: str
    provider_call_id: str
    token: str | None
    params: Mapping[str, str]  # custom parameters we attached to the stream, token removed
    encoding: str = ULAW
    sample_rate: int = ULAW_RATE


@dataclass(frozen=True, slots=True)
class AudioIn:
    ulaw: bytes  # 8 kHz μ-law payload (already base64-decoded)


@dataclass(frozen=True, slots=True)
class MarkDone:
    name: str  # the carrier echoed a mark/checkpoint: playback reached it


@dataclass(frozen=True, slots=True)
class DtmfIn:
    digit: str


@dataclass(frozen=True, slots=True)
class StreamStop:
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Connected:
    """Protocol hello; nothing to do."""


MediaEvent = StreamStart | AudioIn | MarkDone | DtmfIn | StreamStop | Connected
FrameReader = Callable[[Mapping[str, Any]], MediaEvent | None]


class MediaProtocolError(Exception):
    """A frame we can't use. The message is one sentence and never echoes the payload."""


class MediaCodec(ABC):
    """One carrier's media-stream framing, for one stream.

    Stateful only to remember the stream id from the start event; everything else is a pure
    function of the frame.
    """

    def __init__(self) -> None:
        self._stream_id: str | None = None
        self._audio_template: tuple[str, str] | None = None

    @property
    def stream_id(self) -> str | None:
        return self._stream_id

    def upgrade(self, headers: Mapping[str, str]) -> None:
        """The websocket upgrade request's headers (lower-case names), before any frame.

        For carriers that present the stream token on the upgrade instead of in the start
        frame; the codec keeps it for the StreamStart it decodes. No I/O.
        """

    # The carrier's frame types other than `start`, each read by a pure function; a type
    # not listed is ignored (acknowledgements, non-fatal errors). Carriers whose protocol
    # copies the common shape use providers.media_frames.STANDARD_FRAMES.
    frames: ClassVar[Mapping[str, FrameReader]]

    def decode(self, message: str | bytes) -> MediaEvent | None:
        """One carrier frame as a neutral event; None for frames we can ignore.

        Raises MediaProtocolError for malformed JSON, missing required fields, bad base64, a
        codec other than 8 kHz μ-law, and a second start ("Duplicate start"). No I/O.
        """
        frame = load_frame(message)
        if frame["event"] == "start":
            if self._stream_id is not None:
                raise MediaProtocolError("Duplicate start")
            start = self._read_start(frame)
            self._stream_id = start.stream_id
            return start
        reader = self.frames.get(frame["event"])
        return reader(frame) if reader is not None else None

    @abstractmethod
    def _read_start(self, frame: dict[str, Any]) -> StreamStart:
        """The start frame: ids, token and custom parameters; checks the media format."""

    def encode_audio(self, ulaw: bytes) -> str:
        """One outbound text frame queueing 8 kHz μ-law audio; MediaProtocolError before start."""
        template = self._audio_template or self._audio_template_build()
        return template[0] + encode_audio_payload(ulaw) + template[1]

    def _audio_template_build(self) -> tuple[str, str]:
        # The frame's JSON is built once per stream around a marker and split there: per
        # frame only the base64 payload changes, and a dict through json.dumps 50 times a
        # second per stream was 8 % of a busy server's CPU (docs/performance.md, "Where the
        # CPU goes"). Base64 needs no JSON escaping. The marker is random, and must occur
        # exactly once, so nothing the carrier chose (a stream id) can be mistaken for it.
        stream_id = self._started_stream()
        while True:
            marker = secrets.token_hex(12)
            text = dump_frame(self._audio_frame(stream_id, marker))
            if text.count(marker) == 1:
                head, _, tail = text.partition(marker)
                self._audio_template = (head, tail)
                return head, tail

    @abstractmethod
    def _audio_frame(self, stream_id: str, payload: str) -> dict[str, Any]:
        """The carrier's outbound audio frame carrying the base64 `payload`."""

    @abstractmethod
    def encode_mark(self, name: str) -> str:
        """A frame asking the carrier to echo `name` once queued audio has played."""

    @abstractmethod
    def encode_clear(self) -> str:
        """A frame dropping all queued outbound audio (barge-in)."""

    def _started_stream(self) -> str:
        if self._stream_id is None:
            raise MediaProtocolError("No stream has started yet.")
        return self._stream_id


# --- helpers shared by the carrier codecs (generic JSON and base64 handling) -----------------


def load_frame(message: str | bytes) -> dict[str, Any]:
    """The frame as a JSON object with a string `event`; MediaProtocolError otherwise."""
    try:
        # orjson: every carrier frame (50 a second per stream) is parsed here, in a third of
        # the stdlib's time (docs/performance.md, "Where the CPU goes").
        frame = orjson.loads(message)
    except (UnicodeDecodeError, ValueError):  # orjson.JSONDecodeError is a ValueError
        raise MediaProtocolError("Frame is not valid JSON text.") from None
    if not isinstance(frame, dict):
        raise MediaProtocolError("Frame is not a JSON object.")
    if not isinstance(frame.get("event"), str):
        raise MediaProtocolError("Missing event")
    return frame


def dump_frame(frame: Mapping[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"))


def require_object(container: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = container.get(key)
    if not isinstance(value, dict):
        raise MediaProtocolError(f"Missing {key}")
    return value


def require_str(container: Mapping[str, Any], key: str) -> str:
    value = container.get(key)
    if not isinstance(value, str) or not value:
        raise MediaProtocolError(f"Missing {key}")
    return value


def optional_str(container: Mapping[str, Any], key: str) -> str | None:
    value = container.get(key)
    return value if isinstance(value, str) and value else None


def decode_audio(payload: object) -> bytes:
    """Base64 (standard or base64url, padding optional) to bytes; MediaProtocolError if invalid."""
    if not isinstance(payload, str):
        raise MediaProtocolError("Missing payload")
    # As in the plugin's latest version, base64url is normalized before decoding, and some
    # senders drop the padding; restore both so one strict decoder covers every carrier.
    text = payload.strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MediaProtocolError("Audio payload is not valid base64.") from None


def encode_audio_payload(ulaw: bytes) -> str:
    return base64.b64encode(ulaw).decode("ascii")


def string_params(raw: object) -> tuple[str | None, Mapping[str, str]]:
    """Split custom stream parameters into (token, the rest) with string values.

    The token is a per-call secret, so it is kept out of `params`, which may be logged.
    """
    if not isinstance(raw, Mapping):
        return None, MappingProxyType({})
    params = {str(k): str(v) for k, v in raw.items() if isinstance(v, str | int | float)}
    token = params.pop("token", None) or None
    return token, MappingProxyType(params)


def check_ulaw_8k(encoding: str, sample_rate: object, *, expected: str) -> None:
    """Refuse any stream format but 8 kHz μ-law (named by the carrier as `expected`)."""
    rate = _as_int(sample_rate)
    if encoding.lower() != expected.lower() or rate != ULAW_RATE:
        raise MediaProtocolError(
            f"Unsupported stream format {_label(encoding)} at {_label(sample_rate)} Hz; "
            f"expected {expected} at {ULAW_RATE} Hz."
        )


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _label(value: object) -> str:
    # Names a carrier-chosen value in an error without echoing an arbitrary payload.
    text = "".join(ch for ch in str(value) if ch.isprintable())[:24]
    return text or "?"

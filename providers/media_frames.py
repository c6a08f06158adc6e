"""The JSON frame shapes that Twilio's media-stream protocol set and other carriers copied.

Twilio, Telnyx and Plivo all send `{"event": "media", "media": {"track", "payload"}}` and
`{"event": "dtmf", "dtmf": {"digit"}}`; Twilio and Telnyx also share connected/mark/stop
(docs/carriers.md, "Twilio: media streams" and the sections after it). The readers live
here once; each carrier's codec lists the ones its protocol uses in `MediaCodec.frames`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from providers.media import (
    AudioIn,
    Connected,
    DtmfIn,
    FrameReader,
    MarkDone,
    StreamStop,
    decode_audio,
    require_object,
    require_str,
)


def caller_audio(frame: Mapping[str, Any]) -> AudioIn | None:
    """A `media` frame's caller audio; None for the outbound track.

    With both tracks on, the outbound track is our own playback coming back: only the
    caller's audio goes to STT.
    """
    media = require_object(frame, "media")
    if media.get("track", "inbound") != "inbound":
        return None
    return AudioIn(decode_audio(media.get("payload")))


def dtmf_digit(frame: Mapping[str, Any]) -> DtmfIn:
    """A `dtmf` frame, `{"dtmf": {"digit": "5"}}` (docs/carriers.md: the Telnyx and Plivo
    shapes are unconfirmed)."""
    return DtmfIn(require_str(require_object(frame, "dtmf"), "digit"))


def mark_echo(frame: Mapping[str, Any]) -> MarkDone:
    """A `mark` frame's echo, `{"mark": {"name": …}}` (Twilio and Telnyx)."""
    return MarkDone(require_str(require_object(frame, "mark"), "name"))


def stream_stop(frame: Mapping[str, Any]) -> StreamStop:
    """A `stop` frame; nothing in it is needed (the socket close ends the stream anyway)."""
    return StreamStop()


# Twilio's frame types, which Telnyx copies: connected/media/dtmf/mark/stop.
STANDARD_FRAMES: Mapping[str, FrameReader] = {
    "connected": lambda frame: Connected(),
    "media": caller_audio,
    "dtmf": dtmf_digit,
    "mark": mark_echo,
    "stop": stream_stop,
}

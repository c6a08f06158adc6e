"""Plivo Audio Streaming websocket protocol (`<Stream bidirectional="true">`), JSON text frames.

We ask for `contentType="audio/x-mulaw;rate=8000"`: base64 G.711 μ-law at 8000 Hz in both
directions. Plivo's default is L16, so a start announcing anything else is refused
(docs/carriers.md, "Plivo: media streams";
https://plivo.com/docs/voice/audio-streaming/audio-streaming).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from providers.media import (
    ULAW,
    ULAW_RATE,
    MarkDone,
    MediaCodec,
    MediaProtocolError,
    StreamStart,
    check_ulaw_8k,
    dump_frame,
    optional_str,
    require_object,
    require_str,
    string_params,
)
from providers.media_frames import caller_audio, dtmf_digit, stream_stop

# The WS start shows extra_headers as "k=v;k2=v2" while <Stream extraHeaders> is written
# "k=v,k2=v2"; split on either.
_HEADER_SEPARATORS = re.compile(r"[;,]")


def _checkpoint_echo(frame: Mapping[str, Any]) -> MarkDone:
    return MarkDone(require_str(frame, "name"))


class PlivoMediaCodec(MediaCodec):
    """One Plivo stream: start/media/dtmf/playedStream in; playAudio/checkpoint/clearAudio out."""

    # The dtmf shape is unconfirmed (docs/carriers.md, "Plivo: media streams"); dtmf.digit as
    # pipecat reads it. Plivo's protocol page lists no stop event (the socket close ends the
    # stream); some third-party parsers handle one, so it is accepted if it comes.
    # clearedAudio (the clearAudio acknowledgement) needs no action.
    frames = {
        "media": caller_audio,
        "dtmf": dtmf_digit,
        "playedStream": _checkpoint_echo,
        # "played" is the name in Plivo's support article for the same checkpoint echo.
        "played": _checkpoint_echo,
        "stop": stream_stop,
    }

    def _audio_frame(self, stream_id: str, payload: str) -> dict[str, Any]:
        return {
            "event": "playAudio",
            "media": {"contentType": ULAW, "sampleRate": ULAW_RATE, "payload": payload},
        }

    def encode_mark(self, name: str) -> str:
        return dump_frame({"event": "checkpoint", "streamId": self._started_stream(), "name": name})

    def encode_clear(self) -> str:
        return dump_frame({"event": "clearAudio", "streamId": self._started_stream()})

    def _read_start(self, frame: dict[str, Any]) -> StreamStart:
        start = require_object(frame, "start")
        call_id = require_str(start, "callId")
        stream_id = optional_str(start, "streamId") or require_str(frame, "streamId")
        _check_media_format(start)
        token, params = string_params(_extra_headers(frame.get("extra_headers")))
        return StreamStart(
            stream_id=stream_id, provider_call_id=call_id, token=token, params=params
        )


def _check_media_format(start: Mapping[str, Any]) -> None:
    # No assumption when the format is missing: Plivo's default contentType is L16, which
    # decoded as μ-law would be loud noise.
    media_format = require_object(start, "mediaFormat")
    encoding = media_format.get("encoding")
    if not isinstance(encoding, str):
        raise MediaProtocolError("Missing encoding")
    # Accept the <Stream contentType> spelling too ("audio/x-mulaw;rate=8000").
    mime, _, rate = encoding.partition(";rate=")
    check_ulaw_8k(mime, rate or media_format.get("sampleRate"), expected=ULAW)


def _extra_headers(raw: object) -> Mapping[str, object]:
    if isinstance(raw, Mapping):
        return raw
    if not isinstance(raw, str):
        return {}
    pairs = (item.partition("=") for item in _HEADER_SEPARATORS.split(raw))
    return {key.strip(): value.strip() for key, sep, value in pairs if sep and key.strip()}

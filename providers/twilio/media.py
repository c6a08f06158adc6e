"""Twilio Media Streams websocket protocol (bidirectional `<Connect><Stream>`), JSON text frames.

Audio is always `audio/x-mulaw` at 8000 Hz, mono, base64 without a file header, in both
directions (docs/carriers.md, "Twilio: media streams";
https://www.twilio.com/docs/voice/media-streams/websocket-messages).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from providers.media import (
    ULAW,
    ULAW_RATE,
    MediaCodec,
    StreamStart,
    check_ulaw_8k,
    dump_frame,
    optional_str,
    require_object,
    require_str,
    string_params,
)
from providers.media_frames import STANDARD_FRAMES


class TwilioMediaCodec(MediaCodec):
    """One Twilio Media Stream: connected/start/media/dtmf/mark/stop in; media/mark/clear out."""

    frames = STANDARD_FRAMES

    def _audio_frame(self, stream_id: str, payload: str) -> dict[str, Any]:
        return {"event": "media", "streamSid": stream_id, "media": {"payload": payload}}

    def encode_mark(self, name: str) -> str:
        return dump_frame(
            {"event": "mark", "streamSid": self._started_stream(), "mark": {"name": name}}
        )

    def encode_clear(self) -> str:
        return dump_frame({"event": "clear", "streamSid": self._started_stream()})

    def _read_start(self, frame: dict[str, Any]) -> StreamStart:
        start = require_object(frame, "start")
        # Without it the stream closes 1008 "Missing callSid"
        # (docs/plugin-behaviour.md, "Media streams: limits and close codes").
        call_sid = require_str(start, "callSid")
        stream_sid = optional_str(start, "streamSid") or require_str(frame, "streamSid")
        _check_media_format(start)
        token, params = string_params(start.get("customParameters"))
        return StreamStart(
            stream_id=stream_sid, provider_call_id=call_sid, token=token, params=params
        )


def _check_media_format(start: Mapping[str, Any]) -> None:
    media_format = start.get("mediaFormat")
    if isinstance(media_format, dict):  # absent: Twilio only ever streams 8 kHz μ-law
        check_ulaw_8k(
            str(media_format.get("encoding", ULAW)),
            media_format.get("sampleRate", ULAW_RATE),
            expected=ULAW,
        )

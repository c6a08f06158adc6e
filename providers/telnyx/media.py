"""Telnyx media streaming websocket protocol (Call Control v2), bidirectional `rtp` mode.

Inbound and outbound audio are base64 RTP payloads (no RTP header) in JSON text frames. We
stream with `stream_bidirectional_mode=rtp` and `stream_bidirectional_codec=PCMU`, so both
directions are G.711 μ-law at 8000 Hz; a start announcing another codec is refused
(docs/carriers.md, "Telnyx: media streams";
https://developers.telnyx.com/api-reference/websockets/stream-call-media-over-websocket).

The per-call token comes one of two ways: `stream_auth_token` (dial and streaming_start,
telnyx SDK CallDialParams / ActionStartStreamingParams) which Telnyx sends as the
`x-telnyx-streaming-auth-token` upgrade header, or `custom_parameters` (streaming_start
only), which the start frame echoes in `start.custom_parameters`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from providers.media import (
    ULAW_RATE,
    MediaCodec,
    StreamStart,
    check_ulaw_8k,
    dump_frame,
    require_object,
    require_str,
    string_params,
)
from providers.media_frames import STANDARD_FRAMES

_PCMU = "PCMU"
AUTH_HEADER = "x-telnyx-streaming-auth-token"


class TelnyxMediaCodec(MediaCodec):
    """One Telnyx stream: connected/start/media/dtmf/mark/stop in; media/mark/clear out."""

    def __init__(self) -> None:
        super().__init__()
        self._upgrade_token: str | None = None

    def upgrade(self, headers: Mapping[str, str]) -> None:
        # `stream_auth_token` arrives on the upgrade, not in a frame
        # (docs/carriers.md, "Telnyx: media streams").
        self._upgrade_token = headers.get(AUTH_HEADER, "").strip() or None

    # Telnyx copies Twilio's frame types; the token, if any, came with the upgrade headers
    # (see `upgrade`), not in `connected`. The dtmf and stop shapes are unconfirmed
    # (docs/carriers.md, "Telnyx: media streams"). `error` frames (payload {code, title,
    # detail}) have no neutral event and are not fatal, so they are ignored.
    frames = STANDARD_FRAMES

    # Outbound frames carry no stream id: Telnyx's documented shapes have none.
    def _audio_frame(self, stream_id: str, payload: str) -> dict[str, Any]:
        return {"event": "media", "media": {"payload": payload}}

    def encode_mark(self, name: str) -> str:
        self._started_stream()
        return dump_frame({"event": "mark", "mark": {"name": name}})

    def encode_clear(self) -> str:
        self._started_stream()
        return dump_frame({"event": "clear"})

    def _read_start(self, frame: dict[str, Any]) -> StreamStart:
        start = require_object(frame, "start")
        call_control_id = require_str(start, "call_control_id")
        stream_id = require_str(frame, "stream_id")  # top level, not inside `start`
        _check_media_format(start)
        token, params = string_params(_custom_parameters(start.get("custom_parameters")))
        return StreamStart(
            stream_id=stream_id,
            provider_call_id=call_control_id,
            token=token or self._upgrade_token,
            params=params,
        )


def _check_media_format(start: Mapping[str, Any]) -> None:
    media_format = start.get("media_format")
    # Absent: the stream uses the call's codec, which we ask to be PCMU when streaming.
    if isinstance(media_format, dict):
        check_ulaw_8k(
            str(media_format.get("encoding", _PCMU)),
            media_format.get("sample_rate", ULAW_RATE),
            expected=_PCMU,
        )


def _custom_parameters(raw: object) -> Mapping[str, object]:
    # The start frame documents an object; streaming_start takes [{name, value}]. Accept the
    # command's list shape too, so a literal pass-through still yields our token.
    if isinstance(raw, list):
        pairs = (item for item in raw if isinstance(item, dict) and "name" in item)
        return {str(item["name"]): item.get("value") for item in pairs}
    return raw if isinstance(raw, dict) else {}

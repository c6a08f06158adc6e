"""Media-stream size limits, enforced by the consumer itself under every ASGI server.

docs/plugin-behaviour.md, "Media streams: limits and close codes". uvicorn is also told the
frame cap (calls/serving/server.py) so it refuses oversized frames before buffering them;
Daphne (`runserver`) and other servers rely on the consumer alone.
"""

from __future__ import annotations

# A carrier frame over 64 KiB closes the socket with 1009 before it is decoded.
MAX_FRAME_BYTES = 64 * 1024
# Outbound bytes queued for the socket but not yet accepted by the server: past 1 MiB the
# peer is not reading, and the socket is closed with 1013.
MAX_SEND_BUFFER_BYTES = 1024 * 1024


def text_bytes(text: str) -> int:
    """Length of `text` in UTF-8 without encoding it when it is ASCII (every frame we send)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def frame_too_big(text: str | None, data: bytes | None) -> bool:
    """Whether a received frame is over MAX_FRAME_BYTES (text counted in UTF-8 bytes)."""
    if text is not None:
        # At most 4 bytes a character: short frames (all real ones) skip the count.
        if len(text) * 4 <= MAX_FRAME_BYTES:
            return False
        return len(text) > MAX_FRAME_BYTES or text_bytes(text) > MAX_FRAME_BYTES
    return data is not None and len(data) > MAX_FRAME_BYTES

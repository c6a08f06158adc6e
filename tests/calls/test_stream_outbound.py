"""The per-socket writer of calls/streams/outbound.py, against a transport we control.

`Transport.send` is the server's ASGI send: it returns when the server accepted the frame,
and while `reading` is clear it never returns (a peer that stopped reading).
"""

from __future__ import annotations

import asyncio

import pytest

from calls.streams.limits import MAX_SEND_BUFFER_BYTES, frame_too_big
from calls.streams.outbound import Outbound


class Transport:
    def __init__(self, *, reading: bool = True) -> None:
        self.accepted: list[str] = []
        self.reading = asyncio.Event()
        if reading:
            self.reading.set()
        self.in_flight: str | None = None

    async def send(self, text: str) -> None:
        self.in_flight = text
        await self.reading.wait()
        self.in_flight = None
        self.accepted.append(text)


class Full:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_frames_go_out_in_the_order_queued_and_accepted_audio_is_counted() -> None:
    transport = Transport()
    out = Outbound(transport.send, Full())
    out.audio("a1")
    out.mark("m1", "tts-1")
    out.audio("a2")
    await _settle()  # all sent, so the clear drops nothing
    out.clear("c")
    out.audio("a3")
    out.mark("m2", "tts-2")
    await _settle()
    assert transport.accepted == ["a1", "m1", "a2", "c", "a3", "m2"]
    assert out.frames_accepted == 3 and out.buffered == 0


async def test_a_frame_the_server_takes_at_once_is_written_before_queueing_returns() -> None:
    # No hop through the loop's ready queue: on a busy loop that hop made every frame wait
    # behind everything else that was ready.
    transport = Transport()
    out = Outbound(transport.send, Full())
    out.audio("a1")
    assert transport.accepted == ["a1"] and out.frames_accepted == 1 and out.buffered == 0
    transport.reading.clear()
    out.audio("a2")  # held by the server: queueing still returns, the frame is in flight
    out.audio("a3")
    assert transport.in_flight == "a2" and transport.accepted == ["a1"]
    transport.reading.set()
    await _settle()
    assert transport.accepted == ["a1", "a2", "a3"] and out.buffered == 0


async def test_queueing_returns_at_once_while_the_peer_does_not_read() -> None:
    transport = Transport(reading=False)
    out = Outbound(transport.send, Full())
    for n in range(100):
        assert out.audio(f"frame-{n:03}")
    await _settle()
    assert transport.in_flight == "frame-000" and transport.accepted == []
    assert out.frames_accepted == 0
    assert out.buffered == 100 * len("frame-000")
    transport.reading.set()
    await _settle()
    assert transport.accepted == [f"frame-{n:03}" for n in range(100)]
    assert out.frames_accepted == 100 and out.buffered == 0


async def test_more_than_1_mib_not_accepted_stops_the_writer_and_reports_it_once() -> None:
    transport = Transport(reading=False)
    full = Full()
    out = Outbound(transport.send, full)
    frame = "x" * 1000
    queued = 0
    for _ in range(2 * MAX_SEND_BUFFER_BYTES // len(frame)):
        if not out.audio(frame):
            break
        queued += 1
    # 1 MiB holds 1048 frames of 1000 bytes; the 1049th is refused.
    assert queued == MAX_SEND_BUFFER_BYTES // 1000
    assert out.overflowed and out.stopped
    await _settle()
    assert full.calls == 1
    assert not out.audio(frame) and not out.mark("m", "m")
    await _settle()
    assert full.calls == 1
    transport.reading.set()
    await _settle()
    # The stuck send was cancelled with the writer: nothing went out, nothing counted.
    assert transport.accepted == [] and out.frames_accepted == 0


async def test_a_peer_that_reads_never_hits_the_cap_however_much_goes_through() -> None:
    transport = Transport()
    full = Full()
    out = Outbound(transport.send, full)
    frame = "y" * 4096
    for _ in range(2 * MAX_SEND_BUFFER_BYTES // len(frame)):
        assert out.audio(frame)
        await asyncio.sleep(0)
    await _settle()
    assert full.calls == 0 and not out.overflowed
    assert out.frames_accepted == 2 * MAX_SEND_BUFFER_BYTES // len(frame)


async def test_clear_drops_queued_audio_and_the_marks_behind_it_but_not_the_frame_in_flight() -> (
    None
):
    transport = Transport(reading=False)
    out = Outbound(transport.send, Full())
    out.audio("u1-a1")  # handed to the server at once: in flight, cannot be taken back
    await _settle()
    out.audio("u1-a2")
    out.mark("mark-1", "tts-1")  # vouches for u1-a2, which is dropped
    out.audio("u2-a1")
    out.mark("mark-2", "tts-2")
    dropped = out.clear("clear")
    assert dropped == ["tts-1", "tts-2"]
    assert out.frames_dropped == 2  # u1-a2 and u2-a1
    out.audio("u3-a1")
    transport.reading.set()
    await _settle()
    assert transport.accepted == ["u1-a1", "clear", "u3-a1"]
    assert out.frames_accepted == 2  # u1-a1 and u3-a1; dropped audio never counts


async def test_clear_keeps_a_mark_whose_audio_all_went_out() -> None:
    transport = Transport(reading=False)
    out = Outbound(transport.send, Full())
    out.audio("a1")
    await _settle()
    out.mark("mark-1", "tts-1")  # all of its audio (a1) is already with the server
    out.audio("a2")
    assert out.clear("clear") == []
    transport.reading.set()
    await _settle()
    assert transport.accepted == ["a1", "mark-1", "clear"]


async def test_stop_drops_the_queue_and_cancels_a_stuck_send() -> None:
    transport = Transport(reading=False)
    out = Outbound(transport.send, Full())
    out.audio("a1")
    out.audio("a2")
    await _settle()
    out.stop()
    transport.reading.set()
    await _settle()
    assert transport.accepted == [] and not out.audio("a3") and out.buffered == 0


async def test_a_send_that_fails_stops_the_writer_quietly() -> None:
    async def gone(text: str) -> None:
        raise OSError("client disconnected")

    out = Outbound(gone, Full())
    out.audio("a1")
    out.audio("a2")
    await _settle()
    assert out.stopped and not out.audio("a3") and out.frames_accepted == 0


@pytest.mark.parametrize(
    ("text", "data", "too_big"),
    [
        ("x" * 65536, None, False),
        ("x" * 65537, None, True),
        ("é" * 32768, None, False),  # 65536 bytes in UTF-8
        ("é" * 32769, None, True),  # 32769 characters, 65538 bytes
        ("😀" * 16385, None, True),  # 4 bytes each
        (None, b"\0" * 65536, False),
        (None, b"\0" * 65537, True),
        (None, None, False),
    ],
)
def test_a_frame_is_too_big_past_64_kib_of_utf8(
    text: str | None, data: bytes | None, too_big: bool
) -> None:
    assert frame_too_big(text, data) is too_big

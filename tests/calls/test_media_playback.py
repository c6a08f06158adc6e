"""calls.streams.playback.Playback: paced 20 ms frames, marks, barge-in, keep-alive silence.

docs/plugin-behaviour.md, "Playback on a stream".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from calls.streams.playback import MAX_PENDING, Playback
from providers.audio import SILENCE_FRAME


class Line:
    """What the carrier would receive, stamped with a virtual clock that only sleeps move."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sent: list[tuple[float, str, bytes | str]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)

    async def audio(self, ulaw: bytes) -> None:
        self.sent.append((self.now, "audio", ulaw))

    async def mark(self, name: str) -> None:
        self.sent.append((self.now, "mark", name))

    async def clear(self) -> None:
        self.sent.append((self.now, "clear", ""))

    def kinds(self) -> list[str]:
        return [kind for _, kind, _ in self.sent]


def _playback(line: Line, synthesize) -> Playback:  # type: ignore[no-untyped-def]
    playback = Playback(
        send_audio=line.audio,
        send_mark=line.mark,
        send_clear=line.clear,
        synthesize=synthesize,
        clock=line.clock,
        sleep=line.sleep,
    )
    playback.start()
    return playback


def _tts(*chunks: bytes, delay: float = 0.0, line: Line | None = None):  # type: ignore[no-untyped-def]
    async def synthesize(text: str) -> AsyncIterator[bytes]:
        if delay and line is not None:
            for _ in range(int(delay / 0.02)):
                await asyncio.sleep(0)
            line.now += delay
        for chunk in chunks:
            yield chunk

    return synthesize


async def _until(predicate, rounds: int = 500) -> None:  # type: ignore[no-untyped-def]
    for _ in range(rounds):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


async def test_an_utterance_is_sent_as_paced_frames_then_a_mark() -> None:
    line = Line()
    playback = _playback(line, _tts(b"\x01" * 200, b"\x02" * 200))
    utterance = playback.say("hello")
    await _until(lambda: "mark" in line.kinds())
    audio = [(at, data) for at, kind, data in line.sent if kind == "audio"]
    assert [len(data) for _, data in audio] == [160, 160, 160]
    assert audio[-1][1].endswith(b"\xff" * 80)  # the last frame is padded with silence
    times = [at - audio[0][0] for at, _ in audio]
    assert times == pytest.approx([0.0, 0.02, 0.04])
    assert line.sent[-1][1:] == ("mark", "tts-1")
    playback.mark_done("tts-1")
    assert await utterance.done is True
    await playback.close()


async def test_barge_in_stops_the_utterance_drops_the_queue_and_clears() -> None:
    line = Line()
    playback = _playback(line, _tts(*(b"\x03" * 160 for _ in range(50))))
    first = playback.say("a long answer")
    queued = playback.say("and more")
    await _until(lambda: line.kinds().count("audio") >= 3)
    await playback.barge_in()
    assert await first.done is False
    assert await queued.done is False
    assert "clear" in line.kinds()
    sent_before = line.kinds().count("audio")
    await asyncio.sleep(0)
    assert line.kinds().count("audio") == sent_before  # nothing more after the clear
    await playback.close()


async def test_silence_keeps_the_line_alive_while_synthesis_is_slow() -> None:
    line = Line()
    release = asyncio.Event()

    async def slow(text: str) -> AsyncIterator[bytes]:
        await release.wait()
        yield b"\x05" * 160

    playback = _playback(line, slow)
    playback.say("thinking")
    await _until(lambda: line.kinds().count("audio") >= 3)
    assert all(data == SILENCE_FRAME for _, kind, data in line.sent if kind == "audio")
    release.set()
    await _until(lambda: "mark" in line.kinds())
    assert line.sent[-2][2] == b"\x05" * 160
    await playback.close()


async def test_no_audio_fails_the_utterance_without_a_mark() -> None:
    line = Line()
    playback = _playback(line, _tts())
    utterance = playback.say("nothing")
    assert await utterance.done is False
    assert "mark" not in line.kinds()
    await playback.close()


async def test_a_mark_that_never_echoes_times_out_and_playback_moves_on() -> None:
    line = Line()
    playback = _playback(line, _tts(b"\x01" * 160))
    first, second = playback.say("one"), playback.say("two")
    assert await asyncio.wait_for(first.done, 5) is True  # duration + 2 s grace, then on
    await _until(lambda: line.kinds().count("mark") == 2, rounds=5000)
    playback.mark_done("tts-2")
    assert await second.done is True
    await playback.close()


async def test_the_queue_holds_at_most_eight_utterances() -> None:
    line = Line()
    release = asyncio.Event()

    async def blocked(text: str) -> AsyncIterator[bytes]:
        await release.wait()
        yield b"\x01" * 160

    playback = _playback(line, blocked)
    playback.say("speaking now")
    await _until(lambda: line.kinds().count("audio") >= 1)
    accepted = [playback.say(f"queued {i}") for i in range(MAX_PENDING + 1)]
    assert [u is not None for u in accepted] == [True] * MAX_PENDING + [False]
    await playback.close()

"""calls.streams.playback.Playback: paced 20 ms frames, marks, barge-in, keep-alive silence,
and the ledger of what the caller heard.

docs/plugin-behaviour.md, "Playback on a stream"; docs/voice-path.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from calls.streams.playback import MAX_PENDING, Outcome, Playback, Utterance, heard_words
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


def _playback(line: Line, synthesize, outcomes: list | None = None) -> Playback:  # type: ignore[no-untyped-def]
    playback = Playback(
        send_audio=line.audio,
        send_mark=line.mark,
        send_clear=line.clear,
        synthesize=synthesize,
        on_outcome=lambda u, o: outcomes.append((u.id, o)) if outcomes is not None else None,
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
    assert await utterance.done == Outcome(
        heard=True, interrupted=False, text="hello", played_ms=60
    )
    await playback.close()


async def test_barge_in_stops_the_utterance_drops_the_queue_and_clears() -> None:
    line = Line()
    playback = _playback(line, _tts(*(b"\x03" * 160 for _ in range(50))))
    first = playback.say("a long answer")
    queued = playback.say("and more")
    await _until(lambda: line.kinds().count("audio") >= 3)
    await playback.barge_in()
    assert (await first.done).heard is False and (await first.done).interrupted is True
    assert (await queued.done) == Outcome(heard=False, interrupted=True, text="", played_ms=0)
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
    outcome = await utterance.done
    assert (outcome.heard, outcome.text) == (False, "")
    assert outcome.error == "TTS failed: Telephony TTS produced no audio"
    assert playback.tts_failures == 1
    assert "mark" not in line.kinds()
    await playback.close()


async def test_a_mark_that_never_echoes_times_out_and_playback_moves_on() -> None:
    line = Line()
    playback = _playback(line, _tts(b"\x01" * 160))
    first, second = playback.say("one"), playback.say("two")
    # duration + 2 s grace, then on; every frame went out paced, so it counts as heard
    assert (await asyncio.wait_for(first.done, 5)).heard is True
    await _until(lambda: line.kinds().count("mark") == 2, rounds=5000)
    playback.mark_done("tts-2")
    assert (await second.done).heard is True
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


async def test_barge_in_cuts_the_words_to_what_played_at_a_word_boundary() -> None:
    """Ten frames (200 ms) of a 1 s utterance played: the first fifth of the words."""
    line = Line()
    outcomes: list[tuple[str, Outcome]] = []
    playback = _playback(line, _tts(*(b"\x03" * 160 for _ in range(50))), outcomes)
    text = "one two three four five six seven eight nine ten eleven twelve"
    first = playback.say(text, utterance_id="u-1")
    queued = playback.say("never started", utterance_id="u-2")
    assert first is not None and queued is not None
    await _until(lambda: line.kinds().count("audio") >= 10)
    assert first.complete  # read ahead: the cut is measured against the whole 1 s
    await playback.barge_in()
    outcome = await first.done
    assert outcome.interrupted and not outcome.heard
    assert outcome.played_ms == first.frames * 20
    assert text.startswith(outcome.text) and outcome.text
    assert not outcome.text.endswith(" ")
    # Whole words only: the cut never ends inside a word of the original text.
    assert text[len(outcome.text)] == " "
    assert [(uid, o.interrupted, o.text) for uid, o in outcomes] == [
        ("u-2", True, ""),
        ("u-1", True, outcome.text),
    ]
    await asyncio.sleep(0)
    assert len(outcomes) == 2  # one outcome each, even after the task notices the cancel
    await playback.close()


def _utterance(text: str, *, frames: int, complete: bool) -> Utterance:
    utterance = Utterance.__new__(Utterance)
    utterance.text, utterance.frames, utterance.complete = text, frames, complete
    utterance.audio_bytes = frames * 160
    return utterance


@pytest.mark.parametrize(
    ("played_ms", "expected"),
    [
        (0, ""),
        (100, ""),  # inside "Hello,": not a whole word yet
        (400, "Hello"),  # the comma goes with the cut
        (700, "Hello, this is"),
        (1000, "Hello, this is your dentist"),
        (5000, "Hello, this is your dentist"),
    ],
)
def test_heard_words_cut_proportionally_at_word_boundaries(played_ms: int, expected: str) -> None:
    utterance = _utterance("Hello, this is your dentist", frames=50, complete=True)  # 1 s
    assert heard_words(utterance, played_ms) == expected


def test_heard_words_estimate_the_length_while_synthesis_is_still_running() -> None:
    # 29 characters at 15 a second is 1.93 s; 1 s played is 15 characters of them.
    utterance = _utterance("aaaa bbbb cccc dddd eeee ffff", frames=50, complete=False)
    assert heard_words(utterance, 1000) == "aaaa bbbb cccc"


async def test_closing_mid_utterance_ends_the_vendor_stream_quietly(caplog: Any) -> None:
    """The server stopping with live streams: the TTS generator is closed in the task that
    reads it, so no 'asynchronous generator is already running' and the HTTP stream ends."""
    line = Line()
    closed = asyncio.Event()

    async def endless(text: str) -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"\x07" * 160
                await asyncio.sleep(0)
        finally:
            closed.set()

    playback = _playback(line, endless)
    utterance = playback.say("a very long story")
    assert utterance is not None
    await _until(lambda: line.kinds().count("audio") >= 5)
    await playback.close()
    await asyncio.wait_for(closed.wait(), 1)
    assert (await utterance.done).interrupted
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

"""Speaking into a call (calls/services/speech.py), called directly.

Words go on the call's media stream when one is attached, inline in the reply to the
carrier's own fetch when there is one (no REST update racing it), else by carrier
command; a carrier that fetches a document for the words gets them from the row.
"""

from __future__ import annotations

from typing import Any

import pytest

from calls.call_metadata import PENDING_SPEECH
from calls.exceptions import CapacityReached, CarrierFailed, SpeechFailed, SpeechTimeout
from calls.models import Call, TranscriptEntry
from calls.services.speech import InlineReply, pending_speech_take, speak
from providers.base import Speech
from providers.errors import ProviderError

pytestmark = pytest.mark.django_db


def test_inline_speech_rides_in_the_reply_and_sends_no_command(
    mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="listening")
    inline = InlineReply()
    speak(call, "Hello there", listen_after=True, turn_token="t-1", inline=inline)
    assert inline.speech == Speech(text="Hello there", listen=True, turn_token="t-1")
    assert mock_carrier.sent == []
    assert Call.objects.get(pk=call.pk).state == "speaking"
    assert list(TranscriptEntry.objects.values_list("speaker", "text")) == [("bot", "Hello there")]


def test_a_reply_that_already_speaks_sends_the_next_words_by_command(
    mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="listening")
    inline = InlineReply(speech=Speech(text="first"))
    speak(call, "second", listen_after=False, inline=inline)
    assert inline.speech == Speech(text="first")
    assert mock_carrier.sent == [("play_text", {"text": "second", "listen_after": False})]


def test_without_a_reply_the_words_go_by_command_with_the_turn(
    mock_carrier: Any, make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    targets: list[Any] = []

    def play(target: Any, text: str, *, listen_after: bool) -> None:
        targets.append((target.turn_token, target.command_key, text, listen_after))

    monkeypatch.setattr(mock_carrier, "play_text", play)
    call = make_call(state="listening")
    speak(call, "Ready?", listen_after=True, turn_token="t-2", command_key="k-2")
    assert targets == [("t-2", "k-2", "Ready?", True)]
    assert TranscriptEntry.objects.get().text == "Ready?"


def test_a_carrier_refusal_goes_back_to_listening_and_records_nothing(
    mock_carrier: Any, make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(target: Any, text: str, *, listen_after: bool) -> None:
        raise ProviderError("21220: call not in progress")

    monkeypatch.setattr(mock_carrier, "play_text", refuse)
    call = make_call(state="listening")
    with pytest.raises(CarrierFailed, match="21220"):
        speak(call, "Hello", listen_after=True)
    assert Call.objects.get(pk=call.pk).state == "listening"
    assert not TranscriptEntry.objects.exists()


def test_a_carrier_that_fetches_the_words_finds_them_on_the_row(
    mock_carrier: Any, make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mock_carrier, "speech_by_fetch", True)
    call = make_call(state="listening")
    speak(call, "Your code is 4 2", listen_after=True, turn_token="t-3")
    call.refresh_from_db()
    assert call.metadata[PENDING_SPEECH] == {
        "text": "Your code is 4 2",
        "listen": True,
        "turnToken": "t-3",
    }
    assert pending_speech_take(call) == Speech(
        text="Your code is 4 2", listen=True, turn_token="t-3"
    )
    assert pending_speech_take(call) is None  # taken once: a keep-alive fetch gets nothing
    call.refresh_from_db()
    assert PENDING_SPEECH not in call.metadata


def test_other_carriers_keep_nothing_on_the_row(mock_carrier: Any, make_call: Any) -> None:
    call = make_call(state="listening")
    speak(call, "Hi", listen_after=False)
    call.refresh_from_db()
    assert PENDING_SPEECH not in call.metadata
    assert pending_speech_take(call) is None


class FakeStream:
    """The stream's holder on the other end of the channel layer: its replies, scripted."""

    def __init__(self, *replies: dict[str, Any]) -> None:
        self.replies = list(replies)
        self.asked: list[tuple[str, dict[str, Any], bool]] = []

    def __call__(self, call_id: str, message: dict[str, Any], *, wait: bool) -> list[dict]:
        self.asked.append((call_id, message, wait))
        return self.replies if wait else self.replies[:1]


@pytest.fixture
def stream(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(*replies: dict[str, Any]) -> FakeStream:
        fake = FakeStream(*replies)
        monkeypatch.setattr("calls.services.speech.stream_ask", fake)
        return fake

    return install


ACCEPTED = {"type": "speak.accepted"}


def test_a_call_with_a_stream_speaks_on_the_stream_not_by_command(
    mock_carrier: Any, make_call: Any, stream: Any
) -> None:
    fake = stream(ACCEPTED)
    call = make_call(state="listening", stream_id="MZ-1")
    inline = InlineReply()
    spoken = speak(call, "On the stream", listen_after=True, inline=inline)
    ((call_id, message, wait),) = fake.asked
    assert (call_id, wait) == (call.call_id, False)
    assert message == {
        "type": "call.speak",
        "text": "On the stream",
        "utteranceId": spoken.utterance_id,
    }
    assert (spoken.heard, spoken.interrupted) == (None, None)
    assert mock_carrier.sent == [] and inline.speech is None
    # The stream writes the line once the caller heard it, not the request.
    assert not TranscriptEntry.objects.exists()
    assert Call.objects.get(pk=call.pk).state == "speaking"


def test_speak_with_wait_reports_what_the_caller_heard(
    mock_carrier: Any, make_call: Any, stream: Any
) -> None:
    stream(ACCEPTED, {"type": "speak.finished", "heard": False, "interrupted": True})
    call = make_call(state="listening", stream_id="MZ-1")
    spoken = speak(call, "A long story", listen_after=True, wait=True)
    assert (spoken.heard, spoken.interrupted) == (False, True)


@pytest.mark.parametrize(
    ("replies", "wait", "error", "message"),
    [
        ((), False, SpeechFailed, "No media stream for call"),
        (
            ({"type": "speak.refused", "error": "Speech queue is full"},),
            False,
            CapacityReached,
            "Speech queue is full",
        ),
        (
            (
                ACCEPTED,
                {"type": "speak.finished", "heard": False, "error": "TTS failed: timed out"},
            ),
            True,
            SpeechFailed,
            "TTS failed: timed out",
        ),
        ((ACCEPTED,), True, SpeechTimeout, "Timed out waiting for the utterance to finish"),
    ],
)
def test_words_that_were_not_spoken_are_an_error_never_a_success(
    mock_carrier: Any,
    make_call: Any,
    stream: Any,
    replies: tuple[dict[str, Any], ...],
    wait: bool,
    error: type[Exception],
    message: str,
) -> None:
    stream(*replies)
    call = make_call(state="listening", stream_id="MZ-1")
    with pytest.raises(error, match=message):
        speak(call, "Hello?", listen_after=True, wait=wait)
    assert not TranscriptEntry.objects.exists() and mock_carrier.sent == []
    if not (replies and replies[0] == ACCEPTED):
        # Refused outright: the call is not left "speaking" words nobody will hear.
        assert Call.objects.get(pk=call.pk).state == "listening"

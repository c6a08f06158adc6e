"""Speaking into a call (calls/services/speech.py), called directly.

Words go on the call's media stream when one is attached, inline in the reply to the
carrier's own fetch when there is one (no REST update racing it), else by carrier
command; a carrier that fetches a document for the words gets them from the row.
"""

from __future__ import annotations

from typing import Any

import pytest

from calls.call_metadata import PENDING_SPEECH
from calls.exceptions import CarrierFailed
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


def test_a_call_with_a_stream_speaks_on_the_stream_not_by_command(
    mock_carrier: Any, make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(
        "calls.services.speech.stream_command",
        lambda call_id, message: sent.append((call_id, message)),
    )
    call = make_call(state="listening", stream_id="MZ-1")
    inline = InlineReply()
    speak(call, "On the stream", listen_after=True, inline=inline)
    assert sent == [(call.call_id, {"type": "call.speak", "text": "On the stream"})]
    assert mock_carrier.sent == [] and inline.speech is None
    assert TranscriptEntry.objects.get().text == "On the stream"

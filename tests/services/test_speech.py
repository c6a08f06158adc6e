"""Speaking into a call (calls/services/speech.py), called directly.

Words go on the call's media stream when one is attached, inline in the reply to the
carrier's own fetch when there is one (no REST update racing it), else by carrier
command; a carrier that fetches a document for the words gets them from the row.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from calls.call_metadata import PENDING_SPEECH, UTTERANCES_IN_FLIGHT
from calls.exceptions import CapacityReached, CarrierFailed, SpeechFailed, SpeechTimeout
from calls.models import Call, TranscriptEntry
from calls.services.events import event_apply
from calls.services.speech import (
    DOCUMENT_HANG_UP_GRACE,
    InlineReply,
    pending_speech_take,
    speak,
    spoken_bound,
)
from providers.base import EventType, NormalizedEvent, Speech
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

    def __call__(
        self,
        call_id: str,
        message: dict[str, Any],
        *,
        wait: bool,
        meanwhile: Callable[[], object] | None = None,
    ) -> list[dict]:
        self.asked.append((call_id, message, wait))
        if meanwhile is not None:  # what the asker does while the request travels
            meanwhile()
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


# --- carrier speech the carrier reports said (docs/carriers.md, "What each carrier tells us
# about speech") ---------------------------------------------------------------------------


@pytest.fixture
def reporting(mock_carrier: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The mock as a carrier that reports its words said (Twilio, Telnyx, Plivo)."""
    monkeypatch.setattr(mock_carrier, "speech_done_signal", True)
    return mock_carrier


def spoken_event(call: Call, utterance_id: str | None, **fields: Any) -> NormalizedEvent:
    return NormalizedEvent(
        type=EventType.SPOKEN,
        id=f"spoken-{utterance_id}-{fields.get('id', '')}",
        call_id=call.call_id,
        provider_call_id=call.provider_call_id,
        utterance_id=utterance_id,
        interrupted=fields.get("interrupted", False),
    )


def report(call: Call, utterance_id: str | None, **fields: Any) -> None:
    event_apply(provider="mock", event=spoken_event(call, utterance_id, **fields))


def bot_lines(call: Call) -> list[tuple[str, str, bool]]:
    lines = TranscriptEntry.objects.filter(call=call, speaker="bot")
    return list(lines.values_list("text", "utterance_id", "interrupted"))


def in_flight(call: Call) -> list[dict[str, Any]]:
    call.refresh_from_db()
    return list(call.metadata.get(UTTERANCES_IN_FLIGHT, []))


def test_words_a_carrier_reports_are_written_when_it_reports_them_not_when_sent(
    reporting: Any, make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    targets: list[Any] = []
    monkeypatch.setattr(
        reporting, "play_text", lambda target, text, *, listen_after: targets.append(target)
    )
    call = make_call(state="listening")
    spoken = speak(call, "Your table is ready", listen_after=True, turn_token="t-1")

    assert [t.utterance_id for t in targets] == [spoken.utterance_id]  # the carrier names it
    assert bot_lines(call) == []
    assert in_flight(call) == [{"id": spoken.utterance_id, "text": "Your table is ready"}]

    report(call, spoken.utterance_id)
    assert bot_lines(call) == [("Your table is ready", spoken.utterance_id, False)]
    assert in_flight(call) == []


def test_inline_and_fetched_words_carry_their_utterance_to_the_document(
    reporting: Any, make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    call = make_call(state="listening")
    inline = InlineReply()
    spoken = speak(call, "Hello there", listen_after=True, turn_token="t-1", inline=inline)
    assert inline.speech is not None and inline.speech.utterance_id == spoken.utterance_id
    assert not TranscriptEntry.objects.exists()

    monkeypatch.setattr(reporting, "speech_by_fetch", True)
    fetched = speak(call, "Your code is 4 2", listen_after=False)
    taken = pending_speech_take(call)
    assert taken is not None and taken.utterance_id == fetched.utterance_id
    assert [u["id"] for u in in_flight(call)] == [spoken.utterance_id, fetched.utterance_id]


def test_words_the_carrier_refused_are_not_left_in_flight(
    reporting: Any, make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(target: Any, text: str, *, listen_after: bool) -> None:
        raise ProviderError("21220: call not in progress")

    monkeypatch.setattr(reporting, "play_text", refuse)
    call = make_call(state="listening")
    with pytest.raises(CarrierFailed):
        speak(call, "Hello", listen_after=True)
    assert in_flight(call) == [] and not TranscriptEntry.objects.exists()


def test_a_duplicate_or_unknown_report_writes_nothing_more(reporting: Any, make_call: Any) -> None:
    call = make_call(state="listening")
    spoken = speak(call, "One moment", listen_after=False)
    report(call, "not-ours")
    assert bot_lines(call) == [] and len(in_flight(call)) == 1
    report(call, spoken.utterance_id)
    report(call, spoken.utterance_id, id="again")  # another delivery of the same report
    assert bot_lines(call) == [("One moment", spoken.utterance_id, False)]


def test_where_new_words_replace_the_document_older_words_were_cut_off(
    reporting: Any, make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Twilio and Plivo: a new document stops the words still playing, so only the newest
    # reports; the older ones were heard only in part.
    monkeypatch.setattr(reporting, "speech_in_order", False)
    call = make_call(state="listening")
    first = speak(call, "Let me check", listen_after=False)
    second = speak(call, "Found it: table 4", listen_after=False)
    report(call, second.utterance_id)
    assert bot_lines(call) == [
        ("Let me check", first.utterance_id, True),
        ("Found it: table 4", second.utterance_id, False),
    ]
    assert in_flight(call) == []


def test_where_speech_queues_each_report_finishes_the_oldest_words(
    reporting: Any, make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Telnyx plays speak commands in order; the client_state it echoes may be a later one's.
    monkeypatch.setattr(reporting, "speech_in_order", True)
    call = make_call(state="listening")
    first = speak(call, "Let me check", listen_after=False)
    second = speak(call, "Found it", listen_after=False)
    report(call, second.utterance_id, id="1")
    assert bot_lines(call) == [("Let me check", first.utterance_id, False)]
    report(call, None, id="2", interrupted=True)  # a state naming no words: still the next
    assert bot_lines(call)[1:] == [("Found it", second.utterance_id, True)]


def test_a_notify_message_heard_schedules_the_hang_up_from_the_report(
    reporting: Any, make_call: Any, fake_clock: Any, configure: Any
) -> None:
    configure({"outbound": {"notifyHangupDelaySec": 4}})
    call = make_call(state="answered", mode="notify")
    spoken = speak(call, "Your parcel is here", listen_after=False, hang_up_after_words=True)
    call.refresh_from_db()
    assert call.notify_hangup_at is None  # no estimate of how long the words take

    fake_clock.advance(seconds=42)
    report(call, spoken.utterance_id)
    call.refresh_from_db()
    assert call.notify_hangup_at == fake_clock.now() + timedelta(seconds=4)


def test_a_notify_message_heard_in_a_document_hangs_up_in_the_reply(
    reporting: Any, make_call: Any, fake_clock: Any, configure: Any
) -> None:
    configure({"outbound": {"notifyHangupDelaySec": 4}})
    call = make_call(state="answered", mode="notify")
    spoken = speak(call, "Your parcel is here", listen_after=False, hang_up_after_words=True)
    inline = InlineReply()
    event_apply(provider="mock", event=spoken_event(call, spoken.utterance_id), inline=inline)
    assert inline.hang_up_after == 4  # the reply pauses, then hangs up
    call.refresh_from_db()
    # The timer is only the net for a carrier that does not run the reply.
    assert call.notify_hangup_at == fake_clock.now() + timedelta(seconds=4) + DOCUMENT_HANG_UP_GRACE


def test_other_words_heard_schedule_no_hang_up(reporting: Any, make_call: Any) -> None:
    call = make_call(state="answered", mode="notify")
    spoken = speak(call, "Also: bring your ID", listen_after=False)
    inline = InlineReply()
    event_apply(provider="mock", event=spoken_event(call, spoken.utterance_id), inline=inline)
    call.refresh_from_db()
    assert (inline.hang_up_after, call.notify_hangup_at) == (None, None)


def test_wait_on_carrier_speech_returns_once_the_carrier_reported_it(
    reporting: Any, make_call: Any, fake_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    call = make_call(state="listening")
    said: list[str] = []
    monkeypatch.setattr(
        reporting,
        "play_text",
        lambda target, text, *, listen_after: said.append(target.utterance_id),
    )

    def carrier_reports(clock: Any) -> None:  # the report lands while speak waits
        if said:
            report(call, said[-1], interrupted=True)

    fake_clock.on_sleep.append(carrier_reports)
    spoken = speak(call, "A long story", listen_after=True, wait=True)
    assert (spoken.heard, spoken.interrupted) == (False, True)
    assert bot_lines(call) == [("A long story", spoken.utterance_id, True)]


def test_wait_on_carrier_speech_times_out_or_ends_with_the_call(
    reporting: Any, make_call: Any, fake_clock: Any
) -> None:
    call = make_call(state="listening")
    with pytest.raises(SpeechTimeout, match="Timed out waiting for the utterance to finish"):
        speak(call, "Nobody reports this", listen_after=False, wait=True)

    fake_clock.on_sleep.append(
        lambda clock: Call.objects.filter(pk=call.pk).update(state="completed")
    )
    spoken = speak(call, "Nor this", listen_after=False, wait=True)
    assert (spoken.heard, spoken.interrupted) == (False, False)


def test_a_carrier_that_cannot_report_has_the_words_written_when_sent(
    mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="listening")
    spoken = speak(call, "Hi", listen_after=False, wait=True)
    assert (spoken.heard, spoken.interrupted) == (None, None)  # nothing to wait for
    assert bot_lines(call) == [("Hi", spoken.utterance_id, False)]
    assert in_flight(call) == []


# -- tts.maxTextLength: what reaches `speak` unasked is cut, never spoken past the bound ---


@pytest.mark.parametrize(
    ("text", "bounded"),
    [
        ("short", "short"),
        ("one two three four", "one two"),  # "three" is cut through: dropped whole
        ("one two thr four", "one two thr"),  # the bound falls on a space: all words fit
        ("unbreakableword", "unbreakabl"),  # one word longer than the bound: hard cut
    ],
)
def test_spoken_bound_cuts_at_a_word_boundary(configure: Any, text: str, bounded: str) -> None:
    configure({"tts": {"maxTextLength": 11 if "thr " in text else 10}})

    assert spoken_bound(text, call_id="c") == bounded


def test_without_max_text_length_nothing_is_cut(configure: Any) -> None:
    configure({})

    assert spoken_bound("x" * 10_000, call_id="c") == "x" * 10_000


def test_speech_nobody_asked_for_word_by_word_is_cut_before_the_carrier(
    configure: Any, mock_carrier: Any, make_call: Any
) -> None:
    configure({"tts": {"maxTextLength": 10}})
    call = make_call()

    speak(call, "An automatic reply far too long", listen_after=True)

    assert mock_carrier.sent[0][1]["text"] == "An"
    line = TranscriptEntry.objects.get(call=call)
    assert line.text == "An"  # the record says what was said

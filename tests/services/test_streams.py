"""Media streams attached to calls (calls/services/streams.py), called directly.

A carrier stream attaches only with the token planned for it, and only once; the greeting
deferred to the stream is handed over once; a closed stream leaves a grace deadline that a
reconnect clears; what the stream hears and what a realtime model says become transcript
lines and events like any carrier's.
"""

from __future__ import annotations

import hmac
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from calls.call_metadata import ROUTE_KEY
from calls.models import Call, CallEvent, TranscriptEntry
from calls.services.streams import (
    STREAM_GRACE,
    StreamRejected,
    stream_attach,
    stream_detach,
    stream_heard,
    stream_spoken,
    stream_tts,
)

pytestmark = pytest.mark.django_db

TOKEN = "0123456789abcdef" * 2
OTHER_TOKEN = "fedcba9876543210" * 2


def _streaming_call(make_call: Any, **fields: Any) -> Call:
    return make_call(**{"state": "answered", "stream_token": TOKEN, **fields})


@pytest.mark.parametrize("token", [None, "", "f" * 32, TOKEN[:-1]])
def test_a_stream_without_its_calls_token_is_rejected(
    mock_carrier: Any, make_call: Any, token: str | None
) -> None:
    call = _streaming_call(make_call)
    with pytest.raises(StreamRejected, match="Unknown call"):
        stream_attach(provider_call_id=call.provider_call_id, token=token, stream_id="MZ-1")
    assert Call.objects.get(pk=call.pk).stream_id == ""


def test_a_call_that_never_got_a_token_rejects_every_stream(
    mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="answered")
    with pytest.raises(StreamRejected):
        stream_attach(provider_call_id=call.provider_call_id, token="", stream_id="MZ-1")


def test_an_ended_call_or_another_carriers_call_rejects_the_stream(
    mock_carrier: Any, make_call: Any
) -> None:
    ended = _streaming_call(make_call, provider_call_id="CA-ended")
    Call.objects.filter(pk=ended.pk).update(state="completed")
    other = _streaming_call(make_call, provider="twilio", provider_call_id="CA-other")
    for call in (ended, other):
        with pytest.raises(StreamRejected):
            stream_attach(provider_call_id=call.provider_call_id, token=TOKEN, stream_id="MZ-1")


def test_attaching_hands_over_the_deferred_greeting_once(
    mock_carrier: Any, make_call: Any, fake_clock: Any
) -> None:
    call = _streaming_call(
        make_call, metadata={"initialMessage": "Hello!"}, stream_lost_at=fake_clock.now()
    )
    attached = stream_attach(provider_call_id=call.provider_call_id, token=TOKEN, stream_id="MZ-1")
    assert (attached.call_id, attached.provider, attached.greeting) == (
        call.call_id,
        "mock",
        "Hello!",
    )
    call.refresh_from_db()
    assert (call.stream_id, call.stream_lost_at) == ("MZ-1", None)
    assert "initialMessage" not in call.metadata
    # Not yet a line: the stream writes it once the caller has heard it.
    assert not TranscriptEntry.objects.exists()

    Call.objects.filter(pk=call.pk).update(stream_token=OTHER_TOKEN)  # the next stream's
    again = stream_attach(
        provider_call_id=call.provider_call_id, token=OTHER_TOKEN, stream_id="MZ-2"
    )
    assert again.greeting is None  # a reconnect does not greet twice


def test_a_token_opens_one_stream(mock_carrier: Any, make_call: Any) -> None:
    call = _streaming_call(make_call)
    stream_attach(provider_call_id=call.provider_call_id, token=TOKEN, stream_id="MZ-1")
    assert Call.objects.get(pk=call.pk).stream_token == ""  # consumed
    # The same token again is refused as a forged one, and the attached stream keeps the call.
    with pytest.raises(StreamRejected, match="Unknown call"):
        stream_attach(provider_call_id=call.provider_call_id, token=TOKEN, stream_id="MZ-2")
    stream_detach(call_id=call.call_id, stream_id="MZ-1")
    with pytest.raises(StreamRejected, match="Unknown call"):  # not even after it closed
        stream_attach(provider_call_id=call.provider_call_id, token=TOKEN, stream_id="MZ-2")
    assert Call.objects.get(pk=call.pk).stream_id == ""


def test_two_streams_racing_with_one_token_attach_once(
    mock_carrier: Any, make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both starts read the row and pass the token check before either writes."""
    call = _streaming_call(make_call)
    outcomes: list[str] = []

    def start(stream_id: str) -> None:
        try:
            stream_attach(provider_call_id=call.provider_call_id, token=TOKEN, stream_id=stream_id)
            outcomes.append(f"{stream_id} attached")
        except StreamRejected as exc:
            outcomes.append(f"{stream_id} {exc.message}")

    class Interleaved:
        """hmac, whose first check lets the second start run to its end."""

        raced = False

        @classmethod
        def compare_digest(cls, a: bytes, b: bytes) -> bool:
            if not cls.raced:
                cls.raced = True
                start("MZ-2")
            return hmac.compare_digest(a, b)

    monkeypatch.setattr("calls.services.streams.hmac", Interleaved)
    start("MZ-1")
    assert outcomes == ["MZ-2 attached", "MZ-1 Unknown call"]
    assert Call.objects.get(pk=call.pk).stream_id == "MZ-2"


def test_a_reconnect_with_a_new_token_carries_the_call_on(
    mock_carrier: Any, make_call: Any, fake_clock: Any
) -> None:
    """The grace deadline of the lost stream goes; the open turn and the transcript stay."""
    call = _streaming_call(make_call, state="listening", turn_token="turn-1")
    stream_attach(provider_call_id=call.provider_call_id, token=TOKEN, stream_id="MZ-1")
    stream_spoken(call_id=call.call_id, text="Which day?", interrupted=False, utterance_id="u-1")
    stream_detach(call_id=call.call_id, stream_id="MZ-1")
    assert Call.objects.get(pk=call.pk).stream_lost_at is not None

    Call.objects.filter(pk=call.pk).update(stream_token=OTHER_TOKEN)
    stream_attach(provider_call_id=call.provider_call_id, token=OTHER_TOKEN, stream_id="MZ-2")
    call.refresh_from_db()
    assert (call.stream_id, call.stream_lost_at, call.turn_token) == ("MZ-2", None, "turn-1")
    stream_heard(call_id=call.call_id, text="Tuesday", is_final=True)
    assert list(TranscriptEntry.objects.values_list("call", "speaker", "text", "turn_token")) == [
        (call.pk, "bot", "Which day?", None),
        (call.pk, "user", "Tuesday", "turn-1"),
    ]


def test_detaching_leaves_a_grace_deadline(
    mock_carrier: Any, make_call: Any, fake_clock: Any
) -> None:
    call = _streaming_call(make_call, stream_id="MZ-1")
    assert stream_detach(call_id=call.call_id, stream_id="MZ-other") is False  # not its stream
    assert stream_detach(call_id=call.call_id, stream_id="MZ-1") is True
    call.refresh_from_db()
    assert (call.stream_id, call.stream_lost_at) == ("", fake_clock.now() + STREAM_GRACE)


def test_a_final_line_heard_on_the_stream_answers_the_open_turn(
    mock_carrier: Any, make_call: Any
) -> None:
    call = _streaming_call(make_call, state="listening", turn_token="turn-1")
    stream_heard(call_id=call.call_id, text="yes please", is_final=True)
    entry = TranscriptEntry.objects.get()
    assert (entry.speaker, entry.text, entry.turn_token) == ("user", "yes please", "turn-1")
    assert CallEvent.objects.get().type == "call.speech"


def test_a_partial_line_heard_is_an_event_but_no_transcript(
    mock_carrier: Any, make_call: Any
) -> None:
    call = _streaming_call(make_call, state="listening")
    stream_heard(call_id=call.call_id, text="yes pl", is_final=False)
    assert not TranscriptEntry.objects.exists()
    assert CallEvent.objects.get().payload["isFinal"] is False


def test_what_a_realtime_model_said_is_a_bot_line_and_the_call_speaks(
    mock_carrier: Any, make_call: Any
) -> None:
    call = _streaming_call(make_call, state="listening")
    stream_spoken(
        call_id=call.call_id,
        text="  Sure, one moment.  ",
        interrupted=False,
        utterance_id="u-1",
        model=True,
    )
    assert list(TranscriptEntry.objects.values_list("speaker", "text", "utterance_id")) == [
        ("bot", "Sure, one moment.", "u-1")
    ]
    assert Call.objects.get(pk=call.pk).state == "speaking"


def test_a_cut_line_is_flagged_and_tts_speech_leaves_the_state_alone(
    mock_carrier: Any, make_call: Any
) -> None:
    call = _streaming_call(make_call, state="listening")
    stream_spoken(call_id=call.call_id, text="Our opening", interrupted=True, utterance_id="u-2")
    entry = TranscriptEntry.objects.get()
    assert (entry.text, entry.interrupted) == ("Our opening", True)
    # `speak` already moved the call; the line arriving later must not move it back.
    assert Call.objects.get(pk=call.pk).state == "listening"
    assert not CallEvent.objects.exists()


def test_nothing_heard_records_nothing_and_an_ended_call_keeps_its_last_words(
    mock_carrier: Any, make_call: Any
) -> None:
    live = _streaming_call(make_call, state="listening", provider_call_id="CA-1")
    ended = _streaming_call(make_call, state="completed", provider_call_id="CA-2")
    stream_spoken(call_id=live.call_id, text="   ", interrupted=True, utterance_id="u")
    stream_heard(call_id="00000000-0000-4000-8000-000000000000", text="hi", is_final=True)
    assert not TranscriptEntry.objects.exists() and not CallEvent.objects.exists()
    # The goodbye played before the hang-up landed: it was heard, so it is recorded.
    stream_spoken(
        call_id=ended.call_id, text="Goodbye", interrupted=False, utterance_id="u", model=True
    )
    assert list(TranscriptEntry.objects.values_list("text", flat=True)) == ["Goodbye"]
    assert not CallEvent.objects.exists()


# -- the TTS a stream speaks with: numbers.<n>.tts over the config's ----------------------

ROUTED = "+15550100000"
TTS = {"provider": "openai", "providers": {"openai": {"apiKey": "k", "voice": "alloy"}}}


# Transactional: the stream's query runs through channels' database_sync_to_async, which
# closes the connection of the test's own transaction.
@pytest.mark.django_db(transaction=True)
def test_a_stream_to_a_routed_number_speaks_with_the_routes_tts(
    configure: Any, make_call: Any
) -> None:
    route = {"tts": {"providers": {"openai": {"voice": "nova", "speed": 1.2}}}}
    configure({"tts": TTS, "numbers": {ROUTED: route}})
    routed = make_call(direction="inbound", to_number=ROUTED, metadata={ROUTE_KEY: ROUTED})
    other = make_call(direction="inbound")

    tts = async_to_sync(stream_tts)(routed.call_id)

    # Merged, not replaced: the route's voice and speed, the config's key and provider.
    assert tts["provider"] == "openai"
    assert tts["providers"]["openai"] == {"apiKey": "k", "voice": "nova", "speed": 1.2}
    assert async_to_sync(stream_tts)(other.call_id)["providers"]["openai"]["voice"] == "alloy"


def test_without_a_route_of_its_own_tts_no_query_is_made(
    configure: Any, make_call: Any, django_assert_num_queries: Any
) -> None:
    configure({"tts": TTS, "numbers": {ROUTED: {"inboundGreeting": "Hi"}}})
    call = make_call(direction="inbound", metadata={ROUTE_KEY: ROUTED})

    with django_assert_num_queries(0):
        tts = async_to_sync(stream_tts)(call.call_id)

    assert tts["providers"]["openai"]["voice"] == "alloy"


def test_a_greeting_over_max_text_length_is_cut_for_the_stream(
    configure: Any, mock_carrier: Any, make_call: Any
) -> None:
    configure({"tts": {"maxTextLength": 12}})
    call = _streaming_call(make_call, metadata={"initialMessage": "Welcome to Acme Dental!"})

    attached = stream_attach(provider_call_id=call.provider_call_id, token=TOKEN, stream_id="MZ-1")

    assert attached.greeting == "Welcome to"

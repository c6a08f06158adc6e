"""Early replies: on a stream the model is asked while the caller's line is written, and the
words are said only once that line is committed and still the one to answer.

calls/services/auto_reply.py (`responder_ask_early`, `EarlyReply`); docs/voice-path.md,
"Early replies". Transactional: the reply runs on the responder's own threads, which see
only committed rows. The LLM is a FakeLLM at the HTTP boundary; the call has no stream
attached, so the reply goes to the mock carrier.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from calls.models import Call, TranscriptEntry, Turn
from calls.services import auto_reply, events, lifecycle
from calls.services.auto_reply import early_reply_for_line, responder_ask_early
from calls.services.lifecycle import call_finalize, transcript_add
from calls.services.streams import stream_heard
from providers.base import EventType, NormalizedEvent
from providers.mock import MockProvider
from tests.fakes.llm import REPLY, FakeLLM

pytestmark = pytest.mark.django_db(transaction=True)

MODEL_CONFIG = {
    "responseModel": "openai/gpt-4o-mini",
    "tts": {"providers": {"openai": {"apiKey": "sk-config"}}},
}
WAIT_S = 10


@pytest.fixture
def model(configure: Any, mock_carrier: MockProvider, llm: FakeLLM, settings: Any) -> MockProvider:
    settings.REDIS_URL = ""  # the embedded default: replies on this process's threads
    configure(MODEL_CONFIG)
    return mock_carrier


def _counted(monkeypatch: pytest.MonkeyPatch, job: str) -> threading.Semaphore:
    """Released each time the reply job `job` of calls/services/auto_reply.py is over,
    whatever it decided."""
    done = threading.Semaphore(0)
    run = getattr(auto_reply, job)

    def counted(*args: Any) -> None:
        try:
            run(*args)
        finally:
            done.release()

    monkeypatch.setattr(auto_reply, job, counted)
    return done


@pytest.fixture
def finished(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Semaphore]:
    """Released each time an early reply's job is over."""
    yield _counted(monkeypatch, "_early_logged")


def _call(make_call: Any, **fields: Any) -> Call:
    return make_call(**{"direction": "inbound", "state": "listening", **fields})


def _spoken(carrier: MockProvider) -> list[dict[str, Any]]:
    return [fields for op, fields in carrier.sent if op == "play_text"]


def test_the_model_is_asked_before_the_line_is_written_and_answered_after_it(
    model: MockProvider,
    llm: FakeLLM,
    make_call: Any,
    finished: threading.Semaphore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    call = _call(make_call)
    transcript_add(call=call, speaker="bot", text="Hello, how can I help?")
    asked = threading.Event()
    llm.during = asked.set
    write = lifecycle.transcript_add
    seen_at_write: list[bool] = []

    def held_write(**kwargs: Any) -> TranscriptEntry:
        # The caller's line waits here until the model was asked: a reply asked only after
        # the commit would never let this return in time.
        if kwargs.get("speaker") == TranscriptEntry.Speaker.USER:
            seen_at_write.append(asked.wait(WAIT_S))
        return write(**kwargs)

    monkeypatch.setattr(lifecycle, "transcript_add", held_write)

    stream_heard(call_id=call.call_id, text="Are you open on Sunday?", is_final=True)

    assert finished.acquire(timeout=WAIT_S)
    assert seen_at_write == [True]
    assert _spoken(model) == [{"text": REPLY, "listen_after": True}]
    # Asked with the earlier lines and the caller's words, not with the line twice.
    assert [m["content"] for m in llm.messages()[1:]] == [
        '{"spoken": "Hello, how can I help?"}',
        "Are you open on Sunday?",
    ]
    line = TranscriptEntry.objects.get(speaker="user")
    turn = Turn.objects.get(caller_entry=line)
    assert turn.reply_utterance_id and turn.reply_ready_at is not None
    assert list(
        TranscriptEntry.objects.filter(call=call, speaker="bot").values_list("text", flat=True)
    ) == ["Hello, how can I help?", REPLY]
    assert len(llm.requests) == 1  # no second, classic dispatch of the same line


def test_a_line_that_is_not_written_gets_no_reply(
    model: MockProvider,
    llm: FakeLLM,
    make_call: Any,
    finished: threading.Semaphore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    call = _call(make_call)

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(lifecycle, "transcript_add", broken)
    with pytest.raises(RuntimeError):
        stream_heard(call_id=call.call_id, text="Hello?", is_final=True)

    assert finished.acquire(timeout=WAIT_S)
    assert len(llm.requests) == 1  # asked early, then dropped: the line never existed
    assert _spoken(model) == []
    assert not TranscriptEntry.objects.exists() and not Turn.objects.exists()


def test_a_call_that_ended_before_the_line_was_written_gets_no_reply(
    model: MockProvider, llm: FakeLLM, make_call: Any, finished: threading.Semaphore
) -> None:
    call = _call(make_call)
    early = responder_ask_early(call=call, text="Still there?")
    assert early is not None
    # Hung up meanwhile: the speech event finds the call over and writes no line.
    call_finalize(call=Call.objects.get(pk=call.pk), reason="hangup-user")
    with early_reply_for_line(early):
        events.event_apply(
            provider="mock",
            event=_speech(call, "Still there?"),
            call=Call.objects.get(pk=call.pk),
        )

    assert finished.acquire(timeout=WAIT_S)
    assert early.line.result(timeout=0) is None
    assert _spoken(model) == []


def test_a_reply_the_caller_talked_over_is_dropped(
    model: MockProvider, llm: FakeLLM, make_call: Any, finished: threading.Semaphore
) -> None:
    call = _call(make_call)
    first_written = threading.Event()

    def caller_again() -> None:
        # While the model thinks about the first line (once it is written), the caller
        # says another.
        llm.during = None
        assert first_written.wait(WAIT_S)
        stream_heard(call_id=call.call_id, text="Actually, wait", is_final=True)

    llm.during = caller_again

    stream_heard(call_id=call.call_id, text="What time is it?", is_final=True)
    first_written.set()

    assert finished.acquire(timeout=WAIT_S)  # the reply to the first line: dropped
    assert finished.acquire(timeout=WAIT_S)  # the second line's own reply job
    assert _spoken(model) == [{"text": REPLY, "listen_after": True}]  # said once, for the second
    first = Turn.objects.get(caller_entry__text="What time is it?")
    assert first.reply_utterance_id == "" and first.reply_ready_at is None


def test_a_failure_to_ask_early_still_writes_the_line_and_answers_it_after(
    model: MockProvider, llm: FakeLLM, make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    call = _call(make_call)
    classic = _counted(monkeypatch, "_run_logged")

    def broken(**kwargs: Any) -> list[tuple[str, str]]:
        raise RuntimeError("history unreadable")

    monkeypatch.setattr(auto_reply, "conversation_history", broken)

    stream_heard(call_id=call.call_id, text="Hello?", is_final=True)

    assert TranscriptEntry.objects.filter(call=call, speaker="user", text="Hello?").exists()
    # Answered the classic way, after the commit, by a job that reads its own history.
    assert classic.acquire(timeout=WAIT_S)
    assert _spoken(model) == [{"text": REPLY, "listen_after": True}]


@pytest.mark.parametrize("setup", ["broker", "agent", "test-dispatch", "open-turn", "partial"])
def test_no_early_reply_where_the_reply_would_not_run_here(
    model: MockProvider,
    llm: FakeLLM,
    make_call: Any,
    configure: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    setup: str,
) -> None:
    call = _call(make_call)
    text = "Hello?"
    if setup == "broker":  # a Celery task reads its line from the database
        settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    elif setup == "agent":  # the gateway's agent gets the transcript with the line in it
        configure(
            {**MODEL_CONFIG, "responder": {"url": "http://127.0.0.1:9/agent", "secret": "s" * 32}}
        )
    elif setup == "test-dispatch":
        monkeypatch.setattr(auto_reply, "DISPATCH", lambda *args: None)
    elif setup == "open-turn":  # the line answers a `continue` prompt
        call = _call(make_call, turn_token="turn-1")
    else:
        text = "   "
    assert responder_ask_early(call=call, text=text) is None
    assert llm.requests == []


def _speech(call: Call, text: str) -> NormalizedEvent:
    return NormalizedEvent(
        type=EventType.SPEECH,
        id=f"stream:{text}",
        call_id=call.call_id,
        provider_call_id=call.provider_call_id,
        transcript=text,
        is_final=True,
    )

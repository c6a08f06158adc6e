"""Automatic replies: when the responder answers, what it says, when not.

docs/plugin-behaviour.md, "Auto-response".

The LLM is faked at its HTTP boundary (OpenAI chat completions on an httpx.MockTransport);
DISPATCH is made synchronous so a reply is spoken before the event handling returns.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from calls import tasks
from calls.models import Call, TranscriptEntry
from calls.services import auto_reply as responder
from calls.services.auto_reply import (
    responder_enabled,
    responder_run,
    responder_schedule,
    responder_should_answer,
)
from calls.services.events import event_apply
from calls.services.lifecycle import call_finalize, transcript_add
from providers.base import EventType, NormalizedEvent
from providers.mock import MockProvider
from tests.fakes.llm import REPLY, FakeLLM

pytestmark = pytest.mark.django_db

CALLER = "+15550001111"
OUR_NUMBER = "+15550000000"
MODEL_CONFIG = {
    "responseModel": "openai/gpt-4o-mini",
    "tts": {"providers": {"openai": {"apiKey": "sk-config"}}},
}


@pytest.fixture
def sync_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replies run inline, before the event handling returns."""
    monkeypatch.setattr(
        responder,
        "DISPATCH",
        lambda call_id, entry_id: responder_run(call_id=call_id, entry_id=entry_id),
    )


@pytest.fixture
def enabled(
    configure: Any, mock_carrier: MockProvider, llm: FakeLLM, sync_dispatch: None
) -> MockProvider:
    configure(MODEL_CONFIG)
    return mock_carrier


def inbound_call(make_call: Any, **fields: Any) -> Call:
    values = {
        "direction": "inbound",
        "state": "listening",
        "from_number": CALLER,
        "to_number": OUR_NUMBER,
        **fields,
    }
    return make_call(**values)


def speech(call: Call, text: str, *, turn_token: str | None = None, is_final: bool = True) -> None:
    event_apply(
        provider="mock",
        event=NormalizedEvent(
            type=EventType.SPEECH,
            id=str(uuid.uuid4()),
            call_id=call.call_id,
            transcript=text,
            turn_token=turn_token,
            is_final=is_final,
        ),
    )


def spoken(carrier: MockProvider) -> list[dict[str, Any]]:
    return [fields for op, fields in carrier.sent if op == "play_text"]


def bot_lines(call: Call) -> list[str]:
    return list(
        TranscriptEntry.objects.filter(call=call, speaker="bot").values_list("text", flat=True)
    )


# --- answering ---------------------------------------------------------------------------


def test_an_inbound_callers_final_speech_gets_a_spoken_reply(
    enabled: MockProvider, llm: FakeLLM, make_call: Any
) -> None:
    call = inbound_call(make_call)
    transcript_add(call=call, speaker="bot", text="Hello! How can I help you today?")

    speech(call, "How long are you open?")

    assert spoken(enabled) == [{"text": REPLY, "listen_after": True}]
    assert bot_lines(call) == ["Hello! How can I help you today?", REPLY]
    call.refresh_from_db()
    assert call.state == "listening"
    assert isinstance(call.metadata["lastAutoReplyLatencyMs"], int)
    messages = llm.messages()
    assert messages[0]["role"] == "system"
    assert CALLER in messages[0]["content"]
    assert '{"spoken":""}' in messages[0]["content"]
    assert messages[1:] == [
        {"role": "assistant", "content": '{"spoken": "Hello! How can I help you today?"}'},
        {"role": "user", "content": "How long are you open?"},
    ]
    assert json.loads(llm.requests[0].content)["model"] == "gpt-4o-mini"
    assert llm.requests[0].headers["authorization"] == "Bearer sk-config"


def test_the_custom_system_prompt_is_used(
    configure: Any, enabled: MockProvider, llm: FakeLLM, make_call: Any
) -> None:
    configure({**MODEL_CONFIG, "responseSystemPrompt": "You are Ada at Acme."})
    call = inbound_call(make_call)

    speech(call, "hi")

    assert llm.messages()[0]["content"].startswith("You are Ada at Acme.")
    assert spoken(enabled) == [{"text": REPLY, "listen_after": True}]


def test_an_outbound_conversation_call_is_answered_with_the_callee_in_the_prompt(
    enabled: MockProvider, llm: FakeLLM, make_call: Any
) -> None:
    call = make_call(state="listening", to_number="+15555550123")

    speech(call, "Who is this?")

    assert spoken(enabled) == [{"text": REPLY, "listen_after": True}]
    assert "+15555550123" in llm.messages()[0]["content"]


def test_an_empty_spoken_reply_says_nothing(
    enabled: MockProvider, llm: FakeLLM, make_call: Any
) -> None:
    llm.content = '{"spoken":""}'
    call = inbound_call(make_call)

    speech(call, "hmm")

    assert len(llm.requests) == 1
    assert spoken(enabled) == []
    assert bot_lines(call) == []


def test_the_base_url_and_env_key_reach_the_llm(
    configure: Any, enabled: MockProvider, llm: FakeLLM, make_call: Any, settings: Any
) -> None:
    settings.OPENAI_API_KEY = "sk-env"
    configure({"responseModel": "local/qwen2.5:7b", "responseBaseUrl": "http://127.0.0.1:8000/v1"})
    call = inbound_call(make_call)

    speech(call, "hi")

    request = llm.requests[0]
    assert str(request.url) == "http://127.0.0.1:8000/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-env"
    assert json.loads(request.content)["model"] == "qwen2.5:7b"


# --- staying quiet -----------------------------------------------------------------------


def test_a_line_consumed_by_a_continue_turn_gets_no_reply(
    enabled: MockProvider, llm: FakeLLM, make_call: Any
) -> None:
    call = inbound_call(make_call, turn_token="turn-1")

    speech(call, "yes please", turn_token="turn-1")

    assert TranscriptEntry.objects.get(call=call).turn_token == "turn-1"
    assert llm.requests == []
    assert spoken(enabled) == []


def test_a_late_line_while_a_continue_turn_is_open_gets_no_reply(
    enabled: MockProvider, llm: FakeLLM, make_call: Any
) -> None:
    call = inbound_call(make_call, turn_token="turn-1")

    speech(call, "hello? anyone?")  # token-less: kept, but the turn owns the conversation

    assert llm.requests == []


def test_a_notify_call_gets_no_reply(enabled: MockProvider, llm: FakeLLM, make_call: Any) -> None:
    call = make_call(mode="notify", state="listening")

    speech(call, "thanks, bye")

    assert llm.requests == []
    assert spoken(enabled) == []


def test_an_outbound_call_still_owing_its_greeting_gets_no_reply(
    enabled: MockProvider, llm: FakeLLM, make_call: Any
) -> None:
    call = make_call(state="speaking", metadata={"initialMessage": "Hi, this is Acme."})

    speech(call, "hello?")

    assert llm.requests == []


def test_an_inbound_caller_may_talk_over_the_greeting(
    enabled: MockProvider, llm: FakeLLM, make_call: Any
) -> None:
    call = inbound_call(make_call, metadata={"initialMessage": "Hello!"})

    speech(call, "hi, quick question")

    assert spoken(enabled) == [{"text": REPLY, "listen_after": True}]


def test_partial_and_blank_speech_gets_no_reply(
    enabled: MockProvider, llm: FakeLLM, make_call: Any
) -> None:
    call = inbound_call(make_call)

    speech(call, "how long are", is_final=False)
    speech(call, "   ")

    assert llm.requests == []


@pytest.mark.parametrize("raw", [{}, {"responseModel": "openai/gpt-4o-mini"}])
def test_the_responder_is_off_without_a_model_or_a_key(
    configure: Any,
    mock_carrier: MockProvider,
    llm: FakeLLM,
    sync_dispatch: None,
    make_call: Any,
    settings: Any,
    raw: dict[str, Any],
) -> None:
    settings.OPENAI_API_KEY = ""
    configure(raw)
    call = inbound_call(make_call)

    speech(call, "hello?")

    assert responder_enabled() is False
    assert llm.requests == []
    assert spoken(mock_carrier) == []


def test_a_model_without_a_key_says_so_in_the_log(
    configure: Any, settings: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings.OPENAI_API_KEY = ""
    monkeypatch.setattr(responder, "_warned_missing_key", False)
    configure({"responseModel": "openai/gpt-4o-mini"})

    with caplog.at_level(logging.WARNING):
        assert responder_enabled() is False

    assert "no API key" in caplog.text


def test_the_env_key_enables_the_responder(configure: Any, settings: Any) -> None:
    settings.OPENAI_API_KEY = "sk-env"
    configure({"responseModel": "gpt-4o-mini"})

    assert responder_enabled() is True


def test_should_answer_checks_the_line_and_the_call(make_call: Any) -> None:
    call = inbound_call(make_call)
    line = transcript_add(call=call, speaker="user", text="hi")

    assert responder_should_answer(call, line) is True
    assert (
        responder_should_answer(call, transcript_add(call=call, speaker="bot", text="hi")) is False
    )
    call_finalize(call=call, reason="completed")
    assert responder_should_answer(call, line) is False


# --- supersession (plugin issue #112360) and failures ------------------------------------


def _newer_line(call: Call) -> Callable[[], None]:
    return lambda: transcript_add(call=call, speaker="user", text="actually, wait")


def _hang_up(call: Call) -> Callable[[], None]:
    return lambda: call_finalize(call=call, reason="hangup-user")


def _continue_turn(call: Call) -> Callable[[], None]:
    return lambda: Call.objects.filter(pk=call.pk).update(turn_token="turn-9")


@pytest.mark.parametrize("meanwhile", [_newer_line, _hang_up, _continue_turn])
def test_a_superseded_reply_is_discarded(
    enabled: MockProvider,
    llm: FakeLLM,
    make_call: Any,
    caplog: pytest.LogCaptureFixture,
    meanwhile: Callable[[Call], Callable[[], None]],
) -> None:
    call = inbound_call(make_call)
    llm.during = meanwhile(call)

    with caplog.at_level(logging.INFO):
        speech(call, "what are your hours?")

    assert len(llm.requests) == 1
    assert spoken(enabled) == []
    assert bot_lines(call) == []
    assert "Discarding superseded automatic reply" in caplog.text


def test_a_line_already_superseded_is_not_sent_to_the_llm(
    enabled: MockProvider, llm: FakeLLM, make_call: Any
) -> None:
    call = inbound_call(make_call)
    old = transcript_add(call=call, speaker="user", text="first")
    transcript_add(call=call, speaker="user", text="second")

    responder_run(call_id=call.call_id, entry_id=old.pk)

    assert llm.requests == []


def test_only_earlier_lines_are_history(
    enabled: MockProvider, llm: FakeLLM, make_call: Any
) -> None:
    call = inbound_call(make_call)
    transcript_add(call=call, speaker="user", text="consumed by a turn", turn_token="t")

    speech(call, "now?")

    assert [m["content"] for m in llm.messages()[1:]] == ["consumed by a turn", "now?"]


@pytest.mark.parametrize("status", [500, 401])
def test_an_llm_error_says_nothing_and_raises_nothing(
    enabled: MockProvider,
    llm: FakeLLM,
    make_call: Any,
    status: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    llm.status = status
    call = inbound_call(make_call)

    with caplog.at_level(logging.WARNING):
        speech(call, "hello?")

    assert spoken(enabled) == []
    assert bot_lines(call) == []
    assert "automatic reply failed" in caplog.text
    call.refresh_from_db()
    assert call.state == "listening"


def test_an_llm_timeout_says_nothing(enabled: MockProvider, llm: FakeLLM, make_call: Any) -> None:
    def slow() -> None:
        raise httpx.ReadTimeout("slow")

    llm.during = slow
    call = inbound_call(make_call)

    speech(call, "hello?")

    assert spoken(enabled) == []


def test_an_unsupported_provider_says_nothing(
    configure: Any, enabled: MockProvider, llm: FakeLLM, make_call: Any
) -> None:
    configure({**MODEL_CONFIG, "responseModel": "anthropic/claude"})
    call = inbound_call(make_call)

    speech(call, "hello?")

    assert llm.requests == []
    assert spoken(enabled) == []


def test_a_carrier_failure_while_speaking_raises_nothing(
    enabled: MockProvider, llm: FakeLLM, make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from providers.errors import ProviderError

    def broken(*args: Any, **kwargs: Any) -> None:
        raise ProviderError("carrier down")

    monkeypatch.setattr(enabled, "play_text", broken)
    call = inbound_call(make_call)

    speech(call, "hello?")

    call.refresh_from_db()
    assert call.state == "listening"
    assert "lastAutoReplyLatencyMs" not in call.metadata


# --- dispatch ----------------------------------------------------------------------------


def test_dispatch_waits_for_the_transaction_to_commit(
    monkeypatch: pytest.MonkeyPatch, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    queued: list[tuple[Any, ...]] = []
    monkeypatch.setattr(tasks.respond_to_caller, "delay", lambda *args: queued.append(args))

    with django_capture_on_commit_callbacks() as callbacks:
        with transaction.atomic():
            responder.DISPATCH("call-1", 7)
        assert queued == []

    assert len(callbacks) == 1
    callbacks[0]()
    assert queued == [("call-1", 7)]


def test_only_lines_to_answer_are_dispatched(
    configure: Any, make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(MODEL_CONFIG)
    dispatched: list[tuple[Any, ...]] = []
    monkeypatch.setattr(responder, "DISPATCH", lambda *args: dispatched.append(args))
    call = inbound_call(make_call)
    answered = transcript_add(call=call, speaker="user", text="hi")
    consumed = transcript_add(call=call, speaker="user", text="yes", turn_token="t")

    responder_schedule(call=call, entry=answered)
    responder_schedule(call=call, entry=consumed)

    assert dispatched == [(call.call_id, answered.pk)]


def test_the_embedded_default_answers_on_a_reused_background_thread(
    monkeypatch: pytest.MonkeyPatch, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.REDIS_URL = ""
    seen: list[tuple[str, int, threading.Thread]] = []
    ran = threading.Semaphore(0)

    def fake_run(*, call_id: str, entry_id: int) -> None:
        seen.append((call_id, entry_id, threading.current_thread()))
        ran.release()

    monkeypatch.setattr(responder, "responder_run", fake_run)

    for entry_id in (7, 8):
        with django_capture_on_commit_callbacks(execute=True):
            responder.DISPATCH("call-1", entry_id)
        assert ran.acquire(timeout=5)

    assert [(call_id, entry_id) for call_id, entry_id, _ in seen] == [("call-1", 7), ("call-1", 8)]
    first, second = (thread for _, _, thread in seen)
    assert first is not threading.current_thread()
    # Threads of the responder's pool, not one started per reply and named after it.
    assert first.name.startswith("voicecall-responder")
    assert second.name.startswith("voicecall-responder")


def test_with_a_broker_the_reply_is_a_celery_task(
    monkeypatch: pytest.MonkeyPatch, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    queued: list[tuple[Any, ...]] = []
    monkeypatch.setattr(tasks.respond_to_caller, "delay", lambda *args: queued.append(args))

    with django_capture_on_commit_callbacks(execute=True):
        responder.DISPATCH("call-1", 7)

    assert queued == [("call-1", 7)]


def test_the_task_runs_the_responder(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(tasks, "responder_run", lambda **kwargs: calls.append(kwargs))

    tasks.respond_to_caller.apply(args=("call-1", 7)).get()

    assert calls == [{"call_id": "call-1", "entry_id": 7}]


# --- through the webhook -----------------------------------------------------------------


def test_a_webhook_speech_event_on_an_accepted_inbound_call_is_answered(
    client: Client, enabled: MockProvider, configure: Any, llm: FakeLLM
) -> None:
    configure({**MODEL_CONFIG, "inboundPolicy": "open", "inboundGreeting": "Acme, hello."})

    def post(item: dict[str, Any]) -> None:
        response = client.post(
            "/voice/webhook", json.dumps({"event": item}), content_type="application/json"
        )
        assert response.status_code == 200

    post(
        {
            "type": "call.initiated",
            "callId": "CA-in",
            "direction": "inbound",
            "from": CALLER,
            "to": OUR_NUMBER,
        }
    )
    post({"type": "call.answered", "callId": "CA-in"})
    post(
        {
            "type": "call.speech",
            "callId": "CA-in",
            "transcript": "Are you open today?",
            "isFinal": True,
        }
    )

    assert spoken(enabled) == [
        {"text": "Acme, hello.", "listen_after": True},
        {"text": REPLY, "listen_after": True},
    ]
    call = Call.objects.get()
    assert [(e.speaker, e.text) for e in call.transcript.all()] == [
        ("bot", "Acme, hello."),
        ("user", "Are you open today?"),
        ("bot", REPLY),
    ]
    assert call.state == "listening"
    assert llm.messages()[-1] == {"role": "user", "content": "Are you open today?"}


@pytest.mark.django_db(transaction=True)
def test_the_embedded_thread_speaks_the_reply_on_its_own_connection(
    configure: Any, mock_carrier: MockProvider, llm: FakeLLM, make_call: Any, settings: Any
) -> None:
    settings.REDIS_URL = ""
    configure(MODEL_CONFIG)
    call = inbound_call(make_call)

    speech(call, "Are you open?")

    # The reply runs on one of the responder's reused threads: wait for its last write, the
    # latency after the words are out (waiting for the line alone raced it).
    deadline = time.monotonic() + 10
    while (
        "lastAutoReplyLatencyMs" not in Call.objects.get(pk=call.pk).metadata
        and time.monotonic() < deadline
    ):
        time.sleep(0.02)
    assert bot_lines(call) == [REPLY]
    call.refresh_from_db()
    assert "lastAutoReplyLatencyMs" in call.metadata
    assert spoken(mock_carrier) == [{"text": REPLY, "listen_after": True}]


# --- per-number routes (docs/plugin-behaviour.md, "Per-number routes") --------------------


def test_the_dialled_numbers_route_chooses_the_model_and_prompt(
    configure: Any, enabled: MockProvider, llm: FakeLLM, make_call: Any
) -> None:
    configure(
        {
            **MODEL_CONFIG,
            "numbers": {
                OUR_NUMBER: {
                    "responseModel": "openai/gpt-4.1-mini",
                    "responseSystemPrompt": "You are the front desk.",
                }
            },
        }
    )
    call = inbound_call(make_call, metadata={"numberRouteKey": OUR_NUMBER})
    speech(call, "Hi")
    request = json.loads(llm.requests[0].content)
    assert request["model"] == "gpt-4.1-mini"
    assert request["messages"][0]["content"].startswith("You are the front desk.")


# --- one voice answers -------------------------------------------------------------------


def test_with_realtime_voice_the_responder_is_never_asked(
    configure: Any, enabled: MockProvider, llm: FakeLLM, make_call: Any
) -> None:
    """The model answers from the stream; a chat reply on top would be a second voice."""
    configure(
        {
            **MODEL_CONFIG,
            "inboundPolicy": "open",
            "realtime": {"enabled": True, "providers": {"openai": {"apiKey": "sk-rt"}}},
        }
    )
    call = inbound_call(make_call, stream_id="MZ-1")

    speech(call, "What time do you close?")

    assert llm.requests == [] and spoken(enabled) == []
    assert bot_lines(call) == []


def test_a_realtime_call_whose_stream_failed_is_answered_by_the_responder(
    configure: Any, enabled: MockProvider, llm: FakeLLM, make_call: Any
) -> None:
    configure(
        {
            **MODEL_CONFIG,
            "inboundPolicy": "open",
            "realtime": {"enabled": True, "providers": {"openai": {"apiKey": "sk-rt"}}},
        }
    )
    call = inbound_call(make_call, metadata={"streamFailed": True})

    speech(call, "What time do you close?")

    assert spoken(enabled) == [{"text": REPLY, "listen_after": True}]


def test_two_statements_come_before_the_model_is_asked(
    enabled: MockProvider, llm: FakeLLM, make_call: Any
) -> None:
    """The caller's newest line with its call, then the history: each statement before the
    chat request is reply latency (docs/performance.md, "Reply latency")."""
    call = inbound_call(make_call)
    transcript_add(call=call, speaker="bot", text="Hello, how can I help?")
    line = transcript_add(call=call, speaker="user", text="When are you open?")
    before_request: list[int] = []
    with CaptureQueriesContext(connection) as statements:
        llm.during = lambda: before_request.append(len(statements.captured_queries))
        responder_run(call_id=call.call_id, entry_id=line.pk)

    assert before_request == [2]
    assert llm.messages()[-1] == {"role": "user", "content": "When are you open?"}


def test_a_reply_for_an_unknown_or_malformed_call_id_asks_nothing(
    enabled: MockProvider, llm: FakeLLM, make_call: Any
) -> None:
    line = transcript_add(call=inbound_call(make_call), speaker="user", text="hi")
    responder_run(call_id=str(uuid.uuid4()), entry_id=line.pk)
    responder_run(call_id="not-a-uuid", entry_id=line.pk)
    assert llm.requests == []

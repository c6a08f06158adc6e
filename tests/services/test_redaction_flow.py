"""Redaction end to end through the mock carrier's webhook and the RPC: the record keeps the
redacted line, while the automatic reply and `continue` get what the caller said.

docs/architecture.md, "Retention and redaction".
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from calls.models import Call, CallEvent, TranscriptEntry
from calls.services import auto_reply
from calls.services.auto_reply_worker import responder_run
from tests.api.test_rpc import rpc
from tests.fakes.llm import REPLY, FakeLLM

pytestmark = pytest.mark.django_db

CALLER = "+14155550100"
OUR_NUMBER = "+14155550199"
SAID = "Call me back on (415) 555-2671 or mail bob@example.com"
STORED = "Call me back on [phone] or mail [email]"
REDACTING = {"retention": {"redact": ["phone", "email", "card"]}}
MODEL = {
    "responseModel": "openai/gpt-4o-mini",
    "tts": {"providers": {"openai": {"apiKey": "sk-test"}}},
}


@pytest.fixture
def inline_replies(
    monkeypatch: pytest.MonkeyPatch, configure: Any, mock_carrier: Any, llm: FakeLLM
) -> list[tuple[Any, ...]]:
    """A redacting responder whose replies run before the webhook returns; the dispatched
    arguments are kept."""
    configure({**MODEL, **REDACTING, "inboundPolicy": "open", "inboundGreeting": "Hello."})
    dispatched: list[tuple[Any, ...]] = []

    def run(call_id: str, entry_id: int, said: str | None = None) -> None:
        dispatched.append((call_id, entry_id, said))
        responder_run(call_id=call_id, entry_id=entry_id, said=said)

    monkeypatch.setattr(auto_reply, "DISPATCH", run)
    return dispatched


def webhook(api: APIClient, **event: Any) -> None:
    response = api.post(
        "/voice/webhook", json.dumps({"event": event}), content_type="application/json"
    )
    assert response.status_code == 200, response.content


def test_the_reply_answers_the_callers_words_while_the_record_is_redacted(
    api: APIClient, llm: FakeLLM, inline_replies: list[tuple[Any, ...]]
) -> None:
    webhook(api, type="call.initiated", callId="CA-1", direction="inbound", **{"from": CALLER})
    webhook(api, type="call.answered", callId="CA-1")
    webhook(api, type="call.speech", callId="CA-1", transcript=SAID, isFinal=True)

    assert llm.messages()[-1] == {"role": "user", "content": SAID}
    call = Call.objects.get()
    assert [(e.speaker, e.text) for e in call.transcript.all()] == [
        ("bot", "Hello."),
        ("user", STORED),
        ("bot", REPLY),
    ]
    speech = CallEvent.objects.get(call=call, type="call.speech")
    assert speech.payload["transcript"] == STORED
    # Later replies are told the earlier lines as the record keeps them.
    webhook(api, type="call.speech", callId="CA-1", transcript="Did you get that?", isFinal=True)
    assert {"role": "user", "content": STORED} in llm.messages()


def test_a_line_with_nothing_to_hide_sends_no_words_with_the_job(
    api: APIClient, llm: FakeLLM, inline_replies: list[tuple[Any, ...]]
) -> None:
    webhook(api, type="call.initiated", callId="CA-1", direction="inbound", **{"from": CALLER})
    webhook(api, type="call.answered", callId="CA-1")
    webhook(api, type="call.speech", callId="CA-1", transcript="Are you open?", isFinal=True)

    assert [said for _, _, said in inline_replies] == [None]
    assert llm.messages()[-1] == {"role": "user", "content": "Are you open?"}


def test_continue_returns_the_callers_words_and_stores_them_redacted(
    api: APIClient, configure: Any, mock_carrier: Any, make_call: Any, fake_clock: Any
) -> None:
    configure(REDACTING)
    call = make_call(state="answered", to_number=CALLER)

    def caller_answers(clock: Any) -> None:
        row = Call.objects.get(pk=call.pk)
        if row.turn_token and not TranscriptEntry.objects.filter(speaker="user").exists():
            webhook(
                api,
                type="call.speech",
                callId=call.call_id,
                transcript=SAID,
                turnToken=row.turn_token,
            )

    fake_clock.on_sleep.append(caller_answers)
    reply = rpc(api, "voicecall.continue", {"callId": call.call_id, "message": "Your number?"})

    assert reply["result"] == {"success": True, "transcript": SAID}
    call.refresh_from_db()
    assert "turnAnswer" not in call.metadata  # taken by the waiting continue
    assert TranscriptEntry.objects.get(call=call, speaker="user").text == STORED
    transcript = api.get(f"/api/calls/{call.call_id}/transcript/").json()
    assert SAID not in json.dumps(transcript)


def test_continue_result_returns_the_callers_words(
    api: APIClient,
    configure: Any,
    mock_carrier: Any,
    make_call: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure(REDACTING)
    # The prompt's thread is not needed here: the answer is posted directly.
    monkeypatch.setattr(
        "calls.services.turns.threading.Thread",
        lambda **kwargs: type("NoThread", (), {"start": lambda self: None})(),
    )
    call = make_call(state="listening", to_number=CALLER)
    started = rpc(api, "voicecall.continue.start", {"callId": call.call_id, "message": "Email?"})
    token = Call.objects.get(pk=call.pk).turn_token

    webhook(api, type="call.speech", callId=call.call_id, transcript=SAID, turnToken=token)

    result = rpc(
        api, "voicecall.continue.result", {"operationId": started["result"]["operationId"]}
    )
    assert result["result"]["transcript"] == SAID
    assert TranscriptEntry.objects.get(call=call, speaker="user").text == STORED

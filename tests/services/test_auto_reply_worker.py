"""Generating and speaking one automatic reply (calls/services/auto_reply_worker.py).

`responder_run` is called directly, as the thread or Celery task calls it: it reads the
call and the caller's line again, asks the LLM (a FakeLLM at the HTTP boundary), and
speaks the reply unless the line was superseded meanwhile. When to run it at all is
tests/services/test_auto_reply.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from calls.call_metadata import LAST_AUTO_REPLY_LATENCY_MS as LATENCY_KEY
from calls.models import Call, TranscriptEntry
from calls.services.auto_reply_worker import (
    HISTORY_LIMIT,
    reply_api_key,
    responder_run,
)
from calls.services.lifecycle import transcript_add
from calls.services.turn_records import turn_caller_spoke
from tests.fakes.llm import REPLY, FakeLLM

pytestmark = pytest.mark.django_db

MODEL_CONFIG = {
    "responseModel": "openai/gpt-4o-mini",
    "tts": {"providers": {"openai": {"apiKey": "sk-config"}}},
}


@pytest.fixture
def model(configure: Any, mock_carrier: Any, llm: FakeLLM) -> Any:
    configure(MODEL_CONFIG)
    return mock_carrier


def _caller_says(make_call: Any, text: str = "Are you open?", **fields: Any) -> tuple[Call, Any]:
    """A caller's final line and the turn it opens, as a speech event writes them."""
    call = make_call(**{"direction": "inbound", "state": "listening", **fields})
    line = transcript_add(call=call, speaker="user", text=text)
    turn_caller_spoke(call=call, entry=line)
    return call, line


def test_the_configs_key_wins_over_the_environments(configure: Any, settings: Any) -> None:
    settings.OPENAI_API_KEY = "sk-env"
    assert reply_api_key(configure(MODEL_CONFIG)) == "sk-config"
    assert reply_api_key(configure({"responseModel": "openai/gpt-4o-mini"})) == "sk-env"
    settings.OPENAI_API_KEY = ""
    assert reply_api_key(configure({})) == ""


def test_the_reply_is_spoken_listened_after_and_timed(
    model: Any, llm: FakeLLM, make_call: Any, fake_clock: Any
) -> None:
    call, line = _caller_says(make_call)
    fake_clock.advance(seconds=1.25)
    responder_run(call_id=call.call_id, entry_id=line.pk)
    assert model.sent[0] == ("play_text", {"text": REPLY, "listen_after": True})
    call.refresh_from_db()
    assert call.state == "listening"
    assert call.metadata[LATENCY_KEY] == 1250
    assert llm.messages()[-1] == {"role": "user", "content": "Are you open?"}


def test_an_unknown_call_or_line_does_nothing(model: Any, llm: FakeLLM, make_call: Any) -> None:
    call, line = _caller_says(make_call)
    responder_run(call_id="00000000-0000-4000-8000-000000000000", entry_id=line.pk)
    responder_run(call_id=call.call_id, entry_id=line.pk + 100)
    other, _ = _caller_says(make_call)
    responder_run(call_id=other.call_id, entry_id=line.pk)  # another call's line
    assert llm.requests == [] and model.sent == []


def test_history_is_capped_and_keeps_the_newest_lines(
    model: Any, llm: FakeLLM, make_call: Any
) -> None:
    call = make_call(direction="inbound", state="listening")
    for n in range(HISTORY_LIMIT + 5):
        transcript_add(call=call, speaker="user", text=f"line {n}")
    transcript_add(call=call, speaker="bot", text="Go on.")
    line = transcript_add(call=call, speaker="user", text="now?")
    turn_caller_spoke(call=call, entry=line)
    responder_run(call_id=call.call_id, entry_id=line.pk)
    messages = llm.messages()[1:]
    assert len(messages) == HISTORY_LIMIT + 1
    assert messages[0]["content"] == "line 6" and messages[-1]["content"] == "now?"
    # Our own lines go as assistant turns in the spoken-output JSON shape.
    assert messages[-2] == {"role": "assistant", "content": '{"spoken": "Go on."}'}


def test_a_partial_line_is_not_history(model: Any, llm: FakeLLM, make_call: Any) -> None:
    call = make_call(direction="inbound", state="listening")
    transcript_add(call=call, speaker="user", text="half a sen", is_final=False)
    line = transcript_add(call=call, speaker="user", text="Hello?")
    responder_run(call_id=call.call_id, entry_id=line.pk)
    assert [m["content"] for m in llm.messages()[1:]] == ["Hello?"]


def test_the_route_of_the_dialled_number_picks_the_model_and_timeout(
    configure: Any, model: Any, llm: FakeLLM, make_call: Any
) -> None:
    configure(
        {
            **MODEL_CONFIG,
            "numbers": {"+15550000000": {"responseModel": "openai/gpt-4.1-mini"}},
        }
    )
    call, line = _caller_says(make_call, metadata={"numberRouteKey": "+15550000000"})
    responder_run(call_id=call.call_id, entry_id=line.pk)
    assert json.loads(llm.requests[0].content)["model"] == "gpt-4.1-mini"


def test_the_other_party_is_the_caller_or_the_callee(
    model: Any, llm: FakeLLM, make_call: Any
) -> None:
    inbound, line = _caller_says(make_call, from_number="+15550001111")
    responder_run(call_id=inbound.call_id, entry_id=line.pk)
    outbound, line = _caller_says(
        make_call, direction="outbound", mode="conversation", to_number="+15555550123"
    )
    responder_run(call_id=outbound.call_id, entry_id=line.pk)
    assert "+15550001111" in llm.messages(0)[0]["content"]
    assert "+15555550123" in llm.messages(1)[0]["content"]


def test_a_reply_superseded_while_the_model_thinks_is_dropped(
    model: Any, llm: FakeLLM, make_call: Any
) -> None:
    call, line = _caller_says(make_call)
    llm.during = lambda: transcript_add(call=call, speaker="user", text="wait, another thing")
    responder_run(call_id=call.call_id, entry_id=line.pk)
    assert len(llm.requests) == 1 and model.sent == []
    assert not TranscriptEntry.objects.filter(speaker="bot").exists()


def test_silence_from_the_model_says_nothing(model: Any, llm: FakeLLM, make_call: Any) -> None:
    llm.content = '{"spoken": ""}'
    call, line = _caller_says(make_call)
    responder_run(call_id=call.call_id, entry_id=line.pk)
    assert model.sent == []
    assert LATENCY_KEY not in Call.objects.get(pk=call.pk).metadata


# -- sessionScope: whose lines the responder is told (docs/plugin-behaviour.md) ----------

CALLER_KEY = "agent:main:voice:15550001111"


def _earlier_calls(make_call: Any) -> None:
    """A finished call from the same caller, and one from someone else, before this one."""
    mine = make_call(direction="inbound", state="completed", session_key=CALLER_KEY)
    transcript_add(call=mine, speaker="user", text="My name is Ada.")
    transcript_add(call=mine, speaker="bot", text="Hello Ada.")
    other = make_call(direction="inbound", state="completed", session_key="agent:main:voice:1")
    transcript_add(call=other, speaker="user", text="Someone else's secret.")


def _reply_history(scope: str, configure: Any, llm: FakeLLM, make_call: Any) -> list[str]:
    configure({**MODEL_CONFIG, "sessionScope": scope})
    _earlier_calls(make_call)
    call, line = _caller_says(make_call, "What is my name?", session_key=CALLER_KEY)
    responder_run(call_id=call.call_id, entry_id=line.pk)
    return [m["content"] for m in llm.messages()[1:]]


def test_per_phone_remembers_the_callers_earlier_calls_only(
    configure: Any, model: Any, llm: FakeLLM, make_call: Any
) -> None:
    assert _reply_history("per-phone", configure, llm, make_call) == [
        "My name is Ada.",
        '{"spoken": "Hello Ada."}',
        "What is my name?",
    ]


def test_per_call_tells_the_responder_only_this_calls_lines(
    configure: Any, model: Any, llm: FakeLLM, make_call: Any
) -> None:
    assert _reply_history("per-call", configure, llm, make_call) == ["What is my name?"]


def test_main_shares_every_call_filed_under_the_main_key(
    configure: Any, model: Any, llm: FakeLLM, make_call: Any
) -> None:
    configure({**MODEL_CONFIG, "sessionScope": "main"})
    first = make_call(direction="inbound", state="completed", session_key="agent:main:main")
    transcript_add(call=first, speaker="user", text="From the first caller.")
    call, line = _caller_says(make_call, "And me?", session_key="agent:main:main")
    responder_run(call_id=call.call_id, entry_id=line.pk)

    assert [m["content"] for m in llm.messages()[1:]] == ["From the first caller.", "And me?"]


def test_a_shared_history_keeps_the_same_bound(
    configure: Any, model: Any, llm: FakeLLM, make_call: Any
) -> None:
    configure(MODEL_CONFIG)
    earlier = make_call(direction="inbound", state="completed", session_key=CALLER_KEY)
    for n in range(HISTORY_LIMIT + 1):
        transcript_add(call=earlier, speaker="user", text=f"old {n}")
    call, line = _caller_says(make_call, "Now?", session_key=CALLER_KEY)
    transcript_add(call=call, speaker="bot", text="Later line")  # after the caller's line
    responder_run(call_id=call.call_id, entry_id=line.pk)

    contents = [m["content"] for m in llm.messages()[1:]]
    assert len(contents) == HISTORY_LIMIT + 1
    assert contents[0] == "old 1" and contents[-1] == "Now?"

"""Turn records (calls/services/turn_records.py): every stage stamped once, by what saw it.

docs/voice-path.md, "Turns". The stages are driven through the services that stamp them —
a caller's final line through event application, the responder's reply, carrier speech — with
the LLM faked at its HTTP boundary and the clock moved by hand.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from calls.exceptions import InvalidRequest
from calls.models import Call, Turn
from calls.services import auto_reply as responder
from calls.services.auto_reply import responder_run
from calls.services.events import event_apply
from calls.services.lifecycle import call_finalize, transcript_add
from calls.services.speech import speak
from calls.services.turn_records import (
    LatencyFilter,
    latency_summary,
    since_parse,
    turn_answered,
    turn_caller_spoke,
    turn_first_audio,
    turn_heard,
    turn_prompted,
    turn_reply_claim,
    turn_stages,
)
from providers.base import EventType, NormalizedEvent
from tests.fakes.llm import REPLY, FakeLLM
from tests.metrics_samples import sample

pytestmark = pytest.mark.django_db

MODEL_CONFIG = {
    "responseModel": "openai/gpt-4o-mini",
    "tts": {"providers": {"openai": {"apiKey": "sk-config"}}},
}


@pytest.fixture
def answering(configure: Any, mock_carrier: Any, llm: FakeLLM, monkeypatch: Any) -> Any:
    configure(MODEL_CONFIG)
    monkeypatch.setattr(
        responder,
        "DISPATCH",
        lambda call_id, entry_id: responder_run(call_id=call_id, entry_id=entry_id),
    )
    return mock_carrier


def _speech(call: Call, text: str, **fields: Any) -> None:
    event_apply(
        provider="mock",
        event=NormalizedEvent(
            type=EventType.SPEECH,
            id=str(uuid.uuid4()),
            call_id=call.call_id,
            transcript=text,
            **fields,
        ),
    )


def _inbound(make_call: Any) -> Call:
    return make_call(direction="inbound", state="listening", from_number="+15550001111")


def test_a_caller_turn_is_stamped_from_their_words_to_the_reply_being_said(
    answering: Any, make_call: Any, fake_clock: Any
) -> None:
    call = _inbound(make_call)
    stopped = fake_clock.now()
    fake_clock.advance(seconds=0.5)
    endpointed = fake_clock.now()
    fake_clock.advance(seconds=0.2)

    _speech(call, "When do you open?", speech_stopped_at=stopped, endpointed_at=endpointed)

    turn = Turn.objects.get(call=call)
    assert (turn.index, turn.initiator) == (1, "caller")
    assert (turn.caller_stopped_at, turn.endpointed_at) == (stopped, endpointed)
    assert turn.transcript_at == endpointed + timedelta(seconds=0.2)
    # The responder answered (carrier speech): reply ready, and the carrier took the words.
    assert turn.reply_ready_at is not None and turn.first_audio_at is not None
    line = call.transcript.get(speaker="bot")
    assert (line.text, turn.reply_utterance_id) == (REPLY, line.utterance_id)
    stages = turn_stages(turn)
    assert (stages["endpointingMs"], stages["transcriptMs"]) == (500, 200)
    assert stages["totalMs"] == 700  # stopped → first audio, the fake clock not moving after
    assert stages["playedMs"] is None  # carrier speech: not (yet) known to be heard


@pytest.mark.parametrize("meanwhile", ["nothing", "spoke-again", "ended", "continue", "answered"])
def test_a_reply_claims_its_turn_only_while_its_line_is_still_the_one_to_answer(
    make_call: Any, meanwhile: str
) -> None:
    call = _inbound(make_call)
    line = transcript_add(call=call, speaker="user", text="Do you deliver?")
    turn = turn_caller_spoke(call=call, entry=line)
    if meanwhile == "spoke-again":
        transcript_add(call=call, speaker="user", text="To Leeds, I mean.")
    elif meanwhile == "ended":
        call_finalize(call=call, reason="hangup-user")
    elif meanwhile == "continue":  # the gateway's `continue` took the conversation over
        Call.objects.filter(pk=call.pk).update(turn_token="turn-9")
    elif meanwhile == "answered":  # another reply to the same line got there first
        assert turn_reply_claim(call=call, entry_id=line.pk, utterance_id="first")

    claimed = turn_reply_claim(call=call, entry_id=line.pk, utterance_id="late")

    assert claimed is (meanwhile == "nothing")
    turn = Turn.objects.get(pk=turn.pk)
    expected = {"nothing": "late", "answered": "first"}.get(meanwhile, "")
    assert turn.reply_utterance_id == expected
    assert (turn.reply_ready_at is not None) is bool(expected)


def test_a_line_that_opened_no_caller_turn_is_never_claimed(make_call: Any) -> None:
    call = _inbound(make_call)
    # A line that answered a `continue` prompt is the gateway's, and opens no caller turn.
    line = transcript_add(call=call, speaker="user", text="Tuesday", turn_token="turn-1")
    assert not turn_reply_claim(call=call, entry_id=line.pk, utterance_id="u")


def test_turns_are_numbered_per_call_and_never_rewritten(
    answering: Any, make_call: Any, fake_clock: Any
) -> None:
    call = _inbound(make_call)
    _speech(call, "Hello?")
    first = Turn.objects.get(call=call)
    fake_clock.advance(seconds=5)
    _speech(call, "Are you there?")
    assert list(Turn.objects.filter(call=call).values_list("index", flat=True)) == [1, 2]
    assert Turn.objects.get(pk=first.pk).transcript_at == first.transcript_at
    # A stage reported twice keeps its first time.
    turn_first_audio(utterance_id=first.reply_utterance_id)
    assert Turn.objects.get(pk=first.pk).first_audio_at == first.first_audio_at


def test_a_continue_prompt_is_a_bot_turn_answered_by_the_caller(
    mock_carrier: Any, make_call: Any, fake_clock: Any
) -> None:
    call = make_call(state="listening")
    turn = turn_prompted(call=call, utterance_id="u-1")
    speak(call, "Which day suits you?", listen_after=True, utterance_id="u-1")
    fake_clock.advance(seconds=2)
    turn_heard(utterance_id="u-1")
    fake_clock.advance(seconds=1)
    turn_answered(call=call)
    turn.refresh_from_db()
    assert turn.initiator == "bot"
    assert turn.first_audio_at == turn.reply_ready_at
    assert (turn.heard_at - turn.first_audio_at) == timedelta(seconds=2)
    assert (turn.transcript_at - turn.heard_at) == timedelta(seconds=1)


def test_a_cut_reply_marks_the_turn_interrupted(mock_carrier: Any, make_call: Any) -> None:
    call = make_call(state="listening")
    turn = turn_prompted(call=call, utterance_id="u-2")
    turn_heard(utterance_id="u-2", interrupted=True)
    turn.refresh_from_db()
    assert turn.interrupted and turn.heard_at is not None


def test_latency_percentiles_per_stage_with_filters(
    mock_carrier: Any, make_call: Any, fake_clock: Any
) -> None:
    call = make_call(state="listening", provider="mock", direction="inbound")
    other = make_call(
        state="listening", provider="twilio", direction="outbound", provider_call_id="CA9"
    )
    for index, reply_ms in enumerate([100, 200, 300, 400], start=1):
        start = fake_clock.now()
        Turn.objects.create(
            call=call if index < 4 else other,
            index=index,
            initiator="caller",
            transcript_at=start,
            reply_ready_at=start + timedelta(milliseconds=reply_ms),
        )
    summary = latency_summary(LatencyFilter())
    assert summary["turns"] == 4
    assert summary["stages"]["replyMs"] == {"count": 4, "p50": 200, "p90": 400, "p99": 400}
    assert summary["stages"]["playedMs"] == {"count": 0, "p50": None, "p90": None, "p99": None}
    only_mock = latency_summary(LatencyFilter(provider="mock", direction="inbound"))
    assert only_mock["stages"]["replyMs"]["count"] == 3
    assert latency_summary(LatencyFilter(call_id=other.call_id))["turns"] == 1
    fake_clock.advance(hours=2)
    assert latency_summary(LatencyFilter(since=timedelta(hours=1)))["turns"] == 0


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("24h", 86400), ("7D", 604800)]
)
def test_since_reads_a_number_and_a_unit(text: str, seconds: int) -> None:
    assert since_parse(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "h", "24", "-1h", "1.5h", "24w", "9999999h", "1\x00h"])
def test_since_refuses_anything_else(text: str) -> None:
    with pytest.raises(InvalidRequest, match="since must be"):
        since_parse(text)


def test_the_api_lists_a_calls_turns_and_the_latency_summary(
    api: APIClient, answering: Any, make_call: Any
) -> None:
    call = _inbound(make_call)
    _speech(call, "Hi")
    turns = api.get(f"/api/calls/{call.call_id}/turns/").json()
    assert [t["index"] for t in turns] == [1]
    assert turns[0]["initiator"] == "caller" and turns[0]["replyMs"] is not None
    assert api.get("/api/latency/?since=24h&provider=mock").json()["turns"] == 1
    bad = api.get("/api/latency/?since=soon")
    assert bad.status_code == 400 and "since must be" in str(bad.json())
    assert api.get("/api/calls/00000000-0000-4000-8000-000000000000/turns/").status_code == 404


def test_the_latency_command_adds_the_stage_summary(
    answering: Any, make_call: Any, capsys: Any
) -> None:
    call = _inbound(make_call)
    _speech(call, "Hi")
    call_command("voicecall", "latency", "--since", "1h", "--call-id", call.call_id)
    out = capsys.readouterr().out
    assert '"turns": 1' in out and '"replyMs"' in out and '"recordsScanned"' in out


# --- voicecall_turn_seconds (calls/metrics.py) ----------------------------------------------

STAGES = ("endpointing", "transcript", "reply", "first_audio", "total", "played")


def _counts() -> dict[str, float]:
    return {stage: sample("voicecall_turn_seconds_count", stage=stage) for stage in STAGES}


def _grown(before: dict[str, float]) -> dict[str, float]:
    return {
        stage: count - before[stage] for stage, count in _counts().items() if count > before[stage]
    }


def test_each_turn_stage_is_observed_once_when_its_stamp_is_filled(
    answering: Any, make_call: Any, fake_clock: Any, django_capture_on_commit_callbacks: Any
) -> None:
    call = _inbound(make_call)
    stopped = fake_clock.now()
    fake_clock.advance(seconds=0.5)
    before = _counts()

    with django_capture_on_commit_callbacks(execute=True):
        _speech(
            call, "When do you open?", speech_stopped_at=stopped, endpointed_at=fake_clock.now()
        )
    # The caller's words and the responder's reply said by the carrier: every stage but played.
    grown = _grown(before)
    assert grown == {s: 1 for s in ("endpointing", "transcript", "reply", "first_audio", "total")}

    utterance = Turn.objects.get(call=call).reply_utterance_id
    with django_capture_on_commit_callbacks(execute=True):
        turn_heard(utterance_id=utterance)
        turn_heard(utterance_id=utterance)  # a duplicate report
        turn_first_audio(utterance_id=utterance)  # reported again: its stages are not
    assert _grown(before) == {**grown, "played": 1}

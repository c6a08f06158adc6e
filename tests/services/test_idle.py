"""calls/services/idle.py: realtime.idleHangupMs hangs up a realtime call whose caller said
nothing that long; every line the caller says moves the deadline on.

The deadline is set and renewed through the services the stream already calls
(`stream_attach`, `stream_heard`) and fired by the timer sweep.
"""

from __future__ import annotations

from typing import Any

import pytest

from calls.call_metadata import IDLE_HANGUP_AT
from calls.models import Call
from calls.services.idle import idle_sweep
from calls.services.streams import stream_attach, stream_heard
from calls.services.timers import timers_sweep
from providers.errors import ProviderError

pytestmark = pytest.mark.django_db

REALTIME = {
    "inboundPolicy": "open",
    "realtime": {"enabled": True, "idleHangupMs": 5000, "providers": {"openai": {"apiKey": "k"}}},
}


@pytest.fixture
def realtime(configure: Any, mock_carrier: Any) -> Any:
    configure(REALTIME)
    return mock_carrier


def _attached(make_call: Any) -> Call:
    call = make_call(state="active", stream_token="tok")
    stream_attach(provider_call_id=call.provider_call_id, token="tok", stream_id="MZ-1")
    call.refresh_from_db()
    return call


def _hang_ups(carrier: Any) -> list[str]:
    return [fields["provider_call_id"] for op, fields in carrier.sent if op == "hang_up"]


def test_a_silent_caller_is_hung_up_once_the_idle_time_passed(
    realtime: Any, fake_clock: Any, make_call: Any
) -> None:
    call = _attached(make_call)

    fake_clock.advance(milliseconds=4999)
    assert timers_sweep().fired.get("realtime_idle") is None
    fake_clock.advance(milliseconds=1)
    report = timers_sweep()

    assert report.fired["realtime_idle"] == 1
    assert _hang_ups(realtime) == [call.provider_call_id]
    call.refresh_from_db()
    assert (call.state, call.end_reason) == ("hangup-bot", "hangup-bot")


def test_each_line_the_caller_says_moves_the_deadline_on(
    realtime: Any, fake_clock: Any, make_call: Any
) -> None:
    call = _attached(make_call)
    fake_clock.advance(seconds=4)
    stream_heard(call_id=call.call_id, text="Still here", is_final=True)

    fake_clock.advance(seconds=4)  # 8 s after the attach, 4 s after the caller spoke
    timers_sweep()
    assert _hang_ups(realtime) == []

    fake_clock.advance(seconds=1)
    timers_sweep()
    assert _hang_ups(realtime) == [call.provider_call_id]


@pytest.mark.parametrize(("text", "final"), [("half a sen", False), ("   ", True)])
def test_partials_and_blank_lines_are_not_the_caller_speaking(
    realtime: Any, fake_clock: Any, make_call: Any, text: str, final: bool
) -> None:
    call = _attached(make_call)
    fake_clock.advance(seconds=4)
    stream_heard(call_id=call.call_id, text=text, is_final=final)

    fake_clock.advance(seconds=1)
    timers_sweep()

    assert _hang_ups(realtime) == [call.provider_call_id]


def test_a_second_sweep_does_not_hang_up_twice(
    realtime: Any, fake_clock: Any, make_call: Any
) -> None:
    _attached(make_call)
    fake_clock.advance(seconds=6)

    assert idle_sweep(now=fake_clock.now()) == 1
    assert idle_sweep(now=fake_clock.now()) == 0
    assert len(_hang_ups(realtime)) == 1


def test_a_refused_hang_up_stays_due_for_the_next_sweep(
    realtime: Any, fake_clock: Any, make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    call = _attached(make_call)
    fake_clock.advance(seconds=6)

    def refuse(target: Any) -> None:
        raise ProviderError("carrier down", retryable=True)

    with monkeypatch.context() as patch:
        patch.setattr(realtime, "hang_up", refuse)
        assert idle_sweep(now=fake_clock.now()) == 0
    call.refresh_from_db()
    assert call.state == "active" and IDLE_HANGUP_AT in call.metadata

    assert idle_sweep(now=fake_clock.now()) == 1


@pytest.mark.parametrize(
    "raw",
    [
        {"realtime": {"enabled": False, "idleHangupMs": 5000}},  # the rule is realtime's
        {**REALTIME, "realtime": {**REALTIME["realtime"], "idleHangupMs": None}},
    ],
    ids=["not-realtime", "no-idleHangupMs"],
)
def test_without_realtime_idle_hang_up_nothing_is_set_or_ended(
    configure: Any, mock_carrier: Any, fake_clock: Any, make_call: Any, raw: dict[str, Any]
) -> None:
    configure(raw)
    call = _attached(make_call)

    fake_clock.advance(hours=1)
    idle_sweep(now=fake_clock.now())

    assert IDLE_HANGUP_AT not in call.metadata
    assert _hang_ups(mock_carrier) == []


def test_an_ended_call_is_left_alone(realtime: Any, fake_clock: Any, make_call: Any) -> None:
    call = _attached(make_call)
    Call.objects.filter(pk=call.pk).update(state="completed", end_reason="completed")

    fake_clock.advance(seconds=6)

    assert idle_sweep(now=fake_clock.now()) == 0
    assert _hang_ups(realtime) == []

"""Whether and where a call streams (calls/services/stream_plans.py), called directly.

Streaming needs streaming.enabled, a public URL and a carrier with a media codec; the plan
carries the stream URL and a fresh token for that one stream; while streams hold the line
(maxConcurrentCalls), inbound callers wait in the call-waiting queue and the longest-waiting
one is brought back when it frees. The Twilio driver plays the carrier (its REST API fake).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from calls.carrier import set_provider
from calls.models import Call
from calls.services.stream_plans import (
    line_busy,
    stream_or_hold,
    stream_plan,
    stream_url,
    streaming_possible,
    waiting_resume,
)
from tests.fakes.carriers.twilio import TwilioDriver

pytestmark = pytest.mark.django_db

STREAMING = {"enabled": True, "providers": {"openai": {"apiKey": "sk-test"}}}


@pytest.fixture
def twilio(configure: Any) -> TwilioDriver:
    """Twilio with streaming on, one stream at a time."""
    driver = TwilioDriver()
    cfg = configure(driver.config(streaming=STREAMING, maxConcurrentCalls=1))
    set_provider(driver.adapter(cfg))
    return driver


def _call(make_call: Any, **fields: Any) -> Call:
    return make_call(provider="twilio", provider_call_id=None, **fields)


def test_the_mock_carrier_never_streams(mock_carrier: Any) -> None:
    assert streaming_possible() is False


def test_twilio_with_streaming_on_streams_to_the_public_origin(twilio: TwilioDriver) -> None:
    assert streaming_possible() is True
    assert stream_url() == "wss://voice.example.test/voice/stream"


def test_every_plan_carries_a_fresh_token_that_replaces_the_unused_one(
    twilio: TwilioDriver, make_call: Any
) -> None:
    call = _call(make_call)
    first, second = stream_plan(call), stream_plan(call)
    assert first is not None and second is not None
    assert first.url == "wss://voice.example.test/voice/stream"
    assert re.fullmatch("[0-9a-f]{32}", first.token)  # Plivo's extraHeaders take [A-Za-z0-9]
    assert re.fullmatch("[0-9a-f]{32}", second.token)
    assert second.token != first.token  # one token per stream, not per call
    assert Call.objects.get(pk=call.pk).stream_token == second.token  # the first is void
    assert stream_plan(_call(make_call)).token not in (first.token, second.token)  # type: ignore[union-attr]


def test_an_owed_commands_retries_carry_the_token_of_its_first_attempt(
    twilio: TwilioDriver, make_call: Any
) -> None:
    # Telnyx runs a command sent again under the same command_id once: a retry's token
    # must be the one the carrier may already hold.
    call, other = _call(make_call), _call(make_call)
    first = stream_plan(call, command_key="k-1")
    stream_plan(call)  # another plan in between replaces it...
    retry = stream_plan(call, command_key="k-1")
    assert first is not None and retry is not None and retry.token == first.token
    assert Call.objects.get(pk=call.pk).stream_token == first.token  # ...and the retry rearms it
    assert re.fullmatch("[0-9a-f]{32}", first.token)
    assert stream_plan(call, command_key="k-2").token != first.token  # type: ignore[union-attr]
    assert stream_plan(other, command_key="k-1").token != first.token  # type: ignore[union-attr]


def test_a_stream_replacing_the_attached_one_gets_a_plan_of_its_own(
    twilio: TwilioDriver, make_call: Any
) -> None:
    call = _call(make_call, stream_id="MZ-1")
    assert stream_plan(call) is None
    plan = stream_plan(call, replacing=True)
    assert plan is not None and Call.objects.get(pk=call.pk).stream_token == plan.token
    assert stream_plan(_call(make_call, state="completed"), replacing=True) is None


def test_no_plan_for_an_ended_call_or_one_already_streaming(
    twilio: TwilioDriver, make_call: Any
) -> None:
    assert stream_plan(_call(make_call, state="completed")) is None
    assert stream_plan(_call(make_call, stream_id="MZ-1")) is None


def test_an_inbound_caller_waits_while_another_stream_holds_the_line(
    twilio: TwilioDriver, make_call: Any
) -> None:
    _call(make_call, stream_id="MZ-1")
    caller = _call(make_call, direction="inbound", state="ringing")
    assert line_busy(caller) is True
    assert stream_or_hold(caller) == (None, True)
    assert Call.objects.get(pk=caller.pk).waiting is True


def test_an_outbound_call_is_never_parked(twilio: TwilioDriver, make_call: Any) -> None:
    _call(make_call, stream_id="MZ-1")
    outbound = _call(make_call)
    plan, hold = stream_or_hold(outbound)
    assert plan is not None and hold is False
    assert Call.objects.get(pk=outbound.pk).waiting is False


def test_a_free_line_streams_the_inbound_caller_at_once(
    twilio: TwilioDriver, make_call: Any
) -> None:
    caller = _call(make_call, direction="inbound", state="ringing")
    plan, hold = stream_or_hold(caller)
    assert plan is not None and hold is False


def test_the_longest_waiting_caller_is_resumed_once_the_line_frees(
    twilio: TwilioDriver, make_call: Any, fake_clock: Any
) -> None:
    holder = _call(make_call, stream_id="MZ-1")
    earlier = fake_clock.now() - timedelta(minutes=2)
    first = _call(make_call, direction="inbound", waiting=True, started_at=earlier)
    Call.objects.filter(pk=first.pk).update(provider_call_id="CA-first")
    second = _call(make_call, direction="inbound", waiting=True, started_at=fake_clock.now())
    Call.objects.filter(pk=second.pk).update(provider_call_id="CA-second")

    assert waiting_resume() == 0  # the line is still held
    Call.objects.filter(pk=holder.pk).update(stream_id="")
    assert waiting_resume() == 1

    [resumed] = twilio.api.requests
    assert resumed.url.path.endswith("/Calls/CA-first.json")
    assert parse_qs(resumed.content.decode())["Url"] == [first.webhook_url]
    waiting = dict(Call.objects.values_list("pk", "waiting"))
    assert (waiting[first.pk], waiting[second.pk]) == (False, True)


def test_a_caller_the_carrier_could_not_resume_keeps_waiting(
    twilio: TwilioDriver, make_call: Any
) -> None:
    twilio.api.respond = lambda request: httpx.Response(
        500, json={"code": 20500, "status": 500, "message": "Internal Server Error"}
    )
    caller = _call(make_call, direction="inbound", waiting=True)
    Call.objects.filter(pk=caller.pk).update(provider_call_id="CA-1")
    assert waiting_resume() == 0
    assert Call.objects.get(pk=caller.pk).waiting is True
    assert len(twilio.api.requests) >= 1

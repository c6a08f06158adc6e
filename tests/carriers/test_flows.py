"""Whole-call flows per carrier: signed carrier webhooks through the Django test client, the
real adapter talking to a fake carrier REST API, the services and the database in between."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from calls.models import Call, CallEvent, ReplayKey, TranscriptEntry
from calls.services.dialling import call_initiate
from calls.services.timers import calls_restore, timers_sweep
from calls.services.turns import call_continue
from tests.carriers.conftest import Carrier
from tests.fakes.carriers.base import CALLEE, FRIEND, GREETING, OUR_NUMBER, STRANGER, CarrierDriver

CARRIERS = ("twilio", "telnyx", "plivo")


def carriers(**bugs: str) -> pytest.MarkDecorator:
    """Parametrise over every carrier; `bugs` maps a carrier to the BUG reason of a known
    failure there (strict xfail, so the test reports when the bug is fixed)."""
    return pytest.mark.parametrize(
        "start_carrier",
        [
            pytest.param(
                name,
                id=name,
                marks=[pytest.mark.xfail(strict=True, reason=bugs[name])] if name in bugs else [],
            )
            for name in CARRIERS
        ],
        indirect=True,
    )


every_carrier = carriers()

pytestmark = pytest.mark.django_db

NOTICE = "Your parcel arrives tomorrow between nine and eleven."
OPENING = "Hi, this is the booking assistant."


def rpc(api: APIClient, method: str, params: dict[str, Any]) -> dict[str, Any]:
    response = api.post(
        "/api/rpc", {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()


def deliver(client: Client, carrier: CarrierDriver, deliveries: list[Any]) -> list[Any]:
    responses = carrier.post_all(client, deliveries)
    for response in responses:
        assert response.status_code == 200, (response.status_code, response.content)
    return responses


def spoken_texts(carrier: CarrierDriver) -> list[str]:
    return [text for _, text in carrier.spoken()]


def state_of(call: Call) -> str:
    call.refresh_from_db()
    return call.state


def lines(call: Call) -> list[tuple[str, str]]:
    return [(e.speaker, e.text) for e in TranscriptEntry.objects.filter(call=call)]


# --- outbound notify --------------------------------------------------------------------------


@every_carrier
def test_outbound_notify_speaks_the_message_once_and_ends(
    client: Client, api: APIClient, carrier: CarrierDriver, fake_clock: Any
) -> None:
    reply = rpc(api, "voicecall.initiate", {"to": CALLEE, "message": NOTICE, "mode": "notify"})
    assert reply["result"]["initiated"] is True
    call = Call.objects.get(public_id=reply["result"]["callId"])
    assert (call.state, call.mode, call.to_number, call.from_number) == (
        "initiated",
        "notify",
        CALLEE,
        OUR_NUMBER,
    )
    assert call.provider_call_id  # what the fake carrier API answered

    deliver(client, carrier, carrier.initiated(call))
    assert state_of(call) == "initiated"
    if deliver(client, carrier, carrier.ringing(call)):  # not every carrier reports ringing
        assert state_of(call) == "ringing"
    deliver(client, carrier, carrier.answered(call))
    call.refresh_from_db()
    assert call.answered_at is not None
    assert call.state in ("answered", "speaking", "listening")

    # Exactly once, and where the carrier takes it: for Twilio in the create request's
    # inline TwiML, never again by a live-call update or a reply on answer.
    assert carrier.spoken() == [(carrier.notify_channel, NOTICE)]
    # Sent is not heard: no line, and no hang-up however long the words take.
    assert lines(call) == []
    fake_clock.advance(seconds=60)
    timers_sweep()
    assert carrier.hangup_requests() == []
    assert state_of(call) in ("answered", "speaking", "listening")

    carrier.follow_up(client)  # the carrier reports the message said
    assert lines(call) == [("bot", NOTICE)]
    # Then outbound.notifyHangupDelaySec (3 s), counted from the report.
    fake_clock.advance(seconds=2)
    timers_sweep()
    assert carrier.hangup_requests() == []
    assert state_of(call) in ("answered", "speaking", "listening")
    fake_clock.advance(seconds=2)  # past it
    timers_sweep()
    if carrier.notify_hangs_up_itself:
        # The reply to the report pauses, then hangs up: no REST hang-up.
        assert carrier.hung_up_in_reply(3)
        assert carrier.hangup_requests() == []
        deliver(client, carrier, carrier.hangup(call, "completed"))
        assert state_of(call) == "completed"
    else:
        assert len(carrier.hangup_requests()) == 1
        assert state_of(call) == "hangup-bot"
        deliver(client, carrier, carrier.hangup(call, "completed"))
        assert state_of(call) == "hangup-bot"  # terminal states stick
    call.refresh_from_db()
    assert call.ended_at is not None
    assert spoken_texts(carrier).count(NOTICE) == 1


# --- conversation -----------------------------------------------------------------------------


class Turn:
    """call_continue in a thread, as the RPC worker would run it."""

    def __init__(self, call: Call, prompt: str) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(call.call_id, prompt))
        self.thread.start()

    def _run(self, call_id: str, prompt: str) -> None:
        try:
            self.result = call_continue(call_id=call_id, message=prompt)
        except BaseException as exc:
            self.error = exc
        finally:
            connection.close()

    def join(self) -> Any:
        self.thread.join(timeout=20)
        assert not self.thread.is_alive(), "continue never returned"
        if self.error is not None:
            raise self.error
        return self.result


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def listening_turn(client: Client, carrier: CarrierDriver, call: Call, prompt: str) -> str:
    """The turn token, once the turn listens and its prompt reached the carrier."""

    def ready() -> str | None:
        carrier.follow_up(client)
        token = Call.objects.values_list("turn_token", flat=True).get(pk=call.pk)
        return token if token and carrier.prompt_sent(call, prompt, token) else None

    token = wait_for(ready, f"the prompt {prompt!r} to be sent with its turn")
    carrier.follow_up(client)  # the prompt was said: its report, and the listening after
    return token


def answered_conversation(client: Client, carrier: CarrierDriver) -> Call:
    """An outbound conversation call, answered and greeted, listening."""
    call = call_initiate(to=CALLEE, message=OPENING, mode="conversation")
    deliver(client, carrier, carrier.initiated(call))
    deliver(client, carrier, carrier.ringing(call))
    deliver(client, carrier, carrier.answered(call))
    assert state_of(call) == "listening"
    assert spoken_texts(carrier).count(OPENING) == 1
    carrier.follow_up(client)  # the greeting was said
    return call


@every_carrier
@pytest.mark.django_db(transaction=True)
def test_conversation_turns_are_answered_by_speech_callbacks(
    client: Client, carrier: CarrierDriver
) -> None:
    call = answered_conversation(client, carrier)

    first = Turn(call, "Shall I book a table for two?")
    token_one = listening_turn(client, carrier, call, "Shall I book a table for two?")
    deliver(client, carrier, carrier.speech(call, "Yes, at eight please", token_one))
    assert first.join().transcript == "Yes, at eight please"

    second = Turn(call, "Indoors or on the terrace?")
    token_two = listening_turn(client, carrier, call, "Indoors or on the terrace?")
    assert token_two != token_one
    # A late speech callback of turn 1 arrives while turn 2 listens: it must not answer it.
    deliver(client, carrier, carrier.speech(call, "Stale words from turn one", token_one))
    time.sleep(0.3)  # the waiter polls every 100 ms: give it the chance to (wrongly) finish
    assert second.thread.is_alive()
    assert Call.objects.values_list("turn_token", flat=True).get(pk=call.pk) == token_two
    assert not TranscriptEntry.objects.filter(call=call, text__contains="Stale").exists()

    deliver(client, carrier, carrier.speech(call, "On the terrace", token_two))
    assert second.join().transcript == "On the terrace"

    assert lines(call) == [
        ("bot", OPENING),
        ("bot", "Shall I book a table for two?"),
        ("user", "Yes, at eight please"),
        ("bot", "Indoors or on the terrace?"),
        ("user", "On the terrace"),
    ]
    call.refresh_from_db()
    assert call.metadata["turnCount"] == 2
    assert call.turn_token is None


@every_carrier
@pytest.mark.django_db(transaction=True)
def test_speech_from_the_greetings_listening_does_not_answer_a_turn(
    client: Client, carrier: CarrierDriver
) -> None:
    call = answered_conversation(client, carrier)
    turn = Turn(call, "Shall I book a table for two?")
    token = listening_turn(client, carrier, call, "Shall I book a table for two?")

    # The caller answered the greeting just as the prompt went out: that callback names no
    # turn, so it can't be the answer to the prompt.
    deliver(client, carrier, carrier.speech(call, "Hello, who is this?", None))
    time.sleep(0.3)
    still_waiting = turn.thread.is_alive()

    deliver(client, carrier, carrier.speech(call, "Yes please", token))
    result = turn.join()
    assert still_waiting
    assert result.transcript == "Yes please"


# --- inbound ------------------------------------------------------------------------------------


@every_carrier
def test_an_allowlisted_inbound_caller_is_greeted(client: Client, carrier: CarrierDriver) -> None:
    sid = carrier.new_provider_call_id()
    deliver(client, carrier, carrier.inbound(sid, FRIEND, OUR_NUMBER))
    call = Call.objects.get(provider_call_id=sid)
    assert (call.direction, call.from_number, call.to_number) == ("inbound", FRIEND, OUR_NUMBER)
    deliver(client, carrier, carrier.inbound_answered(call))

    assert carrier.greeted(call, GREETING)
    assert spoken_texts(carrier).count(GREETING) == 1
    assert state_of(call) in ("answered", "speaking", "listening")
    assert carrier.hangup_requests() == []
    carrier.follow_up(client)  # the carrier reports the greeting said
    assert lines(call) == [("bot", GREETING)]


@every_carrier
def test_an_inbound_stranger_is_hung_up_once_whatever_is_redelivered(
    client: Client, carrier: CarrierDriver
) -> None:
    sid = carrier.new_provider_call_id()
    first = carrier.inbound(sid, STRANGER, OUR_NUMBER)
    deliver(client, carrier, first)
    deliver(client, carrier, first)  # the identical callback again: a replay
    deliver(client, carrier, carrier.inbound_again(sid, STRANGER, OUR_NUMBER))

    call = Call.objects.get()
    assert (call.provider_call_id, call.direction, call.state, call.end_reason) == (
        sid,
        "inbound",
        "hangup-bot",
        "hangup-bot",
    )
    assert call.metadata["rejectionReason"] == "inbound-policy"
    assert spoken_texts(carrier) == []
    assert not TranscriptEntry.objects.exists()
    # The replay is acknowledged with the first delivery's own reply (commit 9d5d6fb).
    assert carrier.exchanges[1].body == carrier.exchanges[0].body
    if carrier.rejects_in_reply:
        assert carrier.hangup_requests() == []
        assert carrier.rejected_in_reply(carrier.exchanges[0])
        assert carrier.rejected_in_reply(carrier.exchanges[2])  # the different re-fetch
    else:
        assert len(carrier.hangup_requests()) == 1


# --- late callbacks -------------------------------------------------------------------------------


@every_carrier
def test_late_callbacks_after_the_end_change_nothing(
    client: Client, carrier: CarrierDriver
) -> None:
    call = call_initiate(to=CALLEE, message=OPENING, mode="conversation")
    answered = carrier.answered(call)
    ringing = carrier.ringing(call)
    deliver(client, carrier, carrier.ringing(call))
    deliver(client, carrier, carrier.hangup(call, "completed"))
    call.refresh_from_db()
    assert call.state == "completed"
    ended_at, events = call.ended_at, CallEvent.objects.filter(call=call).count()
    sent = len(carrier.api.requests)

    deliver(client, carrier, answered)
    deliver(client, carrier, ringing)

    call.refresh_from_db()
    assert (call.state, call.end_reason, call.ended_at) == ("completed", "completed", ended_at)
    assert call.answered_at is None
    assert CallEvent.objects.filter(call=call).count() == events
    assert len(carrier.api.requests) == sent  # nothing was said or hung up
    assert spoken_texts(carrier).count(OPENING) == 0
    assert not TranscriptEntry.objects.filter(call=call).exists()


# --- restart restore ------------------------------------------------------------------------------


@every_carrier
def test_restore_asks_the_carrier_about_every_unfinished_call(
    carrier: CarrierDriver, make_call: Any
) -> None:
    calls = {}
    for answer in ("in-progress", "completed", "not-found", "error"):
        provider_call_id = carrier.new_provider_call_id()
        carrier.status_answers[provider_call_id] = answer
        calls[answer] = make_call(
            provider=carrier.name, provider_call_id=provider_call_id, state="listening"
        )

    report = calls_restore()

    assert report.kept == 2
    assert state_of(calls["in-progress"]) == "listening"
    assert state_of(calls["error"]) == "listening"
    assert (state_of(calls["completed"]), calls["completed"].end_reason) == (
        "completed",
        "completed",
    )
    assert (state_of(calls["not-found"]), calls["not-found"].end_reason) == (
        "completed",
        "completed",
    )
    asked = carrier.status_requests()
    assert sorted(asked) == sorted(c.provider_call_id for c in calls.values())
    assert carrier.hangup_requests() == []


# --- unknown, malformed and garbage callbacks -----------------------------------------------------


def nothing_written() -> bool:
    return not (
        Call.objects.exists() or CallEvent.objects.exists() or TranscriptEntry.objects.exists()
    )


def unknown_status_changes_nothing(client: Client, carrier: CarrierDriver, kind: str) -> None:
    responses = carrier.post_all(client, carrier.status_for_unknown(kind))

    assert [r.status_code for r in responses] == [200] * len(responses)
    assert carrier.api.requests == []
    assert nothing_written(), list(Call.objects.values("state", "direction", "metadata"))


@every_carrier
def test_a_status_callback_for_an_unknown_call_is_acknowledged_and_changes_nothing(
    client: Client, carrier: CarrierDriver
) -> None:
    unknown_status_changes_nothing(client, carrier, "no-direction")


@every_carrier
def test_a_final_status_for_an_unknown_call_of_ours_writes_nothing(
    client: Client, carrier: CarrierDriver
) -> None:
    unknown_status_changes_nothing(client, carrier, "our-call-id")


@every_carrier
def test_the_end_of_an_inbound_call_we_never_saw_leaves_no_live_call(
    client: Client, start_carrier: Carrier
) -> None:
    carrier = start_carrier.start(maxConcurrentCalls=1)
    carrier.post_all(client, carrier.status_for_unknown("inbound-ended"))

    assert not Call.objects.active().exists()
    # With a capacity of one call, the next outbound call must still go out.
    call = call_initiate(to=CALLEE, message=NOTICE, mode="notify")
    assert call.provider_call_id


@every_carrier
def test_a_status_callback_for_an_unknown_inbound_call_is_acknowledged(
    client: Client, carrier: CarrierDriver
) -> None:
    responses = carrier.post_all(client, carrier.status_for_unknown("inbound-ended"))

    assert [r.status_code for r in responses] == [200] * len(responses)
    assert carrier.api.requests == []  # nothing to answer or hang up: the call is over


@every_carrier
def test_a_malformed_callback_is_400_and_creates_nothing(
    client: Client, carrier: CarrierDriver
) -> None:
    for delivery in carrier.malformed():
        response = carrier.post(client, delivery)
        assert response.status_code == 400, (delivery.label, response.content)
        assert response.content.startswith(b"Bad Request")
    assert nothing_written()
    assert not ReplayKey.objects.exists()
    assert carrier.api.requests == []


@every_carrier
def test_signed_garbage_never_gets_a_500(client: Client, carrier: CarrierDriver) -> None:
    client.raise_request_exception = False  # see the 500, as the carrier would
    statuses = {}
    for delivery in carrier.garbage():
        response = carrier.post(client, delivery)
        statuses[delivery.label] = response.status_code
    assert all(status < 500 for status in statuses.values()), statuses
    assert len(statuses) >= 6
    # Only the odd stranger may be recorded, refused (and, on Telnyx, hung up).
    assert not Call.objects.exclude(state="hangup-bot").exists()
    assert len(carrier.api.requests) == len(carrier.hangup_requests()) <= 1


@every_carrier
def test_an_oversized_carrier_call_id_is_refused_not_stored(
    client: Client, carrier: CarrierDriver
) -> None:
    limit = Call._meta.get_field("provider_call_id").max_length
    client.raise_request_exception = False  # see the 500, as the carrier would
    for delivery in carrier.oversized_call_id():
        response = carrier.post(client, delivery)
        assert 400 <= response.status_code < 500, response.status_code
    assert not Call.objects.extra(where=["LENGTH(provider_call_id) > %s"], params=[limit]).exists()


@every_carrier
def test_deeply_nested_json_is_a_400_not_a_500(client: Client, carrier: CarrierDriver) -> None:
    deliveries = carrier.deep_json()
    if not deliveries:
        pytest.skip(f"{carrier.name} callbacks are never parsed as JSON")
    client.raise_request_exception = False  # see the 500, as the carrier would
    for delivery in deliveries:
        response = carrier.post(client, delivery)
        assert response.status_code == 400, response.status_code
    assert nothing_written()

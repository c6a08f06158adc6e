"""Carrier speech is written to the transcript when the carrier reports it said, per carrier.

Signed carrier callbacks through the Django test client, the real adapter on a fake REST
API: Twilio and Plivo fetch the <Redirect> we put after our words, Telnyx sends
call.speak.ended (docs/carriers.md, "What each carrier tells us about speech").
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.test import Client

from calls.models import Call, CallEvent, TranscriptEntry
from tests.fakes.carriers.base import FRIEND, GREETING, OUR_NUMBER, CarrierDriver

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.parametrize("start_carrier", ["twilio", "telnyx", "plivo"], indirect=True),
]


def greeted_inbound(client: Client, carrier: CarrierDriver) -> Call:
    """An allowlisted inbound caller, answered; the greeting handed to the carrier."""
    sid = carrier.new_provider_call_id()
    for delivery in carrier.inbound(sid, FRIEND, OUR_NUMBER):
        assert carrier.post(client, delivery).status_code == 200
    call = Call.objects.get(provider_call_id=sid)
    for delivery in carrier.inbound_answered(call):
        assert carrier.post(client, delivery).status_code == 200
    assert carrier.greeted(call, GREETING)
    return call


def bot_lines(call: Call) -> list[tuple[str, str, bool]]:
    lines = TranscriptEntry.objects.filter(call=call, speaker="bot")
    return list(lines.values_list("text", "utterance_id", "interrupted"))


def in_flight(call: Call) -> list[dict[str, Any]]:
    call.refresh_from_db()
    return list(call.metadata.get("utterancesInFlight", []))


def test_the_bot_line_waits_for_the_carriers_report_of_the_words_said(
    client: Client, carrier: CarrierDriver
) -> None:
    call = greeted_inbound(client, carrier)
    # Handed to the carrier is not heard: no line yet; the words wait on the row.
    assert bot_lines(call) == []
    ((utterance),) = in_flight(call)
    assert utterance["text"] == GREETING

    reports = carrier.reports()
    assert reports, "the carrier has nothing to report"
    for delivery in reports:
        assert carrier.post(client, delivery).status_code == 200

    assert bot_lines(call) == [(GREETING, utterance["id"], False)]
    assert in_flight(call) == []


def test_a_duplicated_report_writes_one_line(client: Client, carrier: CarrierDriver) -> None:
    call = greeted_inbound(client, carrier)
    ((utterance),) = in_flight(call)
    reports = carrier.reports()
    for delivery in reports + reports:  # the same signed request twice
        assert carrier.post(client, delivery).status_code == 200
    # A new delivery (new signature or event id) naming the same words again.
    for delivery in carrier.report_for(call, utterance["id"]):
        assert carrier.post(client, delivery).status_code == 200

    assert bot_lines(call) == [(GREETING, utterance["id"], False)]


def test_a_report_of_words_nobody_sent_changes_nothing(
    client: Client, carrier: CarrierDriver
) -> None:
    call = greeted_inbound(client, carrier)
    waiting = in_flight(call)
    events = CallEvent.objects.count()
    client.raise_request_exception = False  # see a 500, as the carrier would

    for delivery in carrier.report_for(call, "not-an-utterance-of-ours"):
        assert carrier.post(client, delivery).status_code == 200
    assert bot_lines(call) == []
    assert in_flight(call) == waiting

    # A call we never had (a callId of ours that does not exist).
    ghost = Call(
        public_id=uuid.uuid4(),
        provider_call_id=carrier.new_provider_call_id(),
        direction=Call.Direction.INBOUND,
        from_number=FRIEND,
        to_number=OUR_NUMBER,
    )
    for delivery in carrier.report_for(ghost, "u-1"):
        assert carrier.post(client, delivery).status_code == 200
    assert Call.objects.count() == 1
    assert not TranscriptEntry.objects.exists()
    # The stray report on our call is on its timeline, like any delivery; the ghost's is not.
    assert CallEvent.objects.count() == events + 1


def test_words_cut_off_by_the_end_of_the_call_are_written_interrupted(
    client: Client, carrier: CarrierDriver
) -> None:
    call = greeted_inbound(client, carrier)
    ((utterance),) = in_flight(call)
    # The caller hangs up mid-greeting: the carrier never reports it said (Twilio and
    # Plivo never reach the <Redirect>; Telnyx's speak.ended, if it comes, is too late).
    for delivery in carrier.hangup(call, "completed"):
        assert carrier.post(client, delivery).status_code == 200

    assert bot_lines(call) == [(GREETING, utterance["id"], True)]
    assert in_flight(call) == []
    for delivery in carrier.reports():  # a late report changes nothing
        assert carrier.post(client, delivery).status_code == 200
    assert len(bot_lines(call)) == 1

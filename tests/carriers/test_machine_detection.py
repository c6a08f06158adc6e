"""Answering-machine detection per carrier: what the dial asks for, and each signed verdict
callback parsed and applied (docs/carriers.md, "Answering-machine detection").

The real adapters talk to the fake carrier REST APIs of tests/fakes/carriers/; verdicts
are signed as each carrier signs and posted through the webhook, served and Django-view.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import pytest
from django.test import Client
from rest_framework.test import APIClient

from calls.models import Call, CallEvent
from calls.services.dialling import call_initiate
from calls.services.timers import timers_sweep
from tests.carriers.conftest import Carrier
from tests.carriers.test_flows import deliver, lines, rpc, spoken_texts, state_of
from tests.fakes.carriers.base import CALLEE, CarrierDriver, Delivery
from tests.fakes.carriers.plivo import PlivoDriver
from tests.fakes.carriers.telnyx import TelnyxDriver
from tests.fakes.carriers.twilio import TwilioDriver

pytestmark = pytest.mark.django_db

CARRIERS = ("twilio", "telnyx", "plivo")
MODES = ("off", "detect", "hangup", "leaveMessage")
NOTICE = "Your parcel arrives tomorrow between nine and eleven."
OPENING = "Hi, this is the booking assistant."


def each_carrier() -> pytest.MarkDecorator:
    return pytest.mark.parametrize("start_carrier", CARRIERS, indirect=True)


def started(start_carrier: Carrier, mode: str) -> CarrierDriver:
    return start_carrier.start(outbound={"machineDetection": mode})


# -- what each carrier is asked for at the dial ----------------------------------------------


def dial_fields(carrier: CarrierDriver, call: Call) -> dict[str, Any]:
    """The detection fields of the dial request the fake carrier API received."""
    if isinstance(carrier, TwilioDriver):
        form = carrier.creates[call.provider_call_id or ""]
        names = ("MachineDetection", "AsyncAmd", "AsyncAmdStatusCallback")
        names += ("AsyncAmdStatusCallbackMethod",)
        return {name: form[name][0] for name in names if name in form}
    if isinstance(carrier, TelnyxDriver):
        body = carrier.dials[call.provider_call_id or ""]
        return {k: v for k, v in body.items() if k.startswith("answering_machine")}
    assert isinstance(carrier, PlivoDriver)
    body = carrier._create(call)
    return {k: v for k, v in body.items() if k.startswith("machine_detection")}


def callback_url(call: Call, query: str) -> str:
    return f"{call.webhook_url}&{query}"


def expected_fields(name: str, mode: str, call: Call) -> dict[str, Any]:
    if mode == "off":
        return {}
    if name == "twilio":
        return {
            "MachineDetection": "DetectMessageEnd" if mode == "leaveMessage" else "Enable",
            "AsyncAmd": "true",
            "AsyncAmdStatusCallback": callback_url(call, "type=amd"),
            "AsyncAmdStatusCallbackMethod": "POST",
        }
    if name == "telnyx":
        setting = "greeting_end" if mode == "leaveMessage" else "detect"
        return {"answering_machine_detection": setting}
    return {
        "machine_detection": "true",
        "machine_detection_time": 5000,
        "machine_detection_url": callback_url(call, "flow=machine"),
        "machine_detection_method": "POST",
    }


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("start_carrier", CARRIERS, indirect=True)
def test_the_dial_asks_each_carrier_for_its_own_detection(
    start_carrier: Carrier, mode: str
) -> None:
    carrier = started(start_carrier, mode)
    call = call_initiate(to=CALLEE, message=NOTICE, mode="notify")
    assert dial_fields(carrier, call) == expected_fields(carrier.name, mode, call)
    assert call.meta.get("machineDetection") == (None if mode == "off" else mode)


# -- signed verdicts, as each carrier sends them ---------------------------------------------

TWILIO_VERDICTS = {"human": "human", "machine": "machine_start", "fax": "fax"}
TELNYX_VERDICTS = {"human": "human", "machine": "machine", "fax": "fax_detected"}


def verdict(carrier: CarrierDriver, call: Call, who: str, *, beep: bool = False) -> Delivery:
    """The carrier's verdict callback for `call`: who answered; `beep`: a machine's
    greeting ended with it (Twilio DetectMessageEnd) or by itself (Telnyx greeting.ended)."""
    if isinstance(carrier, TwilioDriver):
        url = carrier.creates[call.provider_call_id or ""]["AsyncAmdStatusCallback"][0]
        answered_by = "machine_end_beep" if beep else TWILIO_VERDICTS[who]
        params = {
            "AccountSid": carrier.credentials()["accountSid"],
            "CallSid": call.provider_call_id or "",
            "AnsweredBy": answered_by,
            "MachineDetectionDuration": "2410",
        }
        return carrier.signed("amd", url, params)
    if isinstance(carrier, TelnyxDriver):
        if beep:
            payload = carrier._payload(call, result="beep_detected")
            return carrier.event("amd", carrier._url(call), "call.machine.greeting.ended", payload)
        payload = carrier._payload(call, result=TELNYX_VERDICTS[who])
        event_type = "call.machine.premium.detection.ended" if who == "fax" else None
        return carrier.event(
            "amd", carrier._url(call), event_type or "call.machine.detection.ended", payload
        )
    assert isinstance(carrier, PlivoDriver)
    url = carrier._create(call)["machine_detection_url"]
    machine = "false" if who == "human" else "true"
    params = carrier._params(call, Machine=machine, IfMachine="continue", Event="MachineDetection")
    params["CallStatus"] = "in-progress"
    return carrier.signed("amd", url, params)


def dialled_and_answered(client: Client, carrier: CarrierDriver, mode: str = "notify") -> Call:
    call = call_initiate(to=CALLEE, message=NOTICE if mode == "notify" else OPENING, mode=mode)
    deliver(client, carrier, carrier.initiated(call))
    deliver(client, carrier, carrier.answered(call))
    call.refresh_from_db()
    return call


def answered_call(
    client: Client, start_carrier: Carrier, detection: str, mode: str = "notify"
) -> tuple[CarrierDriver, Call]:
    """A call dialled with `detection` on the started carrier, answered."""
    carrier = started(start_carrier, detection)
    return carrier, dialled_and_answered(client, carrier, mode)


def assert_untouched(carrier: CarrierDriver, call: Call) -> None:
    call.refresh_from_db()
    assert (call.answered_by, call.is_terminal) == ("", False)
    assert carrier.hangup_requests() == []


@each_carrier()
def test_hangup_ends_a_machine_answered_call_as_voicemail(
    client: Client, start_carrier: Carrier
) -> None:
    carrier, call = answered_call(client, start_carrier, "hangup")
    assert spoken_texts(carrier) == []  # the message waits for the verdict
    deliver(client, carrier, [verdict(carrier, call, "machine")])
    call.refresh_from_db()
    assert (call.state, call.end_reason, call.answered_by) == ("voicemail", "voicemail", "machine")
    assert call.machine_detection_ms is not None
    if carrier.name == "twilio":
        assert call.machine_detection_ms == 2410  # the carrier's own figure
    assert len(carrier.hangup_requests()) == 1
    assert spoken_texts(carrier) == []  # nothing was left on the machine
    # The carrier's own end report afterwards changes nothing.
    deliver(client, carrier, carrier.hangup(call, "completed"))
    assert state_of(call) == "voicemail"


# Plivo's verdict is only `Machine` true/false: it never reports a fax.
@pytest.mark.parametrize("start_carrier", ("twilio", "telnyx"), indirect=True)
def test_a_fax_is_hung_up_as_voicemail_even_when_leaving_messages(
    client: Client, start_carrier: Carrier
) -> None:
    carrier, call = answered_call(client, start_carrier, "leaveMessage")
    deliver(client, carrier, [verdict(carrier, call, "fax")])
    call.refresh_from_db()
    assert (call.state, call.answered_by) == ("voicemail", "fax")
    assert len(carrier.hangup_requests()) == 1


@each_carrier()
def test_a_human_verdict_changes_nothing(
    client: Client, start_carrier: Carrier, fake_clock: Any
) -> None:
    carrier, call = answered_call(client, start_carrier, "hangup")
    deliver(client, carrier, [verdict(carrier, call, "human")])
    call.refresh_from_db()
    assert call.answered_by == "human"
    assert not call.is_terminal
    # The message is said once and the call ends the ordinary notify way.
    carrier.follow_up(client)  # Plivo fetches the words' document; each reports them said
    assert spoken_texts(carrier).count(NOTICE) == 1
    assert lines(call) == [("bot", NOTICE)]
    fake_clock.advance(seconds=5)
    timers_sweep()
    deliver(client, carrier, carrier.hangup(call, "completed"))
    call.refresh_from_db()
    assert call.state in ("completed", "hangup-bot")
    assert call.end_reason != "voicemail"


@each_carrier()
def test_leave_message_waits_for_the_beep_speaks_then_hangs_up_as_voicemail(
    client: Client, start_carrier: Carrier, fake_clock: Any
) -> None:
    carrier, call = answered_call(client, start_carrier, "leaveMessage")
    assert spoken_texts(carrier).count(NOTICE) == 0
    if carrier.name == "telnyx":
        # The machine's verdict first: the message waits for its greeting to end.
        deliver(client, carrier, [verdict(carrier, call, "machine")])
        assert spoken_texts(carrier).count(NOTICE) == 0
        assert Call.objects.get(pk=call.pk).answered_by == "machine"
    deliver(client, carrier, [verdict(carrier, call, "machine", beep=True)])
    carrier.follow_up(client)  # the carrier fetches the words (Plivo) and reports them said
    assert spoken_texts(carrier).count(NOTICE) == 1
    if carrier.name == "plivo":
        # Plivo reports no end of the greeting: the left message's document waits for the
        # beep itself.
        document = [e for e in carrier.exchanges if e.delivery.label.startswith("fetch:")][-1]
        assert b'<Response><Wait length="30" beep="true"/><Speak' in document.body
    fake_clock.advance(seconds=5)
    timers_sweep()
    deliver(client, carrier, carrier.hangup(call, "completed"))
    call.refresh_from_db()
    assert (call.state, call.end_reason, call.answered_by) == ("voicemail", "voicemail", "machine")
    assert ("bot", NOTICE) in lines(call)


@each_carrier()
def test_a_replayed_verdict_applies_once(client: Client, start_carrier: Carrier) -> None:
    carrier, call = answered_call(client, start_carrier, "hangup")
    delivery = verdict(carrier, call, "machine")
    deliver(client, carrier, [delivery, delivery])
    assert CallEvent.objects.filter(call=call, type="call.machine_detection").count() == 1
    assert len(carrier.hangup_requests()) == 1


@each_carrier()
def test_a_second_verdict_never_overwrites_the_first(
    client: Client, start_carrier: Carrier
) -> None:
    carrier, call = answered_call(client, start_carrier, "detect")
    deliver(client, carrier, [verdict(carrier, call, "human")])
    deliver(client, carrier, [verdict(carrier, call, "machine")])
    call.refresh_from_db()
    assert call.answered_by == "human"
    assert not call.is_terminal


def bad_verdicts(carrier: CarrierDriver, call: Call) -> list[Delivery]:
    """Validly signed verdict callbacks whose verdict is missing or not the carrier's."""
    good = verdict(carrier, call, "machine")
    if isinstance(carrier, TwilioDriver):
        params = parse_qs(good.body.decode())
        flat = {k: v[0] for k, v in params.items()}
        return [
            carrier.signed("amd:odd", good.url, {**flat, "AnsweredBy": "robot"}),
            carrier.signed(
                "amd:none", good.url, {k: v for k, v in flat.items() if k != "AnsweredBy"}
            ),
        ]
    if isinstance(carrier, TelnyxDriver):
        url = carrier._url(call)
        return [
            carrier.event(
                "amd:odd",
                url,
                "call.machine.detection.ended",
                carrier._payload(call, result="robot"),
            ),
            carrier.event("amd:none", url, "call.machine.greeting.ended", carrier._payload(call)),
            carrier.event(
                "amd:list",
                url,
                "call.machine.detection.ended",
                carrier._payload(call, result=["human"]),
            ),
        ]
    assert isinstance(carrier, PlivoDriver)
    params = carrier._params(call, Machine="perhaps", Event="MachineDetection")
    return [
        carrier.signed("amd:odd", good.url, params),
        carrier.signed("amd:none", good.url, carrier._params(call, Event="MachineDetection")),
    ]


@each_carrier()
def test_a_malformed_verdict_is_refused_and_changes_nothing(
    client: Client, start_carrier: Carrier
) -> None:
    carrier, call = answered_call(client, start_carrier, "hangup")
    for response in carrier.post_all(client, bad_verdicts(carrier, call)):
        assert response.status_code == 400, response.content
    assert_untouched(carrier, call)


@each_carrier()
def test_a_forged_verdict_is_refused_and_changes_nothing(
    client: Client, start_carrier: Carrier
) -> None:
    carrier, call = answered_call(client, start_carrier, "hangup")
    good = verdict(carrier, call, "machine")
    forged = Delivery(
        good.label,
        good.url,
        good.body.replace(b"true", b"TRUE").replace(b"machine", b"human") + b"&x=1",
        good.content_type,
        good.headers,
    )
    response = carrier.post(client, forged)
    assert response.status_code == 401
    assert_untouched(carrier, call)


@each_carrier()
def test_a_verdict_for_a_call_we_do_not_know_opens_nothing(
    client: Client, start_carrier: Carrier
) -> None:
    carrier, call = answered_call(client, start_carrier, "hangup")
    delivery = verdict(carrier, call, "machine")
    Call.objects.filter(pk=call.pk).delete()
    deliver(client, carrier, [delivery])
    assert Call.objects.count() == 0
    assert carrier.hangup_requests() == []


# -- conversation calls -------------------------------------------------------------------------


@pytest.mark.parametrize("start_carrier", ("twilio", "telnyx"), indirect=True)
def test_a_conversation_never_greets_a_machine_with_detect(
    client: Client, start_carrier: Carrier
) -> None:
    carrier, call = answered_call(client, start_carrier, "detect", "conversation")
    deliver(client, carrier, [verdict(carrier, call, "machine")])
    carrier.follow_up(client)
    call.refresh_from_db()
    assert call.answered_by == "machine"
    assert OPENING not in spoken_texts(carrier)
    assert not call.is_terminal  # detect only records


@pytest.mark.parametrize("start_carrier", ("twilio", "telnyx"), indirect=True)
def test_a_conversation_greets_a_person_once_the_verdict_says_so(
    client: Client, start_carrier: Carrier
) -> None:
    carrier, call = answered_call(client, start_carrier, "detect", "conversation")
    assert OPENING not in spoken_texts(carrier)
    deliver(client, carrier, [verdict(carrier, call, "human")])
    carrier.follow_up(client)
    assert spoken_texts(carrier).count(OPENING) == 1
    assert state_of(call) == "listening"


# -- what the record shows ----------------------------------------------------------------------


@pytest.mark.parametrize("start_carrier", ("twilio",), indirect=True)
def test_status_and_rest_show_who_answered(
    client: Client, api: APIClient, start_carrier: Carrier
) -> None:
    carrier, call = answered_call(client, start_carrier, "detect")
    status = rpc(api, "voicecall.status", {"callId": call.call_id})["result"]["call"]
    assert "answeredBy" not in status and "machineDetectionMs" not in status
    deliver(client, carrier, [verdict(carrier, call, "machine")])
    status = rpc(api, "voicecall.status", {"callId": call.call_id})["result"]["call"]
    assert (status["answeredBy"], status["machineDetectionMs"]) == ("machine", 2410)
    detail = api.get(f"/api/calls/{call.call_id}/").json()
    assert (detail["answeredBy"], detail["machineDetectionMs"]) == ("machine", 2410)


# -- Plivo: no verdict documented for a person, so a held greeting has a deadline ---------------

plivo_only = pytest.mark.parametrize("start_carrier", ("plivo",), indirect=True)


def past_the_deadline(fake_clock: Any) -> None:
    """machine_detection_time (5 s) and a second more after the answer, then the sweep."""
    fake_clock.advance(seconds=6)
    timers_sweep()


@plivo_only
def test_plivo_says_a_held_message_at_the_deadline_when_no_verdict_comes(
    client: Client, start_carrier: Carrier, fake_clock: Any
) -> None:
    carrier, call = answered_call(client, start_carrier, "hangup")
    fake_clock.advance(seconds=5)
    timers_sweep()
    carrier.follow_up(client)
    assert spoken_texts(carrier) == []  # still within the detection time
    past_the_deadline(fake_clock)
    carrier.follow_up(client)
    assert spoken_texts(carrier).count(NOTICE) == 1
    call.refresh_from_db()
    assert call.answered_by == ""  # nothing said who answered: nothing recorded


@plivo_only
def test_plivo_a_verdict_before_the_deadline_says_the_message_at_once(
    client: Client, start_carrier: Carrier, fake_clock: Any
) -> None:
    carrier, call = answered_call(client, start_carrier, "hangup")
    deliver(client, carrier, [verdict(carrier, call, "human")])
    carrier.follow_up(client)
    assert spoken_texts(carrier).count(NOTICE) == 1
    past_the_deadline(fake_clock)  # the deadline's command finds the message said
    carrier.follow_up(client)
    assert spoken_texts(carrier).count(NOTICE) == 1


@plivo_only
def test_plivo_never_greets_a_machine_when_its_deadline_passes(
    client: Client, start_carrier: Carrier, fake_clock: Any
) -> None:
    carrier, call = answered_call(client, start_carrier, "detect", "conversation")
    deliver(client, carrier, [verdict(carrier, call, "machine")])
    past_the_deadline(fake_clock)
    carrier.follow_up(client)
    assert OPENING not in spoken_texts(carrier)
    assert not Call.objects.get(pk=call.pk).is_terminal


@plivo_only
def test_plivo_a_machine_reported_after_the_deadline_gets_the_message_again_after_the_beep(
    client: Client, start_carrier: Carrier, fake_clock: Any
) -> None:
    carrier, call = answered_call(client, start_carrier, "leaveMessage")
    past_the_deadline(fake_clock)
    carrier.follow_up(client)
    assert spoken_texts(carrier).count(NOTICE) == 1  # said at the deadline, maybe too early
    deliver(client, carrier, [verdict(carrier, call, "machine")])
    carrier.follow_up(client)
    assert spoken_texts(carrier).count(NOTICE) == 2
    document = [e for e in carrier.exchanges if e.delivery.label.startswith("fetch:")][-1]
    assert b'<Response><Wait length="30" beep="true"/><Speak' in document.body
    fake_clock.advance(seconds=5)
    timers_sweep()
    deliver(client, carrier, carrier.hangup(call, "completed"))
    assert state_of(call) == "voicemail"

"""Cold transfer across a whole call, per carrier: the real adapter on the fake carrier API,
signed webhooks through the served stack, the services and the database in between.

docs/carriers.md, "Cold transfer".
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from calls.models import Call, CallEvent
from tests.carriers.test_flows import deliver, every_carrier, rpc, state_of
from tests.fakes.carriers.base import CALLEE, OUR_NUMBER, CarrierDriver
from tests.fakes.carriers.plivo import PlivoDriver
from tests.fakes.carriers.telnyx import TelnyxDriver
from tests.fakes.carriers.twilio import TwilioDriver

pytestmark = pytest.mark.django_db

TARGET = "+15555550177"
MESSAGE = "Connecting you to our sales desk."


def _answered_call(client: Client, api: APIClient, carrier: CarrierDriver) -> Call:
    reply = rpc(api, "voicecall.start", {"to": CALLEE, "message": "Hello", "mode": "conversation"})
    call = Call.objects.get(public_id=reply["result"]["callId"])
    deliver(client, carrier, carrier.answered(call))
    carrier.follow_up(client)
    assert state_of(call) in ("answered", "speaking", "listening")
    return call


def _what_the_carrier_was_told(carrier: CarrierDriver, call: Call) -> tuple[str | None, str]:
    """(message, number dialled) of the transfer, however this carrier took it."""
    if isinstance(carrier, TwilioDriver):
        kind, document = carrier.rest_twimls()[-1]
        root = ET.fromstring(document)
        assert kind == "update" and [child.tag for child in root] == ["Say", "Dial"]
        return root[0].text, root[1].text or ""
    if isinstance(carrier, TelnyxDriver):
        commands = carrier.commands(call.provider_call_id)
        actions = [action for _, action, _ in commands]
        assert actions[-2:] == ["speak", "transfer"]
        return commands[-2][2]["payload"], commands[-1][2]["to"]
    assert isinstance(carrier, PlivoDriver)
    document = ET.fromstring(carrier.exchanges[-1].body)  # its fetch of our document
    assert carrier.exchanges[-1].delivery.label == "fetch:transfer"
    assert [child.tag for child in document] == ["Speak", "Dial"]
    return document[0].text, "+" + (document[1][0].text or "")


@every_carrier
def test_a_transfer_hands_the_call_over_and_later_callbacks_change_nothing(
    client: Client, api: APIClient, carrier: CarrierDriver
) -> None:
    call = _answered_call(client, api, carrier)
    reply = rpc(
        api, "voicecall.transfer", {"callId": call.call_id, "to": TARGET, "message": MESSAGE}
    )
    assert reply == {"jsonrpc": "2.0", "id": 1, "result": {"success": True}}
    assert state_of(call) == "transferred"
    carrier.follow_up(client)  # Plivo fetches the transfer document now
    assert _what_the_carrier_was_told(carrier, call) == (MESSAGE, TARGET)
    call.refresh_from_db()
    ended_at = call.ended_at
    assert (call.end_reason, call.metadata["transfer"]) == (
        "transferred",
        {"to": TARGET, "message": MESSAGE},
    )

    # Much later our leg ends at the carrier (the caller and the new party hung up).
    deliver(client, carrier, carrier.hangup(call, "completed"))
    call.refresh_from_db()
    assert (call.state, call.end_reason, call.ended_at) == ("transferred", "transferred", ended_at)
    assert carrier.hangup_requests() == []  # we never hung up the handed-over call
    assert CallEvent.objects.filter(call=call, type="call.transferred").count() == 1
    status = rpc(api, "voicecall.status", {"callId": call.call_id})["result"]["call"]
    assert (status["state"], status["endReason"]) == ("transferred", "transferred")


@every_carrier
def test_a_target_outside_allow_to_reaches_no_carrier(
    client: Client, api: APIClient, start_carrier: Any
) -> None:
    carrier = start_carrier.start(outbound={"allowTo": ["+1555555"]})
    call = _answered_call(client, api, carrier)
    sent = len(carrier.api.requests)
    reply = rpc(api, "voicecall.transfer", {"callId": call.call_id, "to": "+19005550100"})
    assert (
        reply["error"]["message"] == "Destination +19005550100 is not allowed by outbound.allowTo"
    )
    assert reply["error"]["data"]["code"] == "INVALID_REQUEST"
    assert len(carrier.api.requests) == sent
    assert state_of(call) != "transferred"


def _transferred(client: Client, api: APIClient, carrier: CarrierDriver) -> Call:
    call = _answered_call(client, api, carrier)
    rpc(api, "voicecall.transfer", {"callId": call.call_id, "to": TARGET})
    return call


@pytest.mark.parametrize("start_carrier", ["plivo"], indirect=True)
def test_plivo_a_replayed_transfer_fetch_gets_the_same_document(
    client: Client, api: APIClient, carrier: PlivoDriver
) -> None:
    _transferred(client, api, carrier)
    carrier.follow_up(client)
    first = carrier.exchanges[-1]
    again = carrier.post(client, first.delivery)
    assert (again.status_code, again.content) == (200, first.body)
    assert b"<Dial" in first.body


@pytest.mark.parametrize("start_carrier", ["plivo"], indirect=True)
def test_plivo_an_unsigned_transfer_fetch_is_refused(
    client: Client, api: APIClient, carrier: PlivoDriver
) -> None:
    _transferred(client, api, carrier)
    (delivery,) = carrier.fetches()
    response = client.post(
        delivery.path,
        delivery.body,
        content_type=delivery.content_type,
        HTTP_HOST=delivery.meta()["HTTP_HOST"],
        secure=True,
    )
    assert response.status_code == 401 and b"Dial" not in response.content


@pytest.mark.parametrize("start_carrier", ["telnyx"], indirect=True)
def test_telnyx_the_new_legs_webhooks_register_no_call(
    client: Client, api: APIClient, carrier: TelnyxDriver
) -> None:
    call = _transferred(client, api, carrier)
    (_, _, body) = carrier.commands(call.provider_call_id)[-1]
    new_leg_state = body["target_leg_client_state"]
    assert base64.b64decode(new_leg_state).decode() == f"transfer-leg:{call.call_id}"
    payload = {
        "call_control_id": "v3:the-new-leg",
        "client_state": new_leg_state,
        "direction": "outgoing",
        "from": OUR_NUMBER,
        "to": TARGET,
        "state": "bridging",
    }
    url = carrier._url(call)
    for event_type in ("call.initiated", "call.answered", "call.bridged", "call.hangup"):
        deliver(client, carrier, [carrier.event(event_type, url, event_type, payload)])
    assert Call.objects.count() == 1
    call.refresh_from_db()
    assert call.state == "transferred" and call.provider_call_id != "v3:the-new-leg"

"""NUL bytes, other control characters and lone surrogates, end to end.

Carrier input is signed but still arbitrary: a NUL in an identifier is bad input (400,
nothing recorded), a NUL in words is dropped (PostgreSQL text and JSONB refuse it), and a
request that fails leaves no row behind. API text refuses them with a clear error. These
run on SQLite and, in .ci/run, on PostgreSQL, where a stray NUL used to give a 500.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from rest_framework.test import APIClient

from calls.models import Call, CallEvent, ReplayKey, TranscriptEntry
from tests.carriers.conftest import Carrier
from tests.fakes.carriers.base import CALLEE, OUR_NUMBER, PUBLIC_URL, Delivery
from tests.fakes.carriers.telnyx import TelnyxDriver
from tests.fakes.carriers.twilio import TWILIO_ACCOUNT, TWILIO_TOKEN, TwilioDriver
from tests.fakes.signing import twilio_sign

pytestmark = pytest.mark.django_db


def _signed(url: str, body: str) -> Delivery:
    raw = body.encode()
    return Delivery(
        label="x",
        url=url,
        body=raw,
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": twilio_sign(url, raw, TWILIO_TOKEN)},
    )


def _base(call_sid: str, **fields: str) -> str:
    params = {
        "AccountSid": TWILIO_ACCOUNT,
        "CallSid": call_sid,
        "Direction": "outbound-api",
        "From": OUR_NUMBER,
        "To": CALLEE,
        **fields,
    }
    return urlencode(params)


@pytest.fixture
def twilio(start_carrier: Carrier) -> TwilioDriver:
    driver = start_carrier.start()
    assert isinstance(driver, TwilioDriver)
    return driver


def test_nul_in_a_call_sid_is_bad_input_and_records_nothing(
    client: Client, twilio: TwilioDriver, make_call: Any
) -> None:
    call = make_call(provider="twilio", provider_call_id="CA" + "1" * 32, state="ringing")
    body = _base("CA%00", CallStatus="completed").replace("CA%2500", "CA%00")

    response = twilio.post(client, _signed(f"{PUBLIC_URL}?type=status", body))

    assert response.status_code == 400
    assert b"control character" in response.content
    call.refresh_from_db()
    assert call.state == "ringing"
    assert not CallEvent.objects.exists() and not ReplayKey.objects.exists()
    assert Call.objects.count() == 1


def test_nul_in_speech_is_dropped_from_the_transcript(
    client: Client, twilio: TwilioDriver, make_call: Any
) -> None:
    call = make_call(provider="twilio", provider_call_id="CA" + "2" * 32, state="listening")
    body = _base(call.provider_call_id, CallStatus="in-progress", SpeechResult="a\x00b\x07c")

    response = twilio.post(client, _signed(f"{PUBLIC_URL}?callId={call.call_id}&type=gather", body))

    assert response.status_code == 200
    assert list(TranscriptEntry.objects.values_list("text", flat=True)) == ["a b c"]
    event = CallEvent.objects.get(call=call)
    assert event.payload["transcript"] == "a b c"


def test_unknown_outbound_call_with_nul_speech_leaves_at_most_one_row(
    client: Client, twilio: TwilioDriver
) -> None:
    body = _base("CA" + "3" * 32, CallStatus="in-progress", SpeechResult="x\x00")
    delivery = _signed(f"{PUBLIC_URL}?type=gather", body)

    first = twilio.post(client, delivery)
    again = twilio.post(client, delivery)

    assert first.status_code == 200 and again.status_code == 200
    assert Call.objects.count() == 1  # the external call, registered once
    assert TranscriptEntry.objects.get().text == "x"


def test_nul_in_our_call_id_query_is_not_a_server_error(
    client: Client, twilio: TwilioDriver, make_call: Any
) -> None:
    make_call(provider="twilio", provider_call_id="CA" + "4" * 32, state="ringing")
    body = _base("CA" + "4" * 32, CallStatus="in-progress")

    response = twilio.post(client, _signed(f"{PUBLIC_URL}?callId=%00&type=answer", body))

    assert response.status_code in (200, 400)


def test_lone_surrogate_in_telnyx_json_is_dropped(
    client: Client, configure: Any, make_call: Any
) -> None:
    driver = Carrier(TelnyxDriver(), configure).start()
    call = make_call(provider="telnyx", provider_call_id="v3:ctl-" + "5" * 20, state="listening")
    body = json.dumps(
        {
            "data": {
                "event_type": "call.transcription",
                "id": "evt-1",
                "payload": {
                    "call_control_id": call.provider_call_id,
                    "transcription_data": {"transcript": "hi \ud800there", "is_final": True},
                },
            }
        }
    )
    delivery = driver.signed_raw("speech", PUBLIC_URL, body.encode())

    response = driver.post(client, delivery)

    assert response.status_code == 200
    assert list(TranscriptEntry.objects.values_list("text", flat=True)) == ["hi there"]


# -- the API ---------------------------------------------------------------------------------------


def _rpc(api: APIClient, method: str, params: dict[str, Any]) -> dict[str, Any]:
    # json.dumps escapes a lone surrogate as \ud800, as a client's JSON encoder would.
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    response = api.generic("POST", "/api/rpc", body, content_type="application/json")
    assert response.status_code < 500
    return response.json()


@pytest.mark.parametrize(
    "method,params",
    [
        ("voicecall.speak", {"message": "a\x00b"}),
        ("voicecall.continue", {"message": "\ud800"}),
        ("voicecall.continue.start", {"message": "x\x1by"}),
    ],
)
def test_rpc_text_with_controls_is_refused(
    api: APIClient, mock_carrier: Any, make_call: Any, method: str, params: dict[str, Any]
) -> None:
    call = make_call()
    answer = _rpc(api, method, {"callId": call.call_id, **params})
    assert answer["error"]["message"] == "message contains control characters"
    assert not TranscriptEntry.objects.exists()
    assert mock_carrier.sent == []


def test_rpc_initiate_refuses_controls_before_dialling(api: APIClient, mock_carrier: Any) -> None:
    answer = _rpc(api, "voicecall.initiate", {"to": "+15555550123", "message": "hi\x00"})
    assert answer["error"]["message"] == "message contains control characters"
    answer = _rpc(api, "voicecall.start", {"to": "+15555550123", "sessionKey": "k\x00"})
    assert answer["error"]["message"] == "sessionKey contains control characters"
    assert not Call.objects.exists() and mock_carrier.sent == []


def test_newlines_and_tabs_in_a_message_are_ordinary(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call()
    answer = _rpc(api, "voicecall.speak", {"callId": call.call_id, "message": "one\n\ttwo"})
    assert answer["result"]["success"] is True
    assert call.transcript.get().text == "one\n\ttwo"


def test_rpc_status_and_rest_lookups_with_nul_ids(api: APIClient, make_call: Any) -> None:
    make_call()
    assert _rpc(api, "voicecall.status", {"callId": "CA\x00"})["result"] == {"found": False}
    assert api.get("/api/calls/CA%00/").status_code == 404
    assert api.get("/api/calls/CA%00/events/").status_code == 404
    assert api.post("/api/calls/CA%00/end/").status_code == 404

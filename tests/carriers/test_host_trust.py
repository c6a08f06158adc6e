"""With `publicUrl` set, the Host header (and forwarding headers) never choose the signed URL.

A carrier account signs every webhook it sends with one secret, whatever endpoint it calls.
If the URL we verify against could be rebuilt from the request's Host, a request the account
sent to *another* app (other-app.example.org) could be replayed to us with that Host and
pass. Each test sends exactly such a request through the Django test client and checks that
it is refused and that the call did not move (docs/security.md, "Webhooks", step 4).
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client

from calls.models import Call, CallEvent, ReplayKey
from tests.carriers.conftest import Carrier
from tests.fakes.carriers.base import CALLEE, OUR_NUMBER, PUBLIC_HOST, Delivery
from tests.fakes.carriers.plivo import PLIVO_TOKEN, PlivoDriver
from tests.fakes.carriers.twilio import TWILIO_ACCOUNT, TWILIO_TOKEN
from tests.fakes.signing import (
    plivo_sign_v2,
    plivo_sign_v3,
    plivo_v2_headers,
    plivo_v3_headers,
    twilio_sign,
)

pytestmark = pytest.mark.django_db

OTHER_HOST = "other-app.example.org"


def _post(client: Client, delivery: Delivery, *, host: str, **headers: str) -> Any:
    meta = {"HTTP_HOST": host, "REMOTE_ADDR": "203.0.113.7"}
    meta.update({"HTTP_" + k.upper().replace("-", "_"): v for k, v in delivery.headers.items()})
    meta.update({"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()})
    path = delivery.url.split(delivery.url.split("/")[2], 1)[1]
    return client.generic(
        "POST", path, delivery.body, content_type=delivery.content_type, secure=True, **meta
    )


def _untouched(response: Any, call: Call, state: str) -> bool:
    call.refresh_from_db()
    return (
        response.status_code == 401
        and call.state == state
        and not CallEvent.objects.filter(call=call).exists()
        and not ReplayKey.objects.exists()
    )


# -- Twilio --------------------------------------------------------------------------------------


def _twilio_call(make_call: Any) -> Call:
    return make_call(
        provider="twilio",
        provider_call_id="CA" + "7" * 32,
        state="ringing",
        from_number=OUR_NUMBER,
        to_number=CALLEE,
    )


def _twilio_completed(call: Call, origin: str) -> Delivery:
    url = f"{origin}/voice/webhook?callId={call.call_id}&type=status"
    body = urlencode(
        {
            "AccountSid": TWILIO_ACCOUNT,
            "CallSid": call.provider_call_id,
            "CallStatus": "completed",
            "Direction": "outbound-api",
        }
    ).encode()
    return Delivery(
        label="status",
        url=url,
        body=body,
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": twilio_sign(url, body, TWILIO_TOKEN)},
    )


def test_twilio_signature_over_a_spoofed_host_is_refused(
    client: Client, start_carrier: Carrier, make_call: Any
) -> None:
    start_carrier.start()  # publicUrl = https://voice.example.test/voice/webhook
    call = _twilio_call(make_call)

    forged = _post(client, _twilio_completed(call, f"https://{OTHER_HOST}"), host=OTHER_HOST)

    assert _untouched(forged, call, "ringing")
    # The same account's signature over our own public URL is what passes.
    genuine = _post(client, _twilio_completed(call, f"https://{PUBLIC_HOST}"), host=OTHER_HOST)
    assert genuine.status_code == 200
    call.refresh_from_db()
    assert call.state == "completed"


def test_twilio_spoofed_host_with_a_port_is_refused(
    client: Client, start_carrier: Carrier, make_call: Any
) -> None:
    start_carrier.start()
    call = _twilio_call(make_call)

    forged = _post(
        client, _twilio_completed(call, f"https://{OTHER_HOST}:8443"), host=f"{OTHER_HOST}:8443"
    )

    assert _untouched(forged, call, "ringing")


def test_twilio_trusted_forwarded_host_does_not_override_public_url(
    client: Client, start_carrier: Carrier, make_call: Any
) -> None:
    # Forwarding headers are trusted here, but publicUrl still names the one signed origin.
    start_carrier.start(webhookSecurity={"trustForwardingHeaders": True})
    call = _twilio_call(make_call)

    forged = _post(
        client,
        _twilio_completed(call, f"https://{OTHER_HOST}"),
        host=OTHER_HOST,
        **{"X-Forwarded-Host": OTHER_HOST, "X-Forwarded-Proto": "https"},
    )

    assert _untouched(forged, call, "ringing")


# -- Plivo (V3 and V2 both sign the URL) ---------------------------------------------------------


@pytest.fixture
def plivo(configure: Any) -> Any:
    return Carrier(PlivoDriver(), configure).start()


def _plivo_call(make_call: Any) -> Call:
    return make_call(
        provider="plivo",
        provider_call_id=str(uuid.uuid4()),
        state="answered",
        from_number=OUR_NUMBER,
        to_number=CALLEE,
    )


def _plivo_hangup_body(call: Call) -> bytes:
    return urlencode(
        {
            "CallUUID": call.provider_call_id,
            "Direction": "outbound",
            "From": OUR_NUMBER.lstrip("+"),
            "To": CALLEE.lstrip("+"),
            "CallStatus": "completed",
            "Event": "Hangup",
            "HangupCause": "NORMAL_CLEARING",
        }
    ).encode()


def _plivo_v3(url: str, body: bytes) -> Delivery:
    nonce = "12345678901234567890"
    return Delivery(
        label="hangup",
        url=url,
        body=body,
        content_type="application/x-www-form-urlencoded",
        headers=plivo_v3_headers(plivo_sign_v3(url, body, nonce, PLIVO_TOKEN), nonce),
    )


def _plivo_v2(url: str, body: bytes) -> Delivery:
    nonce = "98765432109876543210"
    return Delivery(
        label="hangup",
        url=url,
        body=body,
        content_type="application/x-www-form-urlencoded",
        headers=plivo_v2_headers(plivo_sign_v2(url, nonce, PLIVO_TOKEN), nonce),
    )


@pytest.mark.parametrize("sign", [_plivo_v3, _plivo_v2], ids=["v3", "v2"])
def test_plivo_signature_over_a_spoofed_host_is_refused(
    client: Client, plivo: Any, make_call: Any, sign: Any
) -> None:
    call = _plivo_call(make_call)
    query = f"/voice/webhook?callId={call.call_id}&flow=hangup"

    forged = _post(
        client,
        sign(f"https://{OTHER_HOST}{query}", _plivo_hangup_body(call)),
        host=OTHER_HOST,
        **{"X-Forwarded-Host": OTHER_HOST},
    )

    assert _untouched(forged, call, "answered")
    genuine = _post(
        client, sign(f"https://{PUBLIC_HOST}{query}", _plivo_hangup_body(call)), host=OTHER_HOST
    )
    assert genuine.status_code == 200
    call.refresh_from_db()
    assert call.state == "completed"

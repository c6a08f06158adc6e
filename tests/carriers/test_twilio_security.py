"""Twilio webhook security at request level (docs/security.md, "Webhooks").

Every rule is a signed (or deliberately mis-signed) request through the Django test client,
and every test watches a real effect — the call moving to `ringing`, or not — so it fails if
the rule is removed.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client

from calls.models import Call, CallEvent, ReplayKey, TranscriptEntry
from tests.carriers.conftest import Carrier
from tests.fakes.carriers.base import CALLEE, OUR_NUMBER, PUBLIC_HOST, PUBLIC_URL, Delivery
from tests.fakes.carriers.twilio import TWILIO_ACCOUNT, TWILIO_TOKEN, TwilioDriver, twiml_says
from tests.fakes.signing import twilio_sign

pytestmark = pytest.mark.django_db

LOCAL_HOST = "127.0.0.1:3334"  # what the server sees behind a proxy or tunnel
GREETING = "Hi there, this is the assistant."


@pytest.fixture
def start(start_carrier: Carrier) -> Any:
    def _start(**overrides: Any) -> TwilioDriver:
        driver = start_carrier.start(**overrides)
        assert isinstance(driver, TwilioDriver)
        return driver

    return _start


def dialled(make_call: Any, **fields: Any) -> Call:
    """An outbound Twilio call we placed, waiting for its ringing callback."""
    call = make_call(
        provider="twilio",
        provider_call_id="CA" + "1" * 32,
        state="initiated",
        from_number=OUR_NUMBER,
        to_number=CALLEE,
        **fields,
    )
    return call


def status_params(call: Call, status: str = "ringing") -> dict[str, str]:
    return {
        "AccountSid": TWILIO_ACCOUNT,
        "ApiVersion": "2010-04-01",
        "CallSid": call.provider_call_id or "",
        "CallStatus": status,
        "Direction": "outbound-api",
        "From": call.from_number,
        "To": call.to_number,
        "CallbackSource": "call-progress-events",
        "SequenceNumber": "1",
    }


def ringing(
    call: Call,
    origin: str = f"https://{PUBLIC_HOST}",
    *,
    path: str = "/voice/webhook",
    token: str | None = None,
    signature: str | None = None,
    headers: dict[str, str] | None = None,
) -> Delivery:
    """Twilio's `ringing` status callback, signed over `origin` + path + our query."""
    url = f"{origin}{path}?callId={call.call_id}&type=status"
    body = urlencode(status_params(call)).encode()
    sig = signature if signature is not None else twilio_sign(url, body, token or TWILIO_TOKEN)
    return Delivery(
        label="status:ringing",
        url=url,
        body=body,
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": sig, **(headers or {})},
    )


def send(
    client: Client,
    driver: TwilioDriver,
    delivery: Delivery,
    *,
    host: str | None = None,
    remote_addr: str = "127.0.0.1",
    **headers: str,
) -> Any:
    """Post as seen by the server: Host header, peer address, extra (forwarding) headers."""
    meta: dict[str, Any] = {"REMOTE_ADDR": remote_addr}
    if host is not None:
        meta["HTTP_HOST"] = host
    for name, value in headers.items():
        meta["HTTP_" + name.upper().replace("-", "_")] = value
    return driver.post(client, delivery, **meta)


def state_of(call: Call) -> str:
    call.refresh_from_db()
    return call.state


def accepted(response: Any, call: Call) -> bool:
    assert response.status_code in (200, 401), (response.status_code, response.content)
    return response.status_code == 200 and state_of(call) == "ringing"


def refused(response: Any, call: Call) -> bool:
    return (
        response.status_code == 401
        and response.content == b"Unauthorized"
        and state_of(call) == "initiated"
        and not CallEvent.objects.exists()
        and not ReplayKey.objects.exists()
    )


# --- forwarding headers: allowedHosts / trustForwardingHeaders --------------------------------

FORWARDED = {"X-Forwarded-Host": PUBLIC_HOST, "X-Forwarded-Proto": "https"}


def test_a_forwarded_host_in_allowed_hosts_is_the_signed_url(
    client: Client, start: Any, make_call: Any
) -> None:
    driver = start(publicUrl=None, webhookSecurity={"allowedHosts": [PUBLIC_HOST]})
    call = dialled(make_call)

    response = send(client, driver, ringing(call), host=LOCAL_HOST, **FORWARDED)

    assert accepted(response, call)


def test_trust_forwarding_headers_alone_trusts_the_forwarded_host(
    client: Client, start: Any, make_call: Any
) -> None:
    driver = start(publicUrl=None, webhookSecurity={"trustForwardingHeaders": True})
    call = dialled(make_call)

    response = send(
        client, driver, ringing(call), host=LOCAL_HOST, **{"X-Original-Host": PUBLIC_HOST}
    )

    assert accepted(response, call)


def test_without_trust_a_forwarded_host_is_ignored(
    client: Client, start: Any, make_call: Any
) -> None:
    driver = start(publicUrl=None)
    call = dialled(make_call)

    response = send(client, driver, ringing(call), host=LOCAL_HOST, **FORWARDED)

    assert refused(response, call)


def test_without_trust_the_host_header_url_is_what_must_be_signed(
    client: Client, start: Any, make_call: Any
) -> None:
    driver = start(publicUrl=None)
    call = dialled(make_call)
    # An attacker adds X-Forwarded-Host; the URL checked stays the Host header's.
    response = send(
        client,
        driver,
        ringing(call, "https://127.0.0.1"),
        host=LOCAL_HOST,
        **{"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http"},
    )

    assert accepted(response, call)


def test_a_forwarded_host_outside_allowed_hosts_is_not_the_signed_url(
    client: Client, start: Any, make_call: Any
) -> None:
    driver = start(publicUrl=None, webhookSecurity={"allowedHosts": [PUBLIC_HOST]})
    call = dialled(make_call)

    response = send(
        client,
        driver,
        ringing(call, "https://evil.example"),
        host=LOCAL_HOST,
        **{"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"},
    )

    assert refused(response, call)


def test_an_allowed_host_in_the_host_header_still_verifies_when_the_forwarded_one_misses(
    client: Client, start: Any, make_call: Any
) -> None:
    driver = start(publicUrl=None, webhookSecurity={"allowedHosts": [PUBLIC_HOST]})
    call = dialled(make_call)

    response = send(
        client, driver, ringing(call), host=PUBLIC_HOST, **{"X-Forwarded-Host": "evil.example"}
    )

    assert accepted(response, call)


# --- trustedProxyIPs --------------------------------------------------------------------------

PROXY = "10.0.0.5"


@pytest.mark.parametrize(
    ("remote_addr", "trusted"),
    [
        (PROXY, True),  # the proxy itself
        ("10.0.0.6", False),  # another peer
        ("", False),  # no peer address at all
    ],
)
def test_forwarding_headers_count_only_from_a_trusted_proxy_ip(
    client: Client, start: Any, make_call: Any, remote_addr: str, trusted: bool
) -> None:
    driver = start(
        publicUrl=None, webhookSecurity={"trustForwardingHeaders": True, "trustedProxyIPs": [PROXY]}
    )
    call = dialled(make_call)

    response = send(
        client, driver, ringing(call), host=LOCAL_HOST, remote_addr=remote_addr, **FORWARDED
    )

    assert (accepted if trusted else refused)(response, call)


# --- X-Forwarded-Proto ------------------------------------------------------------------------


def test_a_trusted_forwarded_proto_http_is_used(client: Client, start: Any, make_call: Any) -> None:
    driver = start(publicUrl=None, webhookSecurity={"trustForwardingHeaders": True})
    call = dialled(make_call)

    response = send(
        client,
        driver,
        ringing(call, f"http://{PUBLIC_HOST}"),
        host=LOCAL_HOST,
        **{"X-Forwarded-Host": PUBLIC_HOST, "X-Forwarded-Proto": "http"},
    )

    assert accepted(response, call)


def test_an_untrusted_forwarded_proto_is_ignored(
    client: Client, start: Any, make_call: Any
) -> None:
    driver = start(publicUrl=None)
    call = dialled(make_call)

    response = send(
        client,
        driver,
        ringing(call, f"http://{PUBLIC_HOST}"),
        host=PUBLIC_HOST,
        **{"X-Forwarded-Proto": "http"},
    )

    assert refused(response, call)


@pytest.mark.parametrize("proto", ["ftp", "javascript", "HTTP", "http, https", "ws"])
def test_a_forwarded_proto_other_than_http_or_https_is_ignored(
    client: Client, start: Any, make_call: Any, proto: str
) -> None:
    driver = start(publicUrl=None, webhookSecurity={"trustForwardingHeaders": True})
    call = dialled(make_call)
    scheme = proto.split(",")[0].strip()

    odd = send(
        client,
        driver,
        ringing(call, f"{scheme}://{PUBLIC_HOST}"),
        host=LOCAL_HOST,
        **{"X-Forwarded-Host": PUBLIC_HOST, "X-Forwarded-Proto": proto},
    )
    assert refused(odd, call)

    # The scheme stays the https default.
    https = send(
        client,
        driver,
        ringing(call),
        host=LOCAL_HOST,
        **{"X-Forwarded-Host": PUBLIC_HOST, "X-Forwarded-Proto": proto},
    )
    assert accepted(https, call)


# --- port variants (plugin issue #6334) -------------------------------------------------------


def test_a_signature_over_the_public_url_port_verifies(
    client: Client, start: Any, make_call: Any
) -> None:
    driver = start(publicUrl=f"https://{PUBLIC_HOST}:8443/voice/webhook")
    call = dialled(make_call)

    wrong_port = send(client, driver, ringing(call, f"https://{PUBLIC_HOST}:9443"), host=LOCAL_HOST)
    assert refused(wrong_port, call)

    response = send(client, driver, ringing(call, f"https://{PUBLIC_HOST}:8443"), host=LOCAL_HOST)
    assert accepted(response, call)


def test_a_signature_over_the_host_header_port_verifies(
    client: Client, start: Any, make_call: Any
) -> None:
    driver = start(publicUrl=None)
    call = dialled(make_call)

    response = send(
        client, driver, ringing(call, f"https://{PUBLIC_HOST}:8443"), host=f"{PUBLIC_HOST}:8443"
    )

    assert accepted(response, call)


def test_a_non_default_port_nobody_configured_or_sent_does_not_verify(
    client: Client, start: Any, make_call: Any
) -> None:
    driver = start(publicUrl=None)
    call = dialled(make_call)

    response = send(client, driver, ringing(call, f"https://{PUBLIC_HOST}:8443"), host=PUBLIC_HOST)

    assert refused(response, call)


def test_the_default_port_verifies_either_way(client: Client, start: Any, make_call: Any) -> None:
    driver = start()  # publicUrl without a port
    call = dialled(make_call)

    response = send(client, driver, ringing(call, f"https://{PUBLIC_HOST}:443"), host=LOCAL_HOST)

    assert accepted(response, call)


# --- ngrok free-tier loopback flag ------------------------------------------------------------

NGROK_HOST = "ab12-203-0-113-9.ngrok-free.app"
NGROK_FORWARDED = {"X-Forwarded-Host": NGROK_HOST, "X-Forwarded-Proto": "https"}
NGROK = {"provider": "ngrok", "allowNgrokFreeTierLoopbackBypass": True}


def test_ngrok_loopback_trusts_the_forwarded_url_with_a_valid_signature(
    client: Client, start: Any, make_call: Any
) -> None:
    driver = start(publicUrl=None, tunnel=NGROK, serve={"bind": "127.0.0.1"})
    call = dialled(make_call)

    response = send(
        client,
        driver,
        ringing(call, f"https://{NGROK_HOST}"),
        host=LOCAL_HOST,
        remote_addr="127.0.0.1",
        **NGROK_FORWARDED,
    )

    assert accepted(response, call)


def test_ngrok_loopback_never_accepts_an_invalid_signature(
    client: Client, start: Any, make_call: Any
) -> None:
    driver = start(publicUrl=None, tunnel=NGROK, serve={"bind": "127.0.0.1"})
    call = dialled(make_call)

    forged = ringing(call, f"https://{NGROK_HOST}", token="0" * 32)
    response = send(
        client, driver, forged, host=LOCAL_HOST, remote_addr="127.0.0.1", **NGROK_FORWARDED
    )

    assert refused(response, call)


@pytest.mark.parametrize(
    ("overrides", "remote_addr"),
    [
        ({"tunnel": NGROK, "serve": {"bind": "127.0.0.1"}}, "198.51.100.7"),  # not from loopback
        (
            {
                "tunnel": {**NGROK, "allowNgrokFreeTierLoopbackBypass": False},
                "serve": {"bind": "127.0.0.1"},
            },
            "127.0.0.1",
        ),  # flag off
        (
            {"tunnel": {**NGROK, "provider": "none"}, "serve": {"bind": "127.0.0.1"}},
            "127.0.0.1",
        ),  # not ngrok
        ({"tunnel": NGROK, "serve": {"bind": "0.0.0.0"}}, "127.0.0.1"),  # public bind
    ],
)
def test_ngrok_forwarding_is_trusted_only_with_every_condition_met(
    client: Client, start: Any, make_call: Any, overrides: dict[str, Any], remote_addr: str
) -> None:
    driver = start(publicUrl=None, **overrides)
    call = dialled(make_call)

    response = send(
        client,
        driver,
        ringing(call, f"https://{NGROK_HOST}"),
        host=LOCAL_HOST,
        remote_addr=remote_addr,
        **NGROK_FORWARDED,
    )

    assert refused(response, call)


# --- replays ----------------------------------------------------------------------------------


def answer_fetch(call: Call, headers: dict[str, str] | None = None) -> Delivery:
    """Twilio fetching the call's TwiML Url on answer."""
    url = f"{PUBLIC_URL}?callId={call.call_id}"
    params = {**status_params(call, "in-progress")}
    params.pop("CallbackSource")
    params.pop("SequenceNumber")
    body = urlencode(params).encode()
    return Delivery(
        label="fetch:answer",
        url=url,
        body=body,
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": twilio_sign(url, body, TWILIO_TOKEN), **(headers or {})},
    )


def conversation(make_call: Any) -> Call:
    return dialled(
        make_call,
        mode="conversation",
        metadata={"mode": "conversation", "initialMessage": GREETING},
    )


def words_handed_over(call: Call) -> list[str]:
    """What the call handed Twilio to say: words said (bot lines) and words in flight (the
    line waits for Twilio to report them said)."""
    call.refresh_from_db()
    in_flight = [entry["text"] for entry in call.metadata.get("utterancesInFlight", [])]
    lines = TranscriptEntry.objects.filter(call=call, speaker="bot")
    return list(lines.values_list("text", flat=True)) + in_flight


def is_replay_of(second: Any, first: Any) -> bool:
    """A re-delivery is acknowledged with the first delivery's own reply (commit 9d5d6fb:
    Twilio re-sends a fetch when our answer never reached it). Without replay detection the
    second reply differs: the greeting was already spoken, so it would only hold the line."""
    return second.status_code == first.status_code == 200 and second.content == first.content


def test_the_same_signed_request_twice_is_a_replay(
    client: Client, start: Any, make_call: Any
) -> None:
    driver = start()
    call = conversation(make_call)
    fetch = answer_fetch(call)

    first = send(client, driver, fetch, host=PUBLIC_HOST)
    second = send(client, driver, fetch, host=PUBLIC_HOST)

    assert first.status_code == 200 and twiml_says(first.content.decode()) == [GREETING]
    assert is_replay_of(second, first)
    assert CallEvent.objects.filter(call=call).count() == 1
    assert words_handed_over(call) == [GREETING]
    assert ReplayKey.objects.count() == 1
    assert driver.api.requests == []


def test_a_different_idempotency_token_does_not_make_a_new_delivery(
    client: Client, start: Any, make_call: Any
) -> None:
    driver = start()
    call = conversation(make_call)

    first = send(
        client,
        driver,
        answer_fetch(call, {"I-Twilio-Idempotency-Token": "idem-1"}),
        host=PUBLIC_HOST,
    )
    retry = send(
        client,
        driver,
        answer_fetch(call, {"I-Twilio-Idempotency-Token": "idem-2"}),
        host=PUBLIC_HOST,
    )

    assert twiml_says(first.content.decode()) == [GREETING]
    assert is_replay_of(retry, first)
    assert CallEvent.objects.filter(call=call).count() == 1
    assert words_handed_over(call) == [GREETING]


# --- the gates --------------------------------------------------------------------------------


def test_a_request_without_a_signature_is_401(client: Client, start: Any, make_call: Any) -> None:
    driver = start()
    call = dialled(make_call)
    unsigned = ringing(call)
    unsigned = Delivery(unsigned.label, unsigned.url, unsigned.body, unsigned.content_type, {})

    assert refused(send(client, driver, unsigned, host=PUBLIC_HOST), call)


@pytest.mark.parametrize("how", ["wrong token", "garbage", "other body", "other url"])
def test_a_request_with_a_bad_signature_is_401(
    client: Client, start: Any, make_call: Any, how: str
) -> None:
    driver = start()
    call = dialled(make_call)
    good = ringing(call)
    signature = {
        "wrong token": twilio_sign(good.url, good.body, "e" * 32),
        "garbage": "bm90IGEgc2lnbmF0dXJl",
        "other body": twilio_sign(
            good.url, good.body.replace(b"ringing", b"completed"), TWILIO_TOKEN
        ),
        "other url": twilio_sign(
            good.url.replace("type=status", "type=other"), good.body, TWILIO_TOKEN
        ),
    }[how]

    assert refused(send(client, driver, ringing(call, signature=signature), host=PUBLIC_HOST), call)


@pytest.mark.parametrize(
    "path",
    ["/voice/webhook-evil", "/voice/webhookx", "/voice/webhook/x", "/voice/webhook//", "/voice"],
)
def test_a_look_alike_path_is_404_even_when_signed(
    client: Client, start: Any, make_call: Any, path: str
) -> None:
    driver = start()
    call = dialled(make_call)

    response = send(client, driver, ringing(call, path=path), host=PUBLIC_HOST)

    assert response.status_code == 404
    assert state_of(call) == "initiated"
    assert not ReplayKey.objects.exists()


def test_the_serve_path_with_one_trailing_slash_is_served(
    client: Client, start: Any, make_call: Any
) -> None:
    driver = start()
    call = dialled(make_call)

    response = send(client, driver, ringing(call, path="/voice/webhook/"), host=PUBLIC_HOST)

    assert accepted(response, call)


@pytest.mark.parametrize("method", ["get", "put", "delete", "head"])
def test_a_signed_non_post_request_is_405(
    client: Client, start: Any, make_call: Any, method: str
) -> None:
    start()
    call = dialled(make_call)
    delivery = ringing(call)

    response = getattr(client, method)(
        delivery.path,
        HTTP_HOST=PUBLIC_HOST,
        HTTP_X_TWILIO_SIGNATURE=delivery.headers["X-Twilio-Signature"],
    )

    assert response.status_code == 405
    assert state_of(call) == "initiated"


def test_a_body_over_64_kib_is_413(client: Client, start: Any, make_call: Any) -> None:
    driver = start()
    call = dialled(make_call)
    url = f"{PUBLIC_URL}?callId={call.call_id}&type=status"
    params = status_params(call)
    params["Padding"] = ""
    size = len(urlencode(params))
    params["Padding"] = "x" * (64 * 1024 + 1 - size)
    body = urlencode(params).encode()
    assert len(body) == 64 * 1024 + 1
    oversized = Delivery(
        "big",
        url,
        body,
        "application/x-www-form-urlencoded",
        {"X-Twilio-Signature": twilio_sign(url, body, TWILIO_TOKEN)},
    )

    response = send(client, driver, oversized, host=PUBLIC_HOST)

    assert response.status_code == 413
    assert state_of(call) == "initiated"
    assert not ReplayKey.objects.exists()


def test_a_body_of_exactly_64_kib_is_read(client: Client, start: Any, make_call: Any) -> None:
    driver = start()
    call = dialled(make_call)
    url = f"{PUBLIC_URL}?callId={call.call_id}&type=status"
    params = status_params(call)
    params["Padding"] = ""
    params["Padding"] = "x" * (64 * 1024 - len(urlencode(params)))
    body = urlencode(params).encode()
    exact = Delivery(
        "exact",
        url,
        body,
        "application/x-www-form-urlencoded",
        {"X-Twilio-Signature": twilio_sign(url, body, TWILIO_TOKEN)},
    )

    assert accepted(send(client, driver, exact, host=PUBLIC_HOST), call)


# --- skipSignatureVerification ----------------------------------------------------------------


def test_skip_mode_accepts_unsigned_requests_and_still_detects_replays(
    client: Client, start: Any, make_call: Any
) -> None:
    driver = start(publicUrl=None, skipSignatureVerification=True)
    call = conversation(make_call)
    fetch = answer_fetch(call)
    unsigned = Delivery(fetch.label, fetch.url, fetch.body, fetch.content_type, {})

    first = send(client, driver, unsigned, host=LOCAL_HOST)
    second = send(client, driver, unsigned, host=LOCAL_HOST)

    assert first.status_code == 200 and twiml_says(first.content.decode()) == [GREETING]
    assert is_replay_of(second, first)
    assert CallEvent.objects.filter(call=call).count() == 1
    assert words_handed_over(call) == [GREETING]
    assert ReplayKey.objects.filter(key__startswith="twilio:skip:").count() == 1


def test_skip_mode_off_is_the_default(client: Client, start: Any, make_call: Any) -> None:
    driver = start(publicUrl=None)
    call = dialled(make_call)
    unsigned = ringing(call)
    unsigned = Delivery(unsigned.label, unsigned.url, unsigned.body, unsigned.content_type, {})

    assert refused(send(client, driver, unsigned, host=LOCAL_HOST), call)

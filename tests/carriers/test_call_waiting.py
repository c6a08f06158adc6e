"""Twilio call-waiting queue: a second inbound caller waits while a stream holds the line,
hears the hold message and music, and is brought back when the line frees
(docs/carriers.md, "Twilio: TwiML replies")."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import pytest
from django.test import Client
from twilio.request_validator import RequestValidator

from calls.carrier import provider_settings, set_provider
from calls.models import Call
from calls.services.streams import stream_attach, stream_detach
from calls.services.timers import timers_sweep
from providers.twilio import TwilioProvider

TOKEN = "12345678901234567890123456789012"
PUBLIC = "https://voice.example.test/voice/webhook"
CONFIG = {
    "provider": "twilio",
    "fromNumber": "+15550001234",
    "inboundPolicy": "open",
    "twilio": {"accountSid": "AC00000000000000000000000000000001", "authToken": TOKEN},
    "publicUrl": PUBLIC,
    "streaming": {"enabled": True, "providers": {"openai": {"apiKey": "sk-test"}}},
}

pytestmark = pytest.mark.django_db


@pytest.fixture
def twilio_api(configure: Any) -> list[httpx.Request]:
    cfg = configure(CONFIG)
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={"sid": "CAx", "status": "in-progress"})

    http = httpx.Client(transport=httpx.MockTransport(handler))
    set_provider(TwilioProvider(settings=provider_settings(cfg), http=http))
    return requests


def _post(client: Client, query: str, params: dict[str, str]) -> ET.Element:
    url = PUBLIC + query
    signature = RequestValidator(TOKEN).compute_signature(url, params)
    response = client.post(
        "/voice/webhook" + query,
        urlencode(params),
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=signature,
        HTTP_HOST="voice.example.test",
    )
    assert response.status_code == 200, response.content
    return ET.fromstring(response.content)


def _ring(client: Client, sid: str, caller: str) -> ET.Element:
    return _post(
        client,
        "",
        {
            "CallSid": sid,
            "CallStatus": "ringing",
            "Direction": "inbound",
            "From": caller,
            "To": "+15550001234",
            "AccountSid": "AC00000000000000000000000000000001",
        },
    )


def test_a_second_caller_waits_in_the_queue_and_is_connected_when_the_line_frees(
    client: Client, twilio_api: list[httpx.Request], fake_clock: Any
) -> None:
    first = _ring(client, "CA" + "1" * 32, "+15550002222")
    assert first.find("Connect/Stream") is not None
    holder = Call.objects.get(provider_call_id="CA" + "1" * 32)
    stream_attach(
        provider_call_id=holder.provider_call_id,
        token=first.find("Connect/Stream/Parameter").get("value"),
        stream_id="MZ1",
    )

    second = _ring(client, "CA" + "2" * 32, "+15550003333")
    assert [child.tag for child in second] == ["Say", "Enqueue"]
    assert second.find("Say").text == "Please hold while we connect you."
    assert second.find("Enqueue").get("waitUrl") == "/voice/hold-music"
    waiter = Call.objects.get(provider_call_id="CA" + "2" * 32)
    assert waiter.waiting and not waiter.is_terminal

    assert timers_sweep().fired.get("call_waiting") is None  # the line is still held
    assert twilio_api == []

    stream_detach(call_id=holder.call_id, stream_id="MZ1")
    fake_clock.advance(seconds=3)
    report = timers_sweep()
    assert report.fired.get("stream_lost") == 1 and report.fired.get("call_waiting") == 1
    resumed = [
        parse_qs(r.content.decode())
        for r in twilio_api
        if r.url.path.endswith("CA" + "2" * 32 + ".json")
    ]
    assert resumed and resumed[-1]["Url"] == [f"{PUBLIC}?callId={waiter.call_id}"]

    back = _post(
        client,
        f"?callId={waiter.call_id}",
        {
            "CallSid": waiter.provider_call_id,
            "CallStatus": "in-progress",
            "Direction": "inbound",
            "From": "+15550003333",
            "To": "+15550001234",
            "AccountSid": "AC00000000000000000000000000000001",
        },
    )
    assert back.find("Connect/Stream") is not None
    waiter.refresh_from_db()
    assert not waiter.waiting
    # The resumed caller's stream has a token of its own, and it opens that one stream.
    token = back.find("Connect/Stream/Parameter").get("value")
    assert token == waiter.stream_token
    stream_attach(provider_call_id=waiter.provider_call_id, token=token, stream_id="MZ2")
    assert Call.objects.get(pk=waiter.pk).stream_id == "MZ2"


def test_a_waiting_caller_who_hangs_up_is_not_brought_back(
    client: Client, twilio_api: list[httpx.Request], fake_clock: Any
) -> None:
    first = _ring(client, "CA" + "3" * 32, "+15550002222")
    holder = Call.objects.get(provider_call_id="CA" + "3" * 32)
    stream_attach(
        provider_call_id=holder.provider_call_id,
        token=first.find("Connect/Stream/Parameter").get("value"),
        stream_id="MZ3",
    )
    _ring(client, "CA" + "4" * 32, "+15550003333")
    waiter = Call.objects.get(provider_call_id="CA" + "4" * 32)
    _post(
        client,
        "?type=status",
        {
            "CallSid": waiter.provider_call_id,
            "CallStatus": "completed",
            "Direction": "inbound",
            "From": "+15550003333",
            "To": "+15550001234",
        },
    )
    stream_detach(call_id=holder.call_id, stream_id="MZ3")
    fake_clock.advance(seconds=3)
    assert timers_sweep().fired.get("call_waiting") is None
    assert not any(r.url.path.endswith(waiter.provider_call_id + ".json") for r in twilio_api)


def test_outbound_calls_are_never_parked(client: Client, twilio_api: list[httpx.Request]) -> None:
    holder = Call.objects.create(
        provider="twilio",
        provider_call_id="CA" + "5" * 32,
        direction="inbound",
        mode="conversation",
        state="listening",
        stream_id="MZ5",
        stream_token="t",
    )
    outbound = Call.objects.create(
        provider="twilio",
        provider_call_id="CA" + "6" * 32,
        direction="outbound",
        mode="conversation",
        state="ringing",
    )
    reply = _post(
        client,
        f"?callId={outbound.call_id}",
        {
            "CallSid": outbound.provider_call_id,
            "CallStatus": "in-progress",
            "Direction": "outbound-api",
            "From": "+15550001234",
            "To": "+15555550123",
        },
    )
    assert reply.find("Connect/Stream") is not None
    assert reply.find("Enqueue") is None
    assert Call.objects.get(pk=holder.pk).stream_id == "MZ5"

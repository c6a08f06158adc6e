"""Plivo Voice API over httpx.MockTransport: exact paths and JSON bodies, error mapping."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from providers.base import CallTarget, PlaceCall
from providers.errors import ProviderError, ProviderNotConfigured, ProviderUnavailable
from providers.plivo import PlivoProvider
from providers.registry import build_provider
from tests.fakes.plivo.helpers import (
    API,
    AUTH_ID,
    CALL_UUID,
    REQUEST_UUID,
    TOKEN,
    Carrier,
    provider,
    settings,
)

HOOK = "https://voice.example.com/voice/webhook?callId=call-1"
TARGET = CallTarget(
    call_id="call-1", provider_call_id=CALL_UUID, webhook_url=HOOK, turn_token="turn-9"
)


def _dial(**fields: Any) -> PlaceCall:
    base: dict[str, Any] = {
        "call_id": "call-1",
        "to_number": "+1 (415) 555-0100",
        "from_number": "+14155550199",
        "webhook_url": HOOK,
        "mode": "conversation",
    }
    return PlaceCall(**{**base, **fields})


def _json(request: httpx.Request) -> dict[str, Any]:
    return json.loads(request.content)  # type: ignore[no-any-return]


def _error(status: int, message: str = "boom") -> httpx.Response:
    return httpx.Response(status, json={"api_id": "x", "error": message})


# -- construction ----------------------------------------------------------------------------
def test_missing_credentials_name_both_keys() -> None:
    with pytest.raises(ProviderNotConfigured) as info:
        PlivoProvider(settings=settings(authId=None, authToken=""))
    assert "plivo.authId" in str(info.value) and "plivo.authToken" in str(info.value)


def test_nested_plivo_block_is_read() -> None:
    nested = {k: v for k, v in settings().items() if k not in ("authId", "authToken")}
    built = PlivoProvider(settings={**nested, "plivo": {"authId": AUTH_ID, "authToken": TOKEN}})
    built.close()


def test_registry_builds_the_adapter() -> None:
    built = build_provider("plivo", settings=settings())
    assert isinstance(built, PlivoProvider)
    assert (
        built.name,
        built.supports_preconnect_dtmf,
        built.rejects_in_reply,
        built.speech_by_fetch,
    ) == ("plivo", True, True, True)
    assert built.signature_headers == (
        ("x-plivo-signature-v3", "x-plivo-signature-v3-nonce"),
        ("x-plivo-signature-v2", "x-plivo-signature-v2-nonce"),
    )
    built.close()


# -- place_call ------------------------------------------------------------------------------
def test_create_call_body() -> None:
    carrier = Carrier()
    result = provider(carrier, ringTimeoutMs=25_500).place_call(_dial())
    request = carrier.requests[0]
    assert (request.method, str(request.url)) == ("POST", f"{API}/Call/")
    assert request.headers["content-type"] == "application/json"
    assert _json(request) == {
        "from": "+14155550199",
        "to": "+14155550100",
        "answer_url": f"{HOOK}&flow=answer",
        "answer_method": "POST",
        "hangup_url": f"{HOOK}&flow=hangup",
        "hangup_method": "POST",
        "hangup_on_ring": 25,
        "ring_timeout": 25,
    }
    assert (result.provider_call_id, result.message_delivered, result.dtmf_delivered) == (
        REQUEST_UUID,
        False,
        False,
    )


def test_basic_auth_is_auth_id_and_token() -> None:
    carrier = Carrier()
    provider(carrier).place_call(_dial())
    credentials = base64.b64encode(f"{AUTH_ID}:{TOKEN}".encode()).decode()
    assert carrier.requests[0].headers["authorization"] == f"Basic {credentials}"


def test_hangup_on_ring_is_at_least_one_second() -> None:
    carrier = Carrier()
    provider(carrier, ringTimeoutMs=300).place_call(_dial())
    assert _json(carrier.requests[0])["hangup_on_ring"] == 1


def test_ring_timeout_falls_back_to_the_request() -> None:
    carrier = Carrier()
    provider(carrier, ringTimeoutMs=None).place_call(_dial(ring_timeout_s=45))
    assert _json(carrier.requests[0])["hangup_on_ring"] == 45


def test_sip_destinations_are_kept() -> None:
    carrier = Carrier()
    provider(carrier).place_call(_dial(to_number="sip:alice@phone.plivo.com"))
    assert _json(carrier.requests[0])["to"] == "sip:alice@phone.plivo.com"


def test_preconnect_dtmf_travels_as_send_digits_with_pauses_mapped() -> None:
    carrier = Carrier()
    result = provider(carrier).place_call(_dial(dtmf_sequence="1w2,3p#"))
    assert _json(carrier.requests[0])["send_digits"] == "1w2w3W#"
    assert result.dtmf_delivered


def test_request_uuid_may_be_a_list() -> None:
    carrier = Carrier(httpx.Response(201, json={"request_uuid": [REQUEST_UUID, "other"]}))
    assert provider(carrier).place_call(_dial()).provider_call_id == REQUEST_UUID


@pytest.mark.parametrize("body", [{}, {"request_uuid": []}, {"request_uuid": ""}, ["x"]])
def test_no_request_uuid_is_an_error(body: Any) -> None:
    carrier = Carrier(httpx.Response(201, json=body))
    with pytest.raises(ProviderError, match="Plivo call create returned no request_uuid"):
        provider(carrier).place_call(_dial())


def test_api_base_url_override() -> None:
    carrier = Carrier()
    provider(carrier, apiBaseUrl="http://127.0.0.1:8081/").place_call(_dial())
    assert str(carrier.requests[0].url) == f"http://127.0.0.1:8081/v1/Account/{AUTH_ID}/Call/"


# -- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "retryable"),
    [(400, False), (401, False), (404, False), (429, True), (500, True), (503, True)],
)
def test_api_errors_carry_status_body_and_retryability(status: int, retryable: bool) -> None:
    carrier = Carrier(_error(status, "invalid to number"))
    with pytest.raises(ProviderError) as info:
        provider(carrier).place_call(_dial())
    assert str(info.value) == f"Plivo API error: {status} invalid to number"
    assert info.value.retryable is retryable


def test_non_json_error_body_is_quoted() -> None:
    carrier = Carrier(httpx.Response(502, text="<html>Bad gateway</html>"))
    with pytest.raises(ProviderError, match="Plivo API error: 502 <html>Bad gateway</html>"):
        provider(carrier).place_call(_dial())


def test_transport_failure_is_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ProviderUnavailable) as info:
        provider(Carrier(refuse)).place_call(_dial())
    assert info.value.retryable


# -- hang_up ---------------------------------------------------------------------------------
def test_hang_up_deletes_the_call() -> None:
    carrier = Carrier(httpx.Response(204))
    provider(carrier).hang_up(TARGET)
    assert carrier.calls() == [("DELETE", f"{API}/Call/{CALL_UUID}/")]


def test_hang_up_of_an_unanswered_request_cancels_it() -> None:
    carrier = Carrier(_error(404, "call not found"), httpx.Response(204))
    target = CallTarget(call_id="call-1", provider_call_id=REQUEST_UUID, webhook_url=HOOK)
    provider(carrier).hang_up(target)
    assert carrier.calls() == [
        ("DELETE", f"{API}/Call/{REQUEST_UUID}/"),
        ("DELETE", f"{API}/Request/{REQUEST_UUID}/"),
    ]


def test_hang_up_of_a_call_already_gone_is_fine() -> None:
    carrier = Carrier(_error(404))
    provider(carrier).hang_up(TARGET)
    assert len(carrier.requests) == 2


def test_hang_up_other_errors_raise() -> None:
    with pytest.raises(ProviderError) as info:
        provider(Carrier(_error(500))).hang_up(TARGET)
    assert info.value.retryable
    with pytest.raises(ProviderError):
        provider(Carrier(_error(404), _error(401))).hang_up(TARGET)


def test_hang_up_without_an_id_sends_nothing() -> None:
    carrier = Carrier()
    provider(carrier).hang_up(CallTarget(call_id="call-1", provider_call_id=""))
    assert carrier.requests == []


# -- speech by transfer ----------------------------------------------------------------------
def test_play_text_transfers_the_a_leg_to_the_speak_document() -> None:
    carrier = Carrier(httpx.Response(202, json={"message": "call transferred"}))
    provider(carrier).play_text(TARGET, "Hello & <welcome>", listen_after=True)
    request = carrier.requests[0]
    assert (request.method, str(request.url)) == ("POST", f"{API}/Call/{CALL_UUID}/")
    assert _json(request) == {
        "legs": "aleg",
        "aleg_url": f"{HOOK}&flow=xml-speak",
        "aleg_method": "POST",
    }


def test_start_listening_transfers_to_the_listen_document_with_the_turn() -> None:
    carrier = Carrier(httpx.Response(202, json={}))
    provider(carrier).start_listening(TARGET)
    assert _json(carrier.requests[0])["aleg_url"] == f"{HOOK}&flow=xml-listen&turnToken=turn-9"


def test_transfer_of_a_request_uuid_fails_clearly() -> None:
    target = CallTarget(call_id="call-1", provider_call_id=REQUEST_UUID, webhook_url=HOOK)
    with pytest.raises(ProviderError) as info:
        provider(Carrier(_error(404, "call not found"))).play_text(target, "hi", listen_after=False)
    assert "not answered yet (still its request UUID)" in str(info.value)
    assert REQUEST_UUID in str(info.value) and not info.value.retryable


def test_transfer_without_ids() -> None:
    with pytest.raises(ProviderError, match="Missing Plivo CallUUID for speak"):
        provider().play_text(
            CallTarget(call_id="c", provider_call_id="", webhook_url=HOOK), "hi", listen_after=False
        )
    with pytest.raises(ProviderError, match="Missing webhook URL for this call"):
        provider().start_listening(CallTarget(call_id="c", provider_call_id=CALL_UUID))


def test_transfer_falls_back_to_public_url_for_the_webhook() -> None:
    carrier = Carrier(httpx.Response(202, json={}))
    plivo = provider(carrier, publicUrl="https://voice.example.com/voice/webhook")
    plivo.play_text(CallTarget(call_id="c7", provider_call_id=CALL_UUID), "hi", listen_after=False)
    assert _json(carrier.requests[0])["aleg_url"] == (
        "https://voice.example.com/voice/webhook?callId=c7&flow=xml-speak"
    )


def test_transfer_server_error_is_retryable() -> None:
    with pytest.raises(ProviderError) as info:
        provider(Carrier(_error(503))).start_listening(TARGET)
    assert info.value.retryable and str(info.value).startswith("Plivo API error: 503")


def test_ids_stay_one_path_segment() -> None:
    carrier = Carrier(httpx.Response(202, json={}))
    target = CallTarget(call_id="c", provider_call_id="../Account/x?y", webhook_url=HOOK)
    provider(carrier).play_text(target, "hi", listen_after=False)
    assert carrier.requests[0].url.raw_path.decode() == (
        f"/v1/Account/{AUTH_ID}/Call/..%2FAccount%2Fx%3Fy/"
    )


# -- DTMF ------------------------------------------------------------------------------------
def test_send_dtmf_posts_digits_to_the_a_leg() -> None:
    carrier = Carrier(httpx.Response(202, json={"message": "digits sent"}))
    provider(carrier).send_dtmf(TARGET, "12,34p#*w")
    request = carrier.requests[0]
    assert (request.method, str(request.url)) == ("POST", f"{API}/Call/{CALL_UUID}/DTMF/")
    assert _json(request) == {"digits": "12w34W#*w", "leg": "aleg"}


def test_send_dtmf_errors() -> None:
    with pytest.raises(ProviderError, match="Missing Plivo CallUUID for send_dtmf"):
        provider().send_dtmf(CallTarget(call_id="c", provider_call_id=""), "1")
    with pytest.raises(ProviderError, match="not answered yet"):
        provider(Carrier(_error(404))).send_dtmf(TARGET, "1")


# -- get_call_status -------------------------------------------------------------------------
def test_live_call_status() -> None:
    carrier = Carrier(
        httpx.Response(200, json={"call_status": "in-progress", "call_uuid": CALL_UUID})
    )
    status = provider(carrier).get_call_status(CALL_UUID)
    assert carrier.calls() == [("GET", f"{API}/Call/{CALL_UUID}/?status=live")]
    assert (status.status, status.is_terminal, status.is_unknown) == ("in-progress", False, False)


@pytest.mark.parametrize(
    ("plivo_status", "reason"),
    [
        ("completed", "completed"),
        ("busy", "busy"),
        ("failed", "failed"),
        ("timeout", "no-answer"),
        ("no-answer", "no-answer"),
        ("cancel", "hangup-bot"),
        ("machine", "voicemail"),
        ("hangup", "completed"),
    ],
)
def test_terminal_statuses(plivo_status: str, reason: str) -> None:
    carrier = Carrier(httpx.Response(200, json={"call_status": plivo_status}))
    status = provider(carrier).get_call_status(CALL_UUID)
    assert (status.is_terminal, status.end_reason) == (True, reason)


def test_not_live_but_queued_is_not_terminal() -> None:
    carrier = Carrier(_error(404), httpx.Response(200, json={"call_status": "queued"}))
    status = provider(carrier).get_call_status(REQUEST_UUID)
    assert carrier.calls()[1] == ("GET", f"{API}/Call/{REQUEST_UUID}/?status=queued")
    assert (status.status, status.is_terminal) == ("queued", False)


def test_not_found_anywhere_is_terminal() -> None:
    status = provider(Carrier(_error(404))).get_call_status(CALL_UUID)
    assert (status.is_terminal, status.is_unknown, status.end_reason) == (True, False, "completed")


@pytest.mark.parametrize("answer", [_error(500), _error(429), _error(401)])
def test_server_errors_are_unknown(answer: httpx.Response) -> None:
    status = provider(Carrier(answer)).get_call_status(CALL_UUID)
    assert (status.is_terminal, status.is_unknown) == (False, True)


def test_network_failure_is_unknown() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    status = provider(Carrier(refuse)).get_call_status(CALL_UUID)
    assert (status.is_terminal, status.is_unknown) == (False, True)


def test_unrecognised_status_is_unknown() -> None:
    status = provider(Carrier(httpx.Response(200, json={}))).get_call_status(CALL_UUID)
    assert (status.status, status.is_terminal, status.is_unknown) == ("unknown", False, True)

"""The shared carrier HTTP layer (providers/http.py) and the settings helpers beside it."""

from __future__ import annotations

import httpx
import pytest

from providers.common import api_key_setting, required_block_values, selected_provider
from providers.errors import ProviderError, ProviderNotConfigured, ProviderUnavailable
from providers.http import CarrierApiError, CarrierHttp, retryable_status, send
from providers.plivo.client import PlivoApiError
from providers.telnyx.client import TelnyxApiError
from providers.twilio.client import TwilioApiError


def _answer(response: httpx.Response) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(lambda request: response))


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(400, False), (404, False), (408, False), (422, False), (429, True), (500, True), (503, True)],
)
def test_only_rate_limits_and_server_errors_are_retryable(status: int, retryable: bool) -> None:
    assert retryable_status(status) is retryable
    error = CarrierApiError("x", status=status)
    assert isinstance(error, ProviderError) and error.retryable is retryable


@pytest.mark.parametrize(
    ("error", "gone"),
    [
        (TwilioApiError("x", status=404), True),
        (TwilioApiError("x", status=400, provider_code="20404"), True),
        (TwilioApiError("x", status=400, provider_code="21220"), False),
        (TelnyxApiError("x", status=422, provider_code="90018"), True),
        (TelnyxApiError("x", status=422, provider_code="10015"), False),
        (TelnyxApiError("x", status=404, provider_code=None), True),
        (PlivoApiError("x", status=404), True),
        (PlivoApiError("x", status=400), False),
    ],
)
def test_call_gone_is_a_404_or_the_carriers_own_code(error: CarrierApiError, gone: bool) -> None:
    assert error.call_gone is gone


def test_plivo_errors_carry_the_status_as_their_code() -> None:
    assert PlivoApiError("x", status=401).provider_code == "401"
    assert TwilioApiError("x", status=401).provider_code is None


@pytest.mark.parametrize(
    ("error", "body", "message", "code"),
    [
        (
            TwilioApiError,
            {"code": 21211, "message": "Invalid 'To' Phone Number"},
            "Twilio API error: 400 Invalid 'To' Phone Number",
            "21211",
        ),
        (
            TelnyxApiError,
            {"errors": [{"code": "10015", "title": "Bad", "detail": "Invalid connection_id"}]},
            "Telnyx API error: 400 Invalid connection_id",
            "10015",
        ),
        (
            PlivoApiError,
            {"api_id": "a", "error": "invalid to"},
            "Plivo API error: 400 invalid to",
            "400",
        ),
    ],
)
def test_send_raises_the_carriers_error_from_its_body(
    error: type[CarrierApiError], body: dict[str, object], message: str, code: str
) -> None:
    with pytest.raises(error) as info:
        send(_answer(httpx.Response(400, json=body)), "GET", "https://api.test/x", error=error)
    assert (str(info.value), info.value.status, info.value.provider_code) == (message, 400, code)


@pytest.mark.parametrize("error", [TwilioApiError, TelnyxApiError, PlivoApiError])
def test_a_body_in_no_known_shape_is_quoted_cut_short(error: type[CarrierApiError]) -> None:
    response = httpx.Response(502, text="<html>" + "x" * 300)
    with pytest.raises(error) as info:
        send(_answer(response), "GET", "https://api.test/x", error=error)
    assert str(info.value) == f"{error.carrier} API error: 502 <html>{'x' * 194}"


def test_send_returns_a_2xx_answer_and_maps_transport_failures() -> None:
    assert send(_answer(httpx.Response(204)), "DELETE", "https://api.test/x", error=PlivoApiError)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = httpx.Client(transport=httpx.MockTransport(refuse))
    with pytest.raises(ProviderUnavailable, match="^Telnyx API unreachable: connection refused"):
        send(client, "GET", "https://api.test/x", error=TelnyxApiError)


def test_carrier_http_closes_only_a_client_it_made() -> None:
    given = httpx.Client()
    CarrierHttp(given).close()
    assert not given.is_closed
    own = CarrierHttp(None)
    own.close()
    assert own.client.is_closed
    given.close()


def test_required_block_values_names_every_missing_key() -> None:
    settings = {"accountSid": "AC1", "twilio": {"authToken": " t "}}
    assert required_block_values(settings, "twilio", ("accountSid", "authToken"), carrier="T") == {
        "accountSid": "AC1",
        "authToken": "t",
    }
    missing = r"^Plivo is not configured: missing plivo\.a, plivo\.b$"
    with pytest.raises(ProviderNotConfigured, match=missing):
        required_block_values({}, "plivo", ("a", "b"), carrier="Plivo")


def test_api_key_setting_names_the_key_and_the_variable() -> None:
    assert api_key_setting({"apiKey": " sk "}, path="x.y") == "sk"
    with pytest.raises(ProviderNotConfigured, match=r"^x\.y\.apiKey is required \(or set K\)$"):
        api_key_setting({}, path="x.y", env="K")
    with pytest.raises(ProviderNotConfigured, match=r"^x\.y\.apiKey is required$"):
        api_key_setting({"apiKey": "  "}, path="x.y")


def test_selected_provider_defaults_to_the_first_and_refuses_others() -> None:
    assert selected_provider({}, "streaming", ("openai",)) == ("openai", {})
    block = {"apiKey": "k"}
    assert selected_provider({"providers": {"openai": block}}, "realtime", ("openai",)) == (
        "openai",
        block,
    )
    refused = '^realtime.provider "x" is not supported; use "openai"$'
    with pytest.raises(ProviderNotConfigured, match=refused):
        selected_provider({"provider": "x"}, "realtime", ("openai",))

"""`enabled: false` over every surface: no call is placed or driven, webhooks get 503.

docs/plugin-behaviour.md, "Disabled (`enabled: false`)".
"""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import httpx
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from rest_framework.test import APIClient

from calls.cli import client as cli_client
from calls.models import Call, CallEvent, ReplayKey
from tests.fakes.served import ServedClient

pytestmark = pytest.mark.django_db

DISABLED = "Voice call disabled in plugin config"
TO = "+15555550123"
# A carrier the operator switched off: no credentials, so the adapter cannot even be built.
TWILIO_OFF = {"enabled": False, "provider": "twilio", "fromNumber": "+15550001234"}


@pytest.fixture
def disabled(configure: Any) -> Any:
    return configure(TWILIO_OFF)


def _rpc(api: APIClient, method: str, params: dict[str, Any]) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
    response = api.post("/api/rpc", body, format="json")
    assert response.status_code == 200
    return response.json()


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("voicecall.initiate", {"to": TO, "message": "Hello"}),
        ("voicecall.start", {"to": TO}),
    ],
)
def test_rpc_call_placing_fails_with_the_plugins_string(
    disabled: Any, api: APIClient, method: str, params: dict[str, Any]
) -> None:
    reply = _rpc(api, method, params)

    assert reply["error"]["message"] == DISABLED
    assert reply["error"]["data"]["code"] == "UNAVAILABLE"
    assert not Call.objects.exists()


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("voicecall.speak", {"message": "Hi"}),
        ("voicecall.continue", {"message": "Hi"}),
        ("voicecall.continue.start", {"message": "Hi"}),
        ("voicecall.dtmf", {"digits": "1"}),
        ("voicecall.transfer", {"to": "+15555550199"}),
    ],
)
def test_rpc_in_call_methods_fail_too_and_send_nothing(
    disabled: Any, api: APIClient, make_call: Any, method: str, params: dict[str, Any]
) -> None:
    call = make_call(provider="twilio")

    reply = _rpc(api, method, {"callId": call.call_id, **params})

    assert reply["error"]["message"] == DISABLED
    call.refresh_from_db()
    assert call.state == "answered"
    assert not call.transcript.exists()


def test_status_still_reads_the_history(disabled: Any, api: APIClient, make_call: Any) -> None:
    call = make_call(provider="twilio", state="completed")

    reply = _rpc(api, "voicecall.status", {"callId": call.call_id})

    assert reply["result"]["found"] is True


def test_rest_create_answers_503_with_the_plugins_string(disabled: Any, api: APIClient) -> None:
    response = api.post("/api/calls/", {"to": TO, "message": "Hello"}, format="json")

    assert response.status_code == 503
    assert response.json() == {"error": DISABLED, "code": "UNAVAILABLE"}
    assert not Call.objects.exists()


def test_rest_speak_answers_503(disabled: Any, api: APIClient, make_call: Any) -> None:
    call = make_call(provider="twilio")

    response = api.post(f"/api/calls/{call.call_id}/speak/", {"message": "Hi"}, format="json")

    assert response.status_code == 503
    assert response.json()["error"] == DISABLED


def test_tool_initiate_call_comes_back_as_the_error(disabled: Any, api: APIClient) -> None:
    response = api.post(
        "/api/tools/voice_call",
        {"action": "initiate_call", "to": TO, "message": "Hello"},
        format="json",
    )

    assert response.status_code == 200
    assert response.json() == {"error": DISABLED}
    assert not Call.objects.exists()


def test_tool_legacy_call_shape_is_refused_too(disabled: Any, api: APIClient) -> None:
    response = api.post(
        "/api/tools/voice_call", {"mode": "call", "to": TO, "message": "Hi"}, format="json"
    )

    assert response.json() == {"error": DISABLED}


def test_cli_call_exits_non_zero_with_the_line(
    disabled: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    # No server answers: the command runs in-process, against the disabled config.
    monkeypatch.setattr(cli_client, "TRANSPORT_FACTORY", lambda: httpx.MockTransport(refuse))
    with pytest.raises(CommandError) as caught:
        call_command("voicecall", "call", "--to", TO, "--message", "Hi", stdout=StringIO())

    assert str(caught.value) == DISABLED
    assert not Call.objects.exists()


def test_setup_reports_it(disabled: Any) -> None:
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("voicecall", "setup", "--json", stdout=out)

    checks = {c["id"]: c for c in json.loads(out.getvalue())["checks"]}
    assert checks["plugin-enabled"] == {
        "id": "plugin-enabled",
        "ok": False,
        "message": f"{DISABLED} (enabled: false)",
    }


def _inbound_body() -> str:
    event = {
        "type": "call.initiated",
        "callId": "CA-in-1",
        "direction": "inbound",
        "from": "+15550001111",
        "to": "+15550001234",
    }
    return json.dumps({"event": event})


def test_carrier_webhook_answers_503_and_records_nothing(disabled: Any, client: Client) -> None:
    # No signature header either: the disabled service answers before any carrier check.
    response = client.post("/voice/webhook", _inbound_body(), content_type="application/json")

    assert response.status_code == 503
    assert DISABLED in response.content.decode()
    assert not Call.objects.exists()
    assert not CallEvent.objects.exists()
    assert not ReplayKey.objects.exists()


def test_the_served_webhook_path_answers_503_through_the_gate(disabled: Any) -> None:
    # The gate checks signature headers with the carrier adapter, which a switched-off
    # Twilio without credentials cannot build: disabled must not become a 500 there.
    response = ServedClient().post(
        "/voice/webhook", _inbound_body(), content_type="application/json"
    )

    assert response.status_code == 503
    assert DISABLED.encode() in response.content
    assert not Call.objects.exists()


def test_healthz_says_disabled(disabled: Any, client: Client) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["enabled"] is False


def test_readyz_answers_503_while_disabled(disabled: Any, client: Client) -> None:
    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {"ok": False, "enabled": False, "error": DISABLED, "checks": {}}


def test_an_enabled_service_is_ready_and_says_so(configure: Any, client: Client) -> None:
    configure({})

    assert client.get("/healthz").json()["enabled"] is True
    assert client.get("/readyz").status_code == 200

"""Every /api/ endpoint needs `Authorization: Bearer <token>`.

docs/design.md, "6. HTTP and websocket surface"; docs/security.md, "The API".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from rest_framework.test import APIClient

from calls.models import ApiToken, Call
from calls.services.tokens import token_create, token_revoke

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # {live} / {ended}: the callId of a live / an ended call
    ok_status: int  # what an authenticated client gets
    body: Any = None


ENDPOINTS = [
    Endpoint(
        "post",
        "/api/rpc",
        200,
        {"jsonrpc": "2.0", "id": 1, "method": "voicecall.status", "params": {}},
    ),
    Endpoint("get", "/api/tools/voice_call", 200),
    Endpoint("post", "/api/tools/voice_call", 200, {"action": "get_status", "callId": "{live}"}),
    Endpoint("get", "/api/calls/", 200),
    Endpoint("post", "/api/calls/", 201, {"to": "+15555550199", "message": "Hi"}),
    Endpoint("get", "/api/calls/{live}/", 200),
    Endpoint("post", "/api/calls/{ended}/continue/", 409, {"message": "Still there?"}),
    Endpoint("post", "/api/calls/{live}/speak/", 200, {"message": "Hello"}),
    Endpoint("post", "/api/calls/{live}/dtmf/", 200, {"digits": "12#"}),
    Endpoint("post", "/api/calls/{live}/end/", 200),
    Endpoint("get", "/api/calls/{live}/transcript/", 200),
    Endpoint("get", "/api/calls/{live}/events/", 200),
    Endpoint("get", "/api/schema/", 200),
    Endpoint("get", "/api/docs/", 200),
]


def _id(endpoint: Endpoint) -> str:
    return f"{endpoint.method.upper()} {endpoint.path}"


def _params(*, without: tuple[str, ...] = ()) -> list[Any]:
    return [
        pytest.param(endpoint, id=_id(endpoint))
        for endpoint in ENDPOINTS
        if endpoint.path not in without
    ]


def _send(client: APIClient, endpoint: Endpoint, calls: dict[str, str]) -> Any:
    path = endpoint.path.format(**calls)
    body = endpoint.body
    if isinstance(body, dict):
        body = {k: v.format(**calls) if isinstance(v, str) else v for k, v in body.items()}
    if endpoint.method == "get":
        return client.get(path)
    return client.post(path, body, format="json")


def _client(authorization: str | None = None) -> APIClient:
    client = APIClient()
    if authorization is not None:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    return client


# Without any credentials the docs page sends a browser to the admin login instead
# (tests/api/test_schema.py); a wrong token is still 401 below.
@pytest.mark.parametrize("endpoint", _params(without=("/api/docs/",)))
def test_request_without_a_bearer_token_is_answered_401_and_changes_nothing(
    endpoint: Endpoint, calls: dict[str, str], mock_carrier: Any
) -> None:
    before = Call.objects.count()

    response = _send(_client(), endpoint, calls)

    assert response.status_code == 401
    assert mock_carrier.sent == []
    assert Call.objects.count() == before


@pytest.mark.parametrize("endpoint", _params())
def test_request_with_an_unknown_token_is_answered_401(
    endpoint: Endpoint, calls: dict[str, str], mock_carrier: Any
) -> None:
    response = _send(_client("Bearer vc_not-a-real-token"), endpoint, calls)

    assert response.status_code == 401
    assert mock_carrier.sent == []


@pytest.mark.parametrize("endpoint", _params())
def test_request_with_a_revoked_token_is_answered_401(
    endpoint: Endpoint, calls: dict[str, str], mock_carrier: Any
) -> None:
    created = token_create(name="soon revoked")
    token_revoke(token_id=created.token.pk)

    response = _send(_client(f"Bearer {created.secret}"), endpoint, calls)

    assert response.status_code == 401
    assert mock_carrier.sent == []


@pytest.mark.parametrize("endpoint", _params())
def test_request_with_a_created_token_is_served(endpoint: Endpoint, calls: dict[str, str]) -> None:
    created = token_create(name="gateway")

    response = _send(_client(f"Bearer {created.secret}"), endpoint, calls)

    assert response.status_code == endpoint.ok_status


@pytest.mark.parametrize("endpoint", _params())
def test_request_with_the_static_voicecall_api_token_is_served(
    endpoint: Endpoint, calls: dict[str, str], settings: Any
) -> None:
    settings.VOICECALL_API_TOKEN = "static-token-from-the-environment"

    response = _send(_client("Bearer static-token-from-the-environment"), endpoint, calls)

    assert response.status_code == endpoint.ok_status


def test_a_revoked_token_worked_before_it_was_revoked() -> None:
    created = token_create(name="gateway")
    client = _client(f"Bearer {created.secret}")
    assert client.get("/api/calls/").status_code == 200

    token_revoke(token_id=created.token.pk)

    assert client.get("/api/calls/").status_code == 401


def test_an_expired_token_is_answered_401() -> None:
    created = token_create(name="short lived", ttl=timedelta(seconds=-1))

    assert _client(f"Bearer {created.secret}").get("/api/calls/").status_code == 401


def test_a_wrong_static_token_is_answered_401_when_voicecall_api_token_is_set(
    settings: Any,
) -> None:
    settings.VOICECALL_API_TOKEN = "static-token-from-the-environment"

    response = _client("Bearer static-token-from-the-environmenT").get("/api/calls/")

    assert response.status_code == 401


def test_an_empty_voicecall_api_token_does_not_accept_an_empty_bearer(settings: Any) -> None:
    settings.VOICECALL_API_TOKEN = ""

    assert _client("Bearer ").get("/api/calls/").status_code == 401
    assert _client("Bearer").get("/api/calls/").status_code == 401


def test_a_non_bearer_scheme_is_answered_401(api_token: str) -> None:
    response = _client(f"Basic {api_token}").get("/api/calls/")

    assert response.status_code == 401


def test_the_bearer_keyword_is_case_insensitive(api_token: str) -> None:
    assert _client(f"bearer {api_token}").get("/api/calls/").status_code == 200


def test_a_401_names_the_bearer_scheme_and_uses_the_api_error_shape() -> None:
    missing = _client().get("/api/calls/")
    wrong = _client("Bearer vc_nope").get("/api/calls/")

    assert missing["WWW-Authenticate"] == "Bearer"
    assert missing.json()["code"] == "UNAUTHORIZED"
    assert wrong["WWW-Authenticate"] == "Bearer"
    assert wrong.json() == {"error": "Invalid or revoked API token", "code": "UNAUTHORIZED"}


def test_a_used_token_records_its_last_use() -> None:
    created = token_create(name="gateway")
    assert created.token.last_used_at is None

    _client(f"Bearer {created.secret}").get("/api/calls/")

    assert ApiToken.objects.get(pk=created.token.pk).last_used_at is not None


def test_tokens_are_stored_hashed_never_in_clear() -> None:
    created = token_create(name="gateway")

    row = ApiToken.objects.get(pk=created.token.pk)
    assert created.secret not in (row.key_hash, row.prefix, row.name)
    assert len(row.key_hash) == 64


def test_webhooks_and_probes_need_no_api_token(mock_carrier: Any) -> None:
    client = _client()

    assert client.get("/healthz").status_code == 200
    assert (
        client.post(
            "/voice/webhook", {"event": {"type": "call.ringing", "callId": "x"}}, format="json"
        ).status_code
        == 200
    )

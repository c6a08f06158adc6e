"""The token API as `voicecall serve` serves it: ApiEndpoint, without Django's middleware.

docs/performance.md, "API path"; docs/security.md, "The API". The rules of
tests/api/test_auth.py are checked again through the served stack (tests/fakes/served.py),
because served requests no longer pass the middleware that the test client runs.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from calls.models import Call
from calls.services.tokens import token_create, token_revoke
from calls.web import api_endpoint
from tests.api.test_auth import ENDPOINTS, Endpoint
from tests.fakes.served import ServedClient, ServedResponse

pytestmark = pytest.mark.django_db

# The docs page and schema keep the full stack (a browser session may open them).
FAST = [e for e in ENDPOINTS if e.path not in ("/api/docs/", "/api/schema/")]


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> tuple[ServedClient, list[str]]:
    """The served stack, and the paths ApiEndpoint answered."""
    answered: list[str] = []
    respond = api_endpoint._respond

    def spy(scope: dict[str, Any], body: bytes) -> Any:
        answered.append(scope["path"])
        return respond(scope, body)

    monkeypatch.setattr(api_endpoint, "_respond", spy)
    return ServedClient(), answered


def send(
    client: ServedClient, endpoint: Endpoint, calls: dict[str, str], token: str | None
) -> ServedResponse:
    path = endpoint.path.format(**calls)
    extra = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
    if endpoint.method == "get":
        return client.get(path, **extra)
    body = json.dumps(endpoint.body or {}).replace("{live}", calls["live"])
    return client.post(path, body.replace("{ended}", calls["ended"]), "application/json", **extra)


@pytest.mark.parametrize("endpoint", [pytest.param(e, id=f"{e.method} {e.path}") for e in FAST])
def test_without_a_token_every_api_view_answers_401_on_the_fast_path(
    endpoint: Endpoint,
    calls: dict[str, str],
    served: tuple[ServedClient, list[str]],
    mock_carrier: Any,
) -> None:
    client, answered = served
    before = Call.objects.count()

    missing = send(client, endpoint, calls, None)
    unknown = send(client, endpoint, calls, "vc_not-a-real-token")

    assert (missing.status_code, unknown.status_code) == (401, 401)
    assert missing["WWW-Authenticate"] == "Bearer"
    assert mock_carrier.sent == []
    assert Call.objects.count() == before
    assert answered == [endpoint.path.format(**calls)] * 2


@pytest.mark.parametrize("endpoint", [pytest.param(e, id=f"{e.method} {e.path}") for e in FAST])
def test_with_a_token_every_api_view_is_served_on_the_fast_path(
    endpoint: Endpoint, calls: dict[str, str], served: tuple[ServedClient, list[str]]
) -> None:
    client, answered = served

    response = send(client, endpoint, calls, token_create(name="gateway").secret)

    assert response.status_code == endpoint.ok_status
    assert answered == [endpoint.path.format(**calls)]
    # What the skipped middleware would have added.
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"


def test_a_revoked_token_is_refused_on_the_fast_path(
    served: tuple[ServedClient, list[str]],
) -> None:
    client, _ = served
    created = token_create(name="soon revoked")
    assert (
        client.get("/api/calls/", HTTP_AUTHORIZATION=f"Bearer {created.secret}").status_code == 200
    )

    token_revoke(token_id=created.token.pk)

    assert (
        client.get("/api/calls/", HTTP_AUTHORIZATION=f"Bearer {created.secret}").status_code == 401
    )


def test_the_docs_and_schema_and_unknown_paths_keep_the_full_stack(
    served: tuple[ServedClient, list[str]], api_token: str
) -> None:
    client, answered = served
    auth = {"HTTP_AUTHORIZATION": f"Bearer {api_token}"}

    assert client.get("/api/schema/", **auth).status_code == 200
    assert client.get("/api/docs/").status_code in (200, 302)
    assert client.get("/api/no-such-thing", **auth).status_code == 404

    assert answered == []


def test_a_host_not_allowed_is_refused_as_django_would(
    served: tuple[ServedClient, list[str]], api_token: str, settings: Any
) -> None:
    client, _ = served
    settings.ALLOWED_HOSTS = ["voice.example.com"]

    response = client.get(
        "/api/calls/", HTTP_AUTHORIZATION=f"Bearer {api_token}", HTTP_HOST="evil.example"
    )

    assert response.status_code == 400


def test_a_body_past_djangos_limit_is_answered_413_before_the_view(
    served: tuple[ServedClient, list[str]], api_token: str, settings: Any, mock_carrier: Any
) -> None:
    client, answered = served
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    body = json.dumps({"to": "+15555550199", "message": "x" * 2000})

    response = client.post(
        "/api/calls/", body, "application/json", HTTP_AUTHORIZATION=f"Bearer {api_token}"
    )

    assert response.status_code == 413
    assert answered == []
    assert mock_carrier.sent == []


def test_a_view_that_crashes_answers_500_and_the_next_request_is_served(
    served: tuple[ServedClient, list[str]],
    api_token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, _ = served
    auth = {"HTTP_AUTHORIZATION": f"Bearer {api_token}"}

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr("calls.api.rest.call_list", broken, raising=False)
    monkeypatch.setattr("calls.api.rest.CallListCreateApi.get", broken)
    crashed = client.get("/api/calls/", **auth)
    monkeypatch.undo()

    assert crashed.status_code == 500
    assert b"boom" not in crashed.content
    assert client.get("/api/tools/voice_call", **auth).status_code == 200

"""GET /metrics through real requests: the token, public mode, and what a call driven through
the mock carrier leaves in the exposition (docs/operations.md, "Metrics")."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from django.test import Client, override_settings
from rest_framework.test import APIClient

from calls.carrier import set_provider
from calls.models import Call
from providers.errors import ProviderError
from providers.mock import MockProvider
from tests.metrics_samples import parse, sample

pytestmark = pytest.mark.django_db

HOOK = "/voice/webhook"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(api: APIClient) -> Samples:
    response = api.get("/metrics")
    assert response.status_code == 200, response.content
    return parse(response.content)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def hook(client: Client, type_: str, call_id: str, **fields: Any) -> None:
    body = {"event": {"type": type_, "callId": call_id, **fields}}
    response = client.post(HOOK, json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content


def test_metrics_without_a_token_is_401(client: Client) -> None:
    response = client.get("/metrics")

    assert response.status_code == 401
    assert response.json()["code"] == "UNAUTHORIZED"


def test_metrics_with_a_revoked_or_made_up_token_is_401(client: Client) -> None:
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-a-token")

    assert response.status_code == 401


def test_metrics_with_the_api_token_is_the_text_format(api: APIClient, mock_carrier: Any) -> None:
    response = api.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = parse(response.content)
    assert value(samples, "voicecall_active_calls", provider="mock") == 0
    assert ("voicecall_streams_active", frozenset()) in samples


def test_a_scraper_asking_for_openmetrics_gets_it(api: APIClient) -> None:
    response = api.get("/metrics", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert response.content.endswith(b"# EOF\n")


@override_settings(VOICECALL_METRICS_PUBLIC=True)
def test_public_metrics_need_no_token(client: Client) -> None:
    response = client.get("/metrics", HTTP_ACCEPT="text/plain")

    assert response.status_code == 200
    assert b"voicecall_active_calls" in response.content


def test_a_missing_metrics_directory_is_a_clear_503(api: APIClient, tmp_path: Any) -> None:
    with override_settings(PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "gone")):
        response = api.get("/metrics")

    assert response.status_code == 503
    assert "metrics directory" in response.json()["error"]
    assert str(tmp_path / "gone") in response.json()["error"]


def test_a_call_through_the_mock_carrier_is_counted(
    api: APIClient,
    client: Client,
    mock_carrier: Any,
    make_call: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    call = make_call(state="answered")
    before = scrape(api)
    assert value(before, "voicecall_active_calls", provider="mock") == 1
    ended = {
        "provider": "mock",
        "direction": "outbound",
        "mode": "conversation",
        "end_reason": "completed",
    }

    with django_capture_on_commit_callbacks(execute=True):
        hook(client, "call.speech", call.call_id, id="m-1", transcript="hello", isFinal=True)
        hook(client, "call.ended", call.call_id, id="m-2", reason="completed")

    after = scrape(api)
    webhooks = ("voicecall_webhooks_total", {"provider": "mock", "status": "200"})
    assert value(after, webhooks[0], **webhooks[1]) - value(before, webhooks[0], **webhooks[1]) == 2
    timed = ("voicecall_webhook_seconds_count", {"provider": "mock"})
    assert value(after, timed[0], **timed[1]) - value(before, timed[0], **timed[1]) == 2
    assert (
        value(after, "voicecall_calls_total", **ended)
        - value(before, "voicecall_calls_total", **ended)
        == 1
    )
    turn = ("voicecall_turn_seconds_count", {"stage": "transcript"})
    assert value(after, turn[0], **turn[1]) - value(before, turn[0], **turn[1]) == 1
    assert value(after, "voicecall_active_calls", provider="mock") == 0
    assert Call.objects.get(pk=call.pk).end_reason == "completed"


def test_a_refused_webhook_is_counted_with_its_status(
    api: APIClient, client: Client, mock_carrier: Any
) -> None:
    before = sample("voicecall_webhooks_total", provider="mock", status="400")

    response = client.post(HOOK, "{not json", content_type="application/json")

    assert response.status_code == 400
    assert sample("voicecall_webhooks_total", provider="mock", status="400") == before + 1


def test_a_carrier_refusing_the_dial_is_a_provider_error(
    api: APIClient, mock_carrier: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(request: Any) -> Any:
        raise ProviderError("carrier busy")

    monkeypatch.setattr(mock_carrier, "place_call", refuse)
    before = value(scrape(api), "voicecall_provider_errors_total", provider="mock", kind="dial")

    response = api.post("/api/calls/", {"to": "+15550009999", "message": "Hi"}, format="json")

    assert response.status_code == 502
    after = value(scrape(api), "voicecall_provider_errors_total", provider="mock", kind="dial")
    assert after == before + 1


def test_samples_of_every_process_are_added_up(api: APIClient, mock_carrier: Any) -> None:
    labels = {"provider": "mock", "status": "202"}
    before = value(scrape(api), "voicecall_webhooks_total", **labels)
    from calls import metrics

    metrics.webhook_handled(provider="mock", status=202, seconds=0.01)
    # A second process writing to the same directory (its own pid file), as a server or a
    # Celery worker beside this one would.
    other = (
        "from prometheus_client import Counter\n"
        "Counter('voicecall_webhooks', 'x', ['provider', 'status'])"
        ".labels('mock', '202').inc(3)\n"
    )
    subprocess.run([sys.executable, "-c", other], check=True)

    assert value(scrape(api), "voicecall_webhooks_total", **labels) == before + 4


class _SignedMock(MockProvider):
    signature_headers = (("x-test-signature",),)


def test_webhooks_refused_at_the_gate_are_counted_with_their_status(
    client: Client, configure: Any
) -> None:
    """Method, missing signature headers and size are refused before a carrier's code runs;
    an operator still sees them rise (docs/operations.md, "Metrics")."""
    configure({})
    set_provider(_SignedMock(settings={}))
    before = {
        status: sample("voicecall_webhooks_total", provider="mock", status=status)
        for status in ("405", "401", "413")
    }

    assert client.get(HOOK).status_code == 405
    assert client.post(HOOK, "{}", content_type="application/json").status_code == 401
    big = "x" * (64 * 1024 + 1)
    too_big = client.post(HOOK, big, content_type="text/plain", HTTP_X_TEST_SIGNATURE="s")
    assert too_big.status_code == 413

    for status in ("405", "401", "413"):
        after = sample("voicecall_webhooks_total", provider="mock", status=status)
        assert after == before[status] + 1, status

"""Liveness and readiness probes: no token, JSON, 503 when a dependency fails.

docs/design.md, "6. HTTP and websocket surface".
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from calls.drain import Drain


def test_healthz_answers_200_without_a_token(client: Client) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["ok"] is True


def test_healthz_needs_no_database(client: Client) -> None:
    # No django_db mark: any query here would fail the test.
    assert client.get("/healthz").status_code == 200


@pytest.mark.django_db
def test_readyz_answers_200_with_database_and_channel_layer_ok(client: Client) -> None:
    response = client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["channelLayer"] == "ok"
    if settings.REDIS_URL:
        assert body["checks"]["broker"] == "ok"
    else:
        assert "broker" not in body["checks"]


@pytest.mark.django_db
def test_readyz_answers_503_when_the_channel_layer_is_missing(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("calls.web.health.get_channel_layer", lambda: None)

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["ok"] is False
    assert body["checks"]["channelLayer"] == "error: not configured"
    assert body["checks"]["database"] == "ok"


@pytest.mark.django_db
def test_readyz_answers_503_when_the_channel_layer_fails(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Broken:
        async def group_send(self, group: str, message: dict[str, Any]) -> None:
            raise ConnectionError("redis down")

    monkeypatch.setattr("calls.web.health.get_channel_layer", lambda: Broken())

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["channelLayer"] == "error: ConnectionError"


@pytest.mark.django_db
def test_readyz_answers_503_when_the_database_fails(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_cursor(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database is gone")

    monkeypatch.setattr(connection, "cursor", broken_cursor)

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "error: RuntimeError"


@pytest.mark.django_db
def test_readyz_answers_503_at_once_while_the_process_drains(
    client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # docs/architecture.md, "Graceful drain": the load balancer stops sending new work.
    drain = Drain()
    monkeypatch.setattr("calls.drain.DRAIN", drain)
    assert client.get("/readyz").json()["draining"] is False
    drain.begin(seconds=30, now=0.0)

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {"ok": False, "draining": True, "checks": {}}
    # Expected during a drain: not logged as a server error on every probe.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # Liveness is not readiness: the process is alive and finishing its streams.
    assert client.get("/healthz").status_code == 200

"""Shared fixtures: config, the mock carrier, API clients, call factory; no network."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from channels.layers import channel_layers
from django.utils import timezone
from rest_framework.test import APIClient

from calls import carrier as runtime
from calls import clock
from calls.carrier import set_provider
from calls.config import parse_config, reset_config, set_config
from calls.models import Call
from calls.services.tokens import token_create
from providers.mock import MockProvider


class _NoNetwork(httpx.BaseTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"unexpected network call in tests: {request.url}")


def _test_config(raw: dict[str, Any] | None, env: dict[str, str] | None) -> Any:
    """The mock carrier must not call back over HTTP in tests unless a test asks for it."""
    raw = dict(raw or {})
    raw.setdefault("mock", {}).setdefault("simulate", False)
    return parse_config(raw, env or {})


@pytest.fixture(autouse=True)
def _isolate(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts from default config and a non-simulating mock carrier."""
    set_config(_test_config(None, None))
    set_provider(None)
    yield
    set_provider(None)
    reset_config()


@pytest.fixture(autouse=True)
def _fresh_channel_layers() -> Iterator[None]:
    """Every test gets channel layer instances of its own, as it gets an event loop of its own.

    A channels-redis instance keeps per-channel asyncio locks across calls, and one whose
    waiter was cancelled is never dropped (channels-redis 4.3): it stays bound to the loop
    it was contended on, so a later test's loop that contends for it fails with "bound to a
    different event loop" and its stream never attaches. A server runs one loop for its
    life, where this cannot happen; a test suite runs thousands.
    """
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture
def configure() -> Any:
    """configure({...plugin config...}) -> VoiceCallConfig, installed for the test.

    A carrier installed by `mock_carrier` survives reconfiguration, so a test can
    configure after asking for the fixture and still inspect what was sent.
    """

    def _configure(raw: dict[str, Any] | None = None, env: dict[str, str] | None = None):
        cfg = _test_config(raw, env)
        set_config(cfg)
        if not (isinstance(runtime._provider, MockProvider) and cfg.provider == "mock"):
            set_provider(None)
        return cfg

    return _configure


@pytest.fixture
def mock_carrier(configure: Any) -> MockProvider:
    """The mock carrier without simulation; `.sent` records every carrier command."""
    provider = MockProvider(settings={"simulate": False})
    set_provider(provider)
    return provider


class FakeClock:
    """Replaces calls.clock: time moves only when a test (or a sleeping waiter) moves it."""

    def __init__(self, start: datetime) -> None:
        self.current = start
        self.on_sleep: list[Any] = []

    def now(self) -> datetime:
        return self.current

    def advance(self, **kwargs: float) -> datetime:
        self.current += timedelta(**kwargs)
        return self.current

    def sleep(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)
        for hook in list(self.on_sleep):
            hook(self)


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock(timezone.now().replace(microsecond=0))
    monkeypatch.setattr(clock, "now", fake.now)
    monkeypatch.setattr(clock, "sleep", fake.sleep)
    return fake


@pytest.fixture
def api_token(db: Any) -> str:
    return token_create(name="tests").secret


@pytest.fixture
def api(api_token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token}")
    return client


@pytest.fixture
def make_call(db: Any) -> Any:
    def _make(**fields: Any) -> Call:
        defaults: dict[str, Any] = {
            "provider": "mock",
            "direction": Call.Direction.OUTBOUND,
            "mode": Call.Mode.CONVERSATION,
            "state": "answered",
            "from_number": "+15550000000",
            "to_number": "+15555550123",
            "webhook_url": "http://127.0.0.1:3334/voice/webhook",
        }
        defaults.update(fields)
        if "provider_call_id" not in fields:
            call = Call.objects.create(**defaults)
            Call.objects.filter(pk=call.pk).update(provider_call_id=f"mock-{call.public_id}")
            call.refresh_from_db()
            return call
        return Call.objects.create(**defaults)

    return _make


@pytest.fixture(autouse=True)
def _block_network(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("e2e"):
        return
    original = httpx.Client.__init__

    def guarded(self: httpx.Client, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("transport", _NoNetwork())
        original(self, *args, **kwargs)

    monkeypatch.setattr(httpx.Client, "__init__", guarded)

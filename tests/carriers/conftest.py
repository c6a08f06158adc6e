"""The `carrier` fixture: a driver for each carrier adapter, installed on its fake REST API."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from calls.carrier import set_provider
from tests.fakes.carriers import DRIVERS
from tests.fakes.carriers.base import CarrierDriver
from tests.fakes.served import ServedClient


class Carrier:
    """A started driver: config installed, real adapter on the fake API in the runtime."""

    def __init__(self, driver: CarrierDriver, configure: Any) -> None:
        self.driver = driver
        self._configure = configure

    def start(self, **overrides: Any) -> CarrierDriver:
        cfg = self._configure(self.driver.config(**overrides))
        set_provider(self.driver.adapter(cfg))
        return self.driver


@pytest.fixture(params=["served", "django-view"])
def client(request: pytest.FixtureRequest) -> Any:
    """Every carrier test runs twice: through the stack `voicecall serve` serves (the ASGI
    gate, then WebhookEndpoint without Django's middleware; tests/fakes/served.py) and
    through Django's test client, which reaches the same view as a WSGI server would."""
    return ServedClient() if request.param == "served" else Client()


@pytest.fixture
def start_carrier(request: pytest.FixtureRequest, configure: Any) -> Carrier:
    """`start_carrier.start(**config overrides)` -> the driver; param = the carrier name."""
    name = getattr(request, "param", "twilio")
    return Carrier(DRIVERS[name](), configure)


@pytest.fixture
def carrier(start_carrier: Carrier) -> CarrierDriver:
    """The driver, started with its default config."""
    return start_carrier.start()

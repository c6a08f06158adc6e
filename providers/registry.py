"""Carrier registry: config `provider` name -> adapter, built lazily."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.utils.module_loading import import_string

from providers.base import TelephonyProvider
from providers.errors import UnknownProvider

PROVIDERS: dict[str, str] = {
    "mock": "providers.mock.MockProvider",
    "twilio": "providers.twilio.TwilioProvider",
    "plivo": "providers.plivo.PlivoProvider",
    "telnyx": "providers.telnyx.TelnyxProvider",
}


def provider_names() -> list[str]:
    return sorted(PROVIDERS)


def build_provider(name: str, *, settings: Mapping[str, Any]) -> TelephonyProvider:
    """Instantiate the adapter `name` with its config block; raises UnknownProvider."""
    try:
        path = PROVIDERS[name]
    except KeyError:
        raise UnknownProvider(f"Unknown provider: {name}") from None
    factory = import_string(path)
    return factory(settings=settings)

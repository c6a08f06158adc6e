"""Realtime speech-to-text: build the session the `streaming` config block asks for."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from providers.errors import ProviderNotConfigured
from providers.stt.base import SttCallbacks, SttSession
from providers.stt.openai_realtime import OpenAiRealtimeStt

__all__ = ["SttCallbacks", "SttSession", "build_stt"]

SUPPORTED = ("openai",)


def build_stt(settings: Mapping[str, Any], callbacks: SttCallbacks) -> SttSession:
    """A session from the `streaming` block: provider (default "openai") and providers.<id>."""
    provider = str(settings.get("provider") or "openai").strip()
    if provider not in SUPPORTED:
        raise ProviderNotConfigured(
            f'streaming.provider "{provider}" is not supported; use "openai"'
        )
    providers = settings.get("providers")
    block = providers.get(provider) if isinstance(providers, Mapping) else None
    return OpenAiRealtimeStt.from_settings(block if isinstance(block, Mapping) else {}, callbacks)

"""Realtime voice (full-duplex speech-to-speech): build the session the `realtime` config
block asks for.

docs/plugin-behaviour.md, "Streaming and realtime settings" and "Realtime voice".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from providers.errors import ProviderNotConfigured
from providers.realtime.base import RealtimeHandler, RealtimeSession
from providers.realtime.openai import END_CALL_TOOL, OpenAiRealtime

__all__ = ["END_CALL_TOOL", "RealtimeHandler", "RealtimeSession", "build_realtime"]

SUPPORTED = ("openai",)


def build_realtime(settings: Mapping[str, Any], handler: RealtimeHandler) -> RealtimeSession:
    """A session from the `realtime` block: provider (default "openai") and providers.<id>."""
    provider = str(settings.get("provider") or "openai").strip()
    if provider not in SUPPORTED:
        raise ProviderNotConfigured(
            f'realtime.provider "{provider}" is not supported; use "openai"'
        )
    providers = settings.get("providers")
    block = providers.get(provider) if isinstance(providers, Mapping) else None
    return OpenAiRealtime.from_settings(block if isinstance(block, Mapping) else {}, handler)

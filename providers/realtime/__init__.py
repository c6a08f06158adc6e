"""Realtime voice (full-duplex speech-to-speech): build the session the `realtime` config
block asks for.

docs/plugin-behaviour.md, "Streaming and realtime settings" and "Realtime voice".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from providers.common import api_key_setting, openai_probe, selected_provider
from providers.realtime.base import RealtimeHandler, RealtimeSession
from providers.realtime.openai import (
    DEFAULT_MODEL,
    END_CALL_TOOL,
    SETTINGS_PATH,
    OpenAiRealtime,
    realtime_url,
)

__all__ = [
    "END_CALL_TOOL",
    "RealtimeHandler",
    "RealtimeSession",
    "build_realtime",
    "realtime_probe",
]

SUPPORTED = ("openai",)


def realtime_name(settings: Mapping[str, Any]) -> str:
    """The provider id the `realtime` block selects (default "openai")."""
    return selected_provider(settings, "realtime", SUPPORTED)[0]


def build_realtime(settings: Mapping[str, Any], handler: RealtimeHandler) -> RealtimeSession:
    """A session from the `realtime` block: provider (default "openai") and providers.<id>."""
    _, block = selected_provider(settings, "realtime", SUPPORTED)
    return OpenAiRealtime.from_settings(block, handler)


def realtime_probe(settings: Mapping[str, Any]) -> httpx.Request:
    """The request that checks the `realtime` block's key, no session opened;
    ProviderNotConfigured when the key is missing (`voicecall setup`)."""
    _, block = selected_provider(settings, "realtime", SUPPORTED)
    api_key = api_key_setting(block, path=SETTINGS_PATH, env="OPENAI_API_KEY")
    base_url = str(block.get("baseUrl") or "") or None
    return openai_probe(realtime_url(base_url, DEFAULT_MODEL), api_key)

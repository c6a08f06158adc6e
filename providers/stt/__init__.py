"""Realtime speech-to-text: build the session the `streaming` config block asks for."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from providers.common import api_key_setting, openai_probe, selected_provider
from providers.stt.base import SttCallbacks, SttSession
from providers.stt.openai_realtime import SETTINGS_PATH, OpenAiRealtimeStt, realtime_url

__all__ = ["SttCallbacks", "SttSession", "build_stt", "stt_probe"]

SUPPORTED = ("openai",)


def stt_name(settings: Mapping[str, Any]) -> str:
    """The provider id the `streaming` block selects (default "openai")."""
    return selected_provider(settings, "streaming", SUPPORTED)[0]


def build_stt(settings: Mapping[str, Any], callbacks: SttCallbacks) -> SttSession:
    """A session from the `streaming` block: provider (default "openai") and providers.<id>."""
    _, block = selected_provider(settings, "streaming", SUPPORTED)
    return OpenAiRealtimeStt.from_settings(block, callbacks)


def stt_probe(settings: Mapping[str, Any]) -> httpx.Request:
    """The request that checks the `streaming` block's key, no session opened;
    ProviderNotConfigured when the key is missing (`voicecall setup`)."""
    _, block = selected_provider(settings, "streaming", SUPPORTED)
    api_key = api_key_setting(block, path=SETTINGS_PATH, env="OPENAI_API_KEY")
    return openai_probe(realtime_url(str(block.get("baseUrl") or "") or None), api_key)

"""Streaming telephony TTS: build the provider the merged `tts` config selects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from providers.common import preferred_voice
from providers.errors import ProviderNotConfigured
from providers.tts.base import DEFAULT_TIMEOUT_MS, TtsProvider, TtsSetup
from providers.tts.elevenlabs import ElevenLabsTts
from providers.tts.openai import OpenAiTts

__all__ = ["TtsProvider", "build_tts"]

_BUILDERS = {"openai": OpenAiTts.from_settings, "elevenlabs": ElevenLabsTts.from_settings}
# Microsoft/Edge speech has no telephony output
# (docs/plugin-behaviour.md, "TTS config and voice lookup").
_NO_TELEPHONY = ("microsoft", "edge")


def build_tts(tts: Mapping[str, Any], *, http: httpx.AsyncClient | None = None) -> TtsProvider:
    """The TTS provider of the merged `tts` config (plugin tts over messages.tts)."""
    providers = tts.get("providers")
    providers = providers if isinstance(providers, Mapping) else {}
    name = _provider_name(tts, providers)
    if name in _NO_TELEPHONY:
        raise ProviderNotConfigured(f'TTS provider "{name}" has no telephony output')
    builder = _BUILDERS.get(name)
    if builder is None:
        raise ProviderNotConfigured(
            f'TTS provider "{name}" is not supported for calls; use "openai" or "elevenlabs"'
        )
    block = providers.get(name)
    setup = TtsSetup(
        voice=preferred_voice({**tts, "provider": name}),
        timeout_ms=int(tts.get("timeoutMs") or DEFAULT_TIMEOUT_MS),
        http=http,
    )
    return builder(block if isinstance(block, Mapping) else {}, setup)


def _provider_name(tts: Mapping[str, Any], providers: Mapping[str, Any]) -> str:
    """tts.provider, else the first of openai/elevenlabs that has an apiKey."""
    name = str(tts.get("provider") or "").strip().lower()
    if name:
        return name
    for candidate in _BUILDERS:
        block = providers.get(candidate)
        if isinstance(block, Mapping) and str(block.get("apiKey") or "").strip():
            return candidate
    raise ProviderNotConfigured(
        "tts.provider is not set and neither tts.providers.openai.apiKey nor "
        "tts.providers.elevenlabs.apiKey is configured"
    )

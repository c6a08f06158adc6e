"""Realtime speech-to-text: build the session the `streaming` config block asks for."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from providers.common import selected_provider
from providers.stt.base import SttCallbacks, SttSession
from providers.stt.openai_realtime import OpenAiRealtimeStt

__all__ = ["SttCallbacks", "SttSession", "build_stt"]

SUPPORTED = ("openai",)


def build_stt(settings: Mapping[str, Any], callbacks: SttCallbacks) -> SttSession:
    """A session from the `streaming` block: provider (default "openai") and providers.<id>."""
    _, block = selected_provider(settings, "streaming", SUPPORTED)
    return OpenAiRealtimeStt.from_settings(block, callbacks)

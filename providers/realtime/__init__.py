"""Realtime voice (full-duplex speech-to-speech): build the session the `realtime` config
block asks for.

docs/plugin-behaviour.md, "Streaming and realtime settings" and "Realtime voice".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from providers.common import selected_provider
from providers.realtime.base import RealtimeHandler, RealtimeSession
from providers.realtime.openai import END_CALL_TOOL, OpenAiRealtime

__all__ = ["END_CALL_TOOL", "RealtimeHandler", "RealtimeSession", "build_realtime"]

SUPPORTED = ("openai",)


def build_realtime(settings: Mapping[str, Any], handler: RealtimeHandler) -> RealtimeSession:
    """A session from the `realtime` block: provider (default "openai") and providers.<id>."""
    _, block = selected_provider(settings, "realtime", SUPPORTED)
    return OpenAiRealtime.from_settings(block, handler)

"""Older config shapes moved to where the current schema expects them, each with a warning.

Configs written for earlier plugin versions must keep loading, and their owners must learn
what to change (docs/plugin-behaviour.md, "Config shape and defaults", "Legacy shapes").
Runs before the schema check, so nothing here trusts the document's shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from calls.config.schema import PLUGIN_PATH, block_at

# Flat v4.12 streaming keys -> their place in streaming.providers.openai.
_LEGACY_STREAMING = {
    "openaiApiKey": "apiKey",
    "sttModel": "model",
    "silenceDurationMs": "silenceDurationMs",
    "vadThreshold": "vadThreshold",
}
_LEGACY_TTS_PROVIDERS = ("openai", "elevenlabs", "microsoft", "edge")


def migrate(data: dict[str, Any], warnings: list[str]) -> None:
    """Rewrite the plugin object in place: `provider: "log"`, `twilio.from`, `stt`, and the
    flat streaming keys."""

    def warn(message: str) -> None:
        warnings.append(f"{PLUGIN_PATH}.{message}")

    if data.get("provider") == "log":
        data["provider"] = "mock"
        warn('provider "log" is deprecated; using "mock"')
    twilio = block_at(data, "twilio")
    if "from" in twilio:
        legacy = twilio.pop("from")
        if data.get("fromNumber") is None:
            data["fromNumber"] = legacy
            warn("twilio.from is deprecated; moved to fromNumber")
        else:
            warn("twilio.from is ignored because fromNumber is set")
    if data.pop("stt", None) is not None:
        warn("stt is no longer used and was ignored")
    _migrate_streaming(block_at(data, "streaming"), warn)


def _migrate_streaming(streaming: dict[str, Any], warn: Callable[[str], None]) -> None:
    if "sttProvider" in streaming:
        legacy = streaming.pop("sttProvider")
        # v4.12 named the OpenAI realtime transcriber "openai-realtime".
        streaming.setdefault(
            "provider", legacy.removesuffix("-realtime") if isinstance(legacy, str) else legacy
        )
        warn("streaming.sttProvider is deprecated; moved to streaming.provider")
    for old, new in _LEGACY_STREAMING.items():
        if old in streaming:
            providers = streaming.setdefault("providers", {})
            if isinstance(providers, dict):  # values already in the new place win
                providers["openai"] = {new: streaming[old], **block_at(providers, "openai")}
            del streaming[old]
            warn(f"streaming.{old} is deprecated; moved to streaming.providers.openai.{new}")


def pop_tts_provider_blocks(tts: dict[str, Any], warnings: list[str]) -> list[tuple[str, Any]]:
    """Take the old tts.<id> blocks out of a merged tts config, warning for each.

    Older configs (the seed document's examples too) put them at tts.<id>; the caller merges
    each one under tts.providers.<id>, whose own values win.
    """
    moved = []
    for name in _LEGACY_TTS_PROVIDERS:
        if isinstance(tts.get(name), dict):
            moved.append((name, tts.pop(name)))
            warnings.append(
                f"{PLUGIN_PATH}.tts.{name} is a legacy location; treated as tts.providers.{name}"
            )
    return moved

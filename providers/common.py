"""Small helpers every carrier adapter shares: its config values and the configured TTS voice."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from providers.errors import ProviderNotConfigured

# The preferred voice of tts.providers[tts.provider], newest key first
# (docs/plugin-behaviour.md, "TTS config and voice lookup").
VOICE_KEYS = ("speakerVoice", "speakerVoiceId", "voice", "voiceId")


def block_value(settings: Mapping[str, Any], block: str, key: str) -> str:
    """A `<block>.<key>` setting as a stripped string ("" when unset).

    calls.runtime spreads the carrier's own block into the settings; a nested block
    (as in the raw config) is read too.
    """
    value = settings.get(key)
    nested = settings.get(block)
    if value is None and isinstance(nested, Mapping):
        value = nested.get(key)
    return str(value).strip() if value is not None else ""


# The language of the selected TTS provider (ElevenLabs languageCode, Edge lang, …).
LANGUAGE_KEYS = ("languageCode", "language", "lang", "locale")


def preferred_voice(tts: Any) -> str | None:
    """The voice configured for the selected TTS provider, if any."""
    return _selected(tts, VOICE_KEYS)


def preferred_language(tts: Any) -> str | None:
    """The language configured for the selected TTS provider (e.g. "es-ES"), if any."""
    return _selected(tts, LANGUAGE_KEYS)


def _selected(tts: Any, keys: tuple[str, ...]) -> str | None:
    if not isinstance(tts, Mapping):
        return None
    providers = tts.get("providers")
    block = providers.get(tts.get("provider")) if isinstance(providers, Mapping) else None
    if not isinstance(block, Mapping):
        return None
    for key in keys:
        value = block.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


OPENAI_BASE_URL = "https://api.openai.com"


def openai_realtime_url(base_url: str | None, query: str) -> str:
    """ws(s)://<host>/v1/realtime?<query> from an http(s) or ws(s) OpenAI base URL."""
    parts = urlsplit((base_url or OPENAI_BASE_URL).strip())
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    # OpenAI base URLs are often written with the /v1 suffix; do not double it.
    path = parts.path.rstrip("/").removesuffix("/v1")
    return urlunsplit((scheme, parts.netloc, f"{path}/v1/realtime", query, ""))


def number_setting(block: Mapping[str, Any], key: str, default: float, *, path: str) -> float:
    """A numeric provider setting (default when unset); ProviderNotConfigured naming `path`."""
    value = block.get(key)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ProviderNotConfigured(f"{path}.{key} must be a number") from None

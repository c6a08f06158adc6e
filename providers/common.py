"""Small helpers every carrier adapter shares: its config values and the configured TTS voice."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# reference §2.5: the preferred voice of tts.providers[tts.provider], newest key first.
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

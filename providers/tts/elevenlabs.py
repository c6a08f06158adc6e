"""ElevenLabs text-to-speech: POST /v1/text-to-speech/{voice_id}/stream.

docs/carriers.md, "Audio: TTS formats and resampling".

`?output_format=ulaw_8000` returns headerless 8 kHz μ-law that goes to the carrier
unchanged; a configured `pcm_<rate>` format is resampled instead, anything else refused.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from providers.common import api_key_setting
from providers.errors import ProviderError, ProviderNotConfigured
from providers.tts.base import DEFAULT_TIMEOUT_MS, TtsProvider, TtsSetup, telephony_converter

DEFAULT_BASE_URL = "https://api.elevenlabs.io"
# OpenClaw's documented defaults (docs.openclaw.ai/providers/elevenlabs).
DEFAULT_MODEL = "eleven_multilingual_v2"
DEFAULT_VOICE_ID = "pMsXgVXv3BLzUgSXRplE"
DEFAULT_OUTPUT_FORMAT = "ulaw_8000"
# Our camelCase config keys → the API's voice_settings keys.
_VOICE_SETTINGS = {
    "stability": "stability",
    "similarityBoost": "similarity_boost",
    "style": "style",
    "useSpeakerBoost": "use_speaker_boost",
    "speed": "speed",
}


class ElevenLabsTts(TtsProvider):
    name = "elevenlabs"

    def __init__(
        self,
        *,
        api_key: str,
        voice_id: str = DEFAULT_VOICE_ID,
        model_id: str = DEFAULT_MODEL,
        output_format: str = DEFAULT_OUTPUT_FORMAT,
        options: Mapping[str, Any] | None = None,
        base_url: str | None = None,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(timeout_ms=timeout_ms, http=http)
        telephony_converter(output_format, self.name)  # refuse mp3 & co. before any call
        self.output_format = output_format
        self._api_key = api_key
        self.voice_id = voice_id
        self.model_id = model_id
        self.options = dict(options or {})
        base = (base_url or DEFAULT_BASE_URL).strip().rstrip("/").removesuffix("/v1")
        self.url = f"{base}/v1/text-to-speech/{quote(voice_id, safe='')}/stream"
        self._models_url = f"{base}/v1/models"

    def probe_request(self) -> httpx.Request:
        # GET /v1/models lists the account's models: free, and 401 for a bad key.
        return httpx.Request("GET", self._models_url, headers={"xi-api-key": self._api_key})

    @classmethod
    def from_settings(cls, block: Mapping[str, Any], setup: TtsSetup) -> ElevenLabsTts:
        """From `tts.providers.elevenlabs` {apiKey, baseUrl, voiceId, modelId, seed,
        applyTextNormalization, languageCode, voiceSettings{…}, outputFormat}."""
        api_key = api_key_setting(block, path="tts.providers.elevenlabs", env="ELEVENLABS_API_KEY")
        fmt = str(block.get("outputFormat") or DEFAULT_OUTPUT_FORMAT)
        try:
            return cls(
                api_key=api_key,
                voice_id=setup.voice or DEFAULT_VOICE_ID,
                model_id=str(block.get("modelId") or DEFAULT_MODEL),
                output_format=fmt,
                options=_options(block),
                base_url=str(block.get("baseUrl") or "") or None,
                timeout_ms=setup.timeout_ms,
                http=setup.http,
            )
        except ProviderError as exc:
            raise ProviderNotConfigured(str(exc)) from None

    def request_body(self, text: str) -> dict[str, Any]:
        return {"text": text, "model_id": self.model_id, **self.options}

    def fetch(self, text: str) -> AsyncGenerator[bytes, None]:
        return self.http_audio(
            self.url,
            headers={"xi-api-key": self._api_key},
            body=self.request_body(text),
            params={"output_format": self.output_format},
        )


def _options(block: Mapping[str, Any]) -> dict[str, Any]:
    """Optional body fields, only those configured (the API applies its own defaults)."""
    options: dict[str, Any] = {}
    for key, api_key in (
        ("seed", "seed"),
        ("applyTextNormalization", "apply_text_normalization"),
        ("languageCode", "language_code"),
    ):
        if block.get(key) not in (None, ""):
            options[api_key] = block[key]
    settings = block.get("voiceSettings")
    if isinstance(settings, Mapping):
        voice_settings = {
            api: settings[ours]
            for ours, api in _VOICE_SETTINGS.items()
            if settings.get(ours) is not None
        }
        if voice_settings:
            options["voice_settings"] = voice_settings
    return options

"""OpenAI text-to-speech: POST /v1/audio/speech, streamed as raw PCM.

`response_format: "pcm"` is 24 kHz, 16-bit signed little-endian mono without a header
(docs/carriers.md, "Audio: TTS formats and resampling"); the base resamples it to 8 kHz
and encodes μ-law as it arrives.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any

import httpx

from providers.common import api_key_setting, openai_probe
from providers.errors import ProviderNotConfigured
from providers.tts.base import DEFAULT_TIMEOUT_MS, TtsProvider, TtsSetup

DEFAULT_BASE_URL = "https://api.openai.com"
DEFAULT_MODEL = "gpt-4o-mini-tts"
DEFAULT_VOICE = "alloy"
SPEED_RANGE = (0.25, 4.0)


def speech_url(base_url: str | None) -> str:
    base = (base_url or DEFAULT_BASE_URL).strip().rstrip("/")
    # OpenAI base URLs are often written with the /v1 suffix; do not double it.
    return f"{base.removesuffix('/v1')}/v1/audio/speech"


class OpenAiTts(TtsProvider):
    name = "openai"
    output_format = "pcm_24000"

    def __init__(
        self,
        *,
        api_key: str,
        model: str = DEFAULT_MODEL,
        voice: str = DEFAULT_VOICE,
        speed: float | None = None,
        instructions: str | None = None,
        base_url: str | None = None,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(timeout_ms=timeout_ms, http=http)
        self.url = speech_url(base_url)
        self._api_key = api_key
        self.model = model
        self.voice = voice
        self.speed = speed
        self.instructions = instructions

    @classmethod
    def from_settings(cls, block: Mapping[str, Any], setup: TtsSetup) -> OpenAiTts:
        """From `tts.providers.openai` {apiKey, baseUrl, model, voice, speed, instructions}."""
        api_key = api_key_setting(block, path="tts.providers.openai", env="OPENAI_API_KEY")
        instructions = str(block.get("instructions") or "").strip() or None
        return cls(
            api_key=api_key,
            model=str(block.get("model") or DEFAULT_MODEL),
            voice=setup.voice or DEFAULT_VOICE,
            speed=_speed(block.get("speed")),
            instructions=instructions,
            base_url=str(block.get("baseUrl") or "") or None,
            timeout_ms=setup.timeout_ms,
            http=setup.http,
        )

    def probe_request(self) -> httpx.Request:
        return openai_probe(self.url, self._api_key)

    def request_body(self, text: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "voice": self.voice,
            "input": text,
            "response_format": "pcm",
        }
        if self.speed is not None:
            body["speed"] = self.speed
        if self.instructions:  # the API rejects instructions for tts-1 / tts-1-hd
            body["instructions"] = self.instructions
        return body

    def fetch(self, text: str) -> AsyncGenerator[bytes, None]:
        headers = {"Authorization": f"Bearer {self._api_key}"}
        return self.http_audio(self.url, headers=headers, body=self.request_body(text))


def _speed(value: Any) -> float | None:
    if value is None or value == "":
        return None
    low, high = SPEED_RANGE
    try:
        speed = float(value)
    except (TypeError, ValueError):
        speed = float("nan")
    if not low <= speed <= high:
        raise ProviderNotConfigured(f"tts.providers.openai.speed must be {low}–{high}")
    return speed

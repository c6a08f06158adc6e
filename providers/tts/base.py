"""Streaming text-to-speech for the phone: vendor audio in, 8 kHz μ-law out.

A provider only fetches the vendor's byte stream (`fetch`); the base turns it into μ-law,
enforces the synthesis timeout and the no-audio rule, and maps HTTP failures, so every
vendor fails with the same plugin strings (docs/plugin-behaviour.md, "Playback on a stream";
docs/carriers.md, "Audio: TTS formats and resampling").
"""

from __future__ import annotations

import asyncio
import json
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import httpx

from providers.audio import Resampler, ulaw_encode
from providers.errors import ProviderError, ProviderUnavailable

DEFAULT_TIMEOUT_MS = 8000
TELEPHONY_RATE = 8000
# Vendor names for "already 8 kHz μ-law": ElevenLabs and Microsoft, passed through
# unchanged as in the plugin.
ULAW_8K_FORMATS = frozenset({"ulaw_8000", "raw-8khz-8bit-mono-mulaw"})
# Compressed audio we cannot play without a decoder; a server that ignores the requested
# format (an "OpenAI-compatible" proxy, say) must fail loudly rather than play noise.
_COMPRESSED_TYPES = frozenset(
    {
        "audio/mpeg",
        "audio/mp3",
        "audio/aac",
        "audio/flac",
        "audio/ogg",
        "audio/opus",
        "audio/webm",
        "audio/wav",
        "audio/x-wav",
        "audio/wave",
    }
)
_ERROR_DETAIL_CHARS = 300


def unsupported_format(fmt: str, provider: str) -> str:
    return f'Unsupported telephony TTS output format "{fmt}" from provider "{provider}"'


class _Passthrough:
    def process(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


class _PcmToUlaw:
    """PCM16 LE mono at `rate` → 8 kHz μ-law, streaming (resampler state spans chunks)."""

    def __init__(self, rate: int) -> None:
        self._resampler = Resampler(rate, TELEPHONY_RATE)

    def process(self, data: bytes) -> bytes:
        pcm = self._resampler.process(data)
        return ulaw_encode(pcm) if pcm else b""

    def flush(self) -> bytes:
        pcm = self._resampler.flush()
        return ulaw_encode(pcm) if pcm else b""


Converter = _Passthrough | _PcmToUlaw


def telephony_converter(fmt: str, provider: str) -> Converter:
    """μ-law 8 kHz passes through, `pcm_<rate>` is resampled; anything else is refused."""
    if fmt in ULAW_8K_FORMATS:
        return _Passthrough()
    kind, _, rate = fmt.partition("_")
    if kind == "pcm" and rate.isdigit() and int(rate) > 0:
        return _PcmToUlaw(int(rate))
    raise ProviderError(unsupported_format(fmt, provider))


@dataclass(frozen=True, slots=True)
class TtsSetup:
    """What the merged `tts` config decides for every vendor: the preferred voice, the
    synthesis timeout, and the shared HTTP client (None: one per request)."""

    voice: str | None = None
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    http: httpx.AsyncClient | None = None


class TtsProvider(ABC):
    """One configured vendor voice. `stream(text)` yields 8 kHz μ-law in any chunk sizes."""

    name: str
    output_format: str  # what `fetch` yields, in vendor terms: "ulaw_8000", "pcm_24000"

    def __init__(
        self, *, timeout_ms: int = DEFAULT_TIMEOUT_MS, http: httpx.AsyncClient | None = None
    ) -> None:
        self.timeout_ms = timeout_ms
        self._http = http

    @abstractmethod
    def fetch(self, text: str) -> AsyncGenerator[bytes, None]:
        """The vendor's raw audio bytes in `output_format` (an async generator)."""

    @abstractmethod
    def probe_request(self) -> httpx.Request:
        """A request that costs nothing and is refused for a bad key (`voicecall setup
        --probe`)."""

    async def stream(self, text: str) -> AsyncGenerator[bytes, None]:
        """μ-law chunks; ProviderError on timeout, no audio, bad format or HTTP failure.

        The timeout budget counts only time spent waiting on the vendor, not time this
        generator sits suspended while the caller paces playback at real time: a long
        reply played at 1x must not "time out" although synthesis was quick.
        """
        converter = telephony_converter(self.output_format, self.name)
        produced = 0
        # aclosing: a caller that stops early (barge-in) must end the HTTP stream now,
        # not whenever the abandoned generators are garbage-collected.
        async with aclosing(self._within_budget(self.fetch(text))) as chunks:
            async for chunk in chunks:
                out = converter.process(chunk)
                if out:
                    produced += len(out)
                    yield out
        tail = converter.flush()
        if tail:
            produced += len(tail)
            yield tail
        if not produced:
            raise ProviderError("Telephony TTS produced no audio")

    async def _within_budget(
        self, chunks: AsyncGenerator[bytes, None]
    ) -> AsyncGenerator[bytes, None]:
        loop = asyncio.get_running_loop()
        budget = self.timeout_ms / 1000
        try:
            while True:
                started = loop.time()
                async with asyncio.timeout(max(budget, 0.0)):
                    try:
                        chunk = await anext(chunks)
                    except StopAsyncIteration:
                        return
                budget -= loop.time() - started
                if chunk:
                    yield chunk
        except TimeoutError:
            raise ProviderUnavailable(
                f"Telephony TTS synthesis timed out after {self.timeout_ms}ms"
            ) from None
        finally:
            await chunks.aclose()

    async def http_audio(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        body: Mapping[str, Any],
        params: Mapping[str, str] | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """POST `body` as JSON and stream the response bytes, with vendor errors mapped."""
        client = self._http or httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0))
        try:
            async with client.stream(
                "POST", url, headers=dict(headers), json=dict(body), params=dict(params or {})
            ) as response:
                await self._check(response)
                async for chunk in response.aiter_bytes():
                    yield chunk
        except httpx.TransportError as exc:
            raise ProviderUnavailable(
                f'TTS provider "{self.name}" request failed: {exc or type(exc).__name__}'
            ) from exc
        finally:
            if self._http is None:
                await client.aclose()

    async def _check(self, response: httpx.Response) -> None:
        if response.status_code >= 400:
            detail = _error_detail(await response.aread())
            message = f'TTS provider "{self.name}" returned HTTP {response.status_code}'
            message += f": {detail}" if detail else ""
            retryable = response.status_code in (408, 429) or response.status_code >= 500
            error_cls = ProviderUnavailable if retryable else ProviderError
            raise error_cls(message, provider_code=str(response.status_code))
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type in _COMPRESSED_TYPES:
            raise ProviderError(unsupported_format(content_type, self.name))


def _error_detail(body: bytes) -> str:
    """The human part of a vendor error body (OpenAI `error.message`, ElevenLabs `detail`)."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:_ERROR_DETAIL_CHARS]
    if isinstance(data, dict):
        for key in ("error", "detail"):
            inner = data.get(key)
            if isinstance(inner, dict) and inner.get("message"):
                return str(inner["message"])[:_ERROR_DETAIL_CHARS]
            if isinstance(inner, str) and inner:
                return inner[:_ERROR_DETAIL_CHARS]
    return text[:_ERROR_DETAIL_CHARS]

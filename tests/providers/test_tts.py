"""OpenAI and ElevenLabs streaming TTS over httpx.MockTransport (no network)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import numpy as np
import pytest

from providers.audio import Resampler, ulaw_decode, ulaw_encode
from providers.errors import ProviderError, ProviderNotConfigured, ProviderUnavailable
from providers.tts import FailoverTts, build_tts
from providers.tts.base import TtsProvider
from providers.tts.elevenlabs import ElevenLabsTts
from providers.tts.openai import OpenAiTts

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


def tone(rate: int, seconds: float, freq: float = 1000.0) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * freq * t) * 12000).astype("<i2").tobytes()


async def chunked(data: bytes, size: int, delay: float = 0.0) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        if delay:
            await asyncio.sleep(delay)
        yield data[start : start + size]


class Vendor:
    """A MockTransport handler that records requests and replies with a canned stream."""

    def __init__(self, reply: Callable[[], httpx.Response]) -> None:
        self.reply = reply
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.reply()

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self))

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(self.requests[-1].content)


def pcm_reply(data: bytes, size: int = 1001) -> Callable[[], httpx.Response]:
    # An odd chunk size splits samples across chunks, as real HTTP chunking can.
    return lambda: httpx.Response(
        200, headers={"content-type": "audio/pcm"}, content=chunked(data, size)
    )


async def collect(provider: TtsProvider, text: str = "Hello") -> bytes:
    return b"".join([chunk async for chunk in provider.stream(text)])


def only(chain: FailoverTts) -> TtsProvider:
    """The one vendor of a chain without fallbacks: these tests are about the vendors'
    own behaviour and messages (the chain's are in test_tts_failover.py)."""
    (provider,) = chain.providers
    return provider


def openai(vendor: Vendor, **tts: Any) -> TtsProvider:
    block = {"apiKey": "sk-test", **tts.pop("block", {})}
    return only(
        build_tts(
            {"provider": "openai", "providers": {"openai": block}, **tts}, http=vendor.client()
        )
    )


def elevenlabs(vendor: Vendor, **block: Any) -> TtsProvider:
    return only(
        build_tts(
            {"provider": "elevenlabs", "providers": {"elevenlabs": {"apiKey": "xi-test", **block}}},
            http=vendor.client(),
        )
    )


# -- OpenAI ---------------------------------------------------------------------------


async def test_openai_request_has_reference_defaults() -> None:
    vendor = Vendor(pcm_reply(tone(24000, 0.1)))
    await collect(openai(vendor), "Hi there")
    request = vendor.requests[0]
    assert request.method == "POST"
    assert str(request.url) == "https://api.openai.com/v1/audio/speech"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.headers["content-type"] == "application/json"
    assert vendor.body == {
        "model": "gpt-4o-mini-tts",
        "voice": "alloy",
        "input": "Hi there",
        "response_format": "pcm",
    }


async def test_openai_request_uses_configured_values() -> None:
    vendor = Vendor(pcm_reply(tone(24000, 0.1)))
    provider = openai(
        vendor,
        block={
            "baseUrl": "http://proxy.local:9000/v1",
            "model": "tts-1",
            "voice": "nova",
            "speakerVoice": "marin",
            "speed": 1.25,
            "instructions": "Speak calmly.",
        },
    )
    await collect(provider, "Hi")
    assert str(vendor.requests[0].url) == "http://proxy.local:9000/v1/audio/speech"
    # speakerVoice wins over voice (docs/plugin-behaviour.md, "TTS config and voice lookup").
    assert vendor.body == {
        "model": "tts-1",
        "voice": "marin",
        "input": "Hi",
        "response_format": "pcm",
        "speed": 1.25,
        "instructions": "Speak calmly.",
    }


async def test_openai_pcm_24k_becomes_4000_ulaw_bytes_per_half_second() -> None:
    pcm = tone(24000, 0.5)
    out = await collect(openai(Vendor(pcm_reply(pcm))))
    assert len(out) == 4000
    # One resampler across all chunks: identical to converting the whole body at once.
    whole = Resampler(24000, 8000)
    assert out == ulaw_encode(whole.process(pcm) + whole.flush())


async def test_openai_output_is_the_tone_at_8k() -> None:
    out = await collect(openai(Vendor(pcm_reply(tone(24000, 0.5), size=4800))))
    samples = np.frombuffer(ulaw_decode(out), dtype="<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(samples))
    peak_hz = np.argmax(spectrum) * 8000 / len(samples)
    assert abs(peak_hz - 1000) <= 4
    assert np.sqrt(np.mean(samples**2)) > 6000  # amplitude kept (12000 peak → ~8485 rms)


async def test_openai_compressed_reply_is_an_unsupported_format() -> None:
    vendor = Vendor(
        lambda: httpx.Response(
            200, headers={"content-type": "audio/mpeg"}, content=b"ID3\x03" + b"\x00" * 64
        )
    )
    with pytest.raises(ProviderError) as caught:
        await collect(openai(vendor))
    assert str(caught.value) == (
        'Unsupported telephony TTS output format "audio/mpeg" from provider "openai"'
    )


# -- ElevenLabs -----------------------------------------------------------------------


async def test_elevenlabs_request_path_query_headers_and_body() -> None:
    vendor = Vendor(lambda: httpx.Response(200, content=b"\xff" * 160))
    provider = elevenlabs(
        vendor,
        voiceId="voice/1",
        modelId="eleven_flash_v2_5",
        seed=7,
        applyTextNormalization="off",
        languageCode="de",
        voiceSettings={
            "stability": 0.4,
            "similarityBoost": 0.8,
            "style": 0.1,
            "useSpeakerBoost": True,
            "speed": 1.1,
        },
    )
    await collect(provider, "Guten Tag")
    request = vendor.requests[0]
    assert request.url.host == "api.elevenlabs.io"
    assert request.url.raw_path == b"/v1/text-to-speech/voice%2F1/stream?output_format=ulaw_8000"
    assert request.headers["xi-api-key"] == "xi-test"
    assert "authorization" not in request.headers
    assert vendor.body == {
        "text": "Guten Tag",
        "model_id": "eleven_flash_v2_5",
        "seed": 7,
        "apply_text_normalization": "off",
        "language_code": "de",
        "voice_settings": {
            "stability": 0.4,
            "similarity_boost": 0.8,
            "style": 0.1,
            "use_speaker_boost": True,
            "speed": 1.1,
        },
    }


async def test_elevenlabs_defaults_and_base_url() -> None:
    vendor = Vendor(lambda: httpx.Response(200, content=b"\xff" * 160))
    await collect(elevenlabs(vendor, baseUrl="http://eleven.local/"), "Hi")
    assert str(vendor.requests[0].url) == (
        "http://eleven.local/v1/text-to-speech/pMsXgVXv3BLzUgSXRplE/stream?output_format=ulaw_8000"
    )
    assert vendor.body == {"text": "Hi", "model_id": "eleven_multilingual_v2"}


async def test_elevenlabs_ulaw_passes_through_unchanged() -> None:
    ulaw = bytes(range(256)) * 20 + b"\x7f"  # odd length: μ-law has no sample pairs
    vendor = Vendor(
        lambda: httpx.Response(
            200, headers={"content-type": "audio/basic"}, content=chunked(ulaw, 333)
        )
    )
    assert await collect(elevenlabs(vendor, voiceId="v")) == ulaw


async def test_elevenlabs_pcm_output_format_is_resampled() -> None:
    vendor = Vendor(pcm_reply(tone(16000, 0.5)))
    out = await collect(elevenlabs(vendor, voiceId="v", outputFormat="pcm_16000"))
    assert vendor.requests[0].url.params["output_format"] == "pcm_16000"
    assert len(out) == 4000


def test_elevenlabs_compressed_output_format_is_refused() -> None:
    with pytest.raises(ProviderNotConfigured) as caught:
        elevenlabs(Vendor(pcm_reply(b"")), voiceId="v", outputFormat="mp3_44100_128")
    # build_tts puts the key path in front, for the start-up refusal.
    assert str(caught.value) == (
        "tts.providers.elevenlabs: "
        'Unsupported telephony TTS output format "mp3_44100_128" from provider "elevenlabs"'
    )


# -- shared failure rules -------------------------------------------------------------


def stalled(first: bytes = b"") -> Callable[[], httpx.Response]:
    async def body() -> AsyncIterator[bytes]:
        if first:
            yield first
        await asyncio.sleep(30)
        yield b"never"

    return lambda: httpx.Response(200, content=body())


@pytest.mark.parametrize("first", [b"", b"\x00\x01" * 480])
async def test_synthesis_timeout_uses_the_reference_message(first: bytes) -> None:
    vendor = Vendor(stalled(first))
    provider = OpenAiTts(api_key="k", timeout_ms=50, http=vendor.client())
    with pytest.raises(ProviderUnavailable) as caught:
        async with asyncio.timeout(5):
            await collect(provider)
    assert str(caught.value) == "Telephony TTS synthesis timed out after 50ms"
    assert caught.value.retryable


async def test_timeout_before_the_response_headers() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200, content=b"\xff")

    client = httpx.AsyncClient(transport=httpx.MockTransport(slow))
    provider = ElevenLabsTts(api_key="k", voice_id="v", timeout_ms=40, http=client)
    with pytest.raises(ProviderUnavailable, match="^Telephony TTS synthesis timed out after 40ms$"):
        async with asyncio.timeout(5):
            await collect(provider)


async def test_time_spent_by_the_consumer_does_not_count_against_the_timeout() -> None:
    # Playback paces at real time; only waiting on the vendor may use up the budget.
    vendor = Vendor(lambda: httpx.Response(200, content=chunked(b"\xff" * 800, 160)))
    provider = ElevenLabsTts(api_key="k", voice_id="v", timeout_ms=100, http=vendor.client())
    received = b""
    async for chunk in provider.stream("long reply"):
        received += chunk
        await asyncio.sleep(0.04)  # 5 chunks x 40 ms = 200 ms > 100 ms budget
    assert received == b"\xff" * 800


async def test_timeout_budget_is_for_the_whole_stream_not_per_chunk() -> None:
    # Each chunk arrives within the budget, but together they exceed it.
    vendor = Vendor(lambda: httpx.Response(200, content=chunked(b"\xff" * 1600, 160, 0.03)))
    provider = ElevenLabsTts(api_key="k", voice_id="v", timeout_ms=100, http=vendor.client())
    with pytest.raises(ProviderUnavailable, match="timed out after 100ms"):
        await collect(provider)


@pytest.mark.parametrize("make", [lambda v: openai(v), lambda v: elevenlabs(v, voiceId="v")])
async def test_empty_audio_is_an_error(make: Callable[[Vendor], TtsProvider]) -> None:
    vendor = Vendor(lambda: httpx.Response(200, content=b""))
    with pytest.raises(ProviderError, match="^Telephony TTS produced no audio$"):
        await collect(make(vendor))


async def test_a_single_pcm_byte_is_no_audio() -> None:
    vendor = Vendor(lambda: httpx.Response(200, content=b"\x01"))  # half a sample
    with pytest.raises(ProviderError, match="^Telephony TTS produced no audio$"):
        await collect(openai(vendor))


async def test_http_client_error_is_mapped_with_the_vendor_message() -> None:
    vendor = Vendor(
        lambda: httpx.Response(
            401,
            json={
                "error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}
            },
        )
    )
    with pytest.raises(ProviderError) as caught:
        await collect(openai(vendor))
    error = caught.value
    assert not isinstance(error, ProviderUnavailable)
    assert str(error) == 'TTS provider "openai" returned HTTP 401: Incorrect API key provided'
    assert error.provider_code == "401"
    assert not error.retryable


async def test_elevenlabs_error_detail_is_used() -> None:
    vendor = Vendor(
        lambda: httpx.Response(
            404,
            json={
                "detail": {
                    "status": "voice_not_found",
                    "message": "A voice with that ID was not found.",
                }
            },
        )
    )
    with pytest.raises(ProviderError, match='"elevenlabs" returned HTTP 404: A voice with that'):
        await collect(elevenlabs(vendor, voiceId="nope"))


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_rate_limits_and_server_errors_are_retryable(status: int) -> None:
    vendor = Vendor(lambda: httpx.Response(status, text="busy"))
    with pytest.raises(ProviderUnavailable) as caught:
        await collect(openai(vendor))
    assert str(caught.value) == f'TTS provider "openai" returned HTTP {status}: busy'
    assert caught.value.retryable


async def test_transport_failure_is_provider_unavailable() -> None:
    async def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    provider = OpenAiTts(api_key="k", http=httpx.AsyncClient(transport=httpx.MockTransport(refuse)))
    with pytest.raises(ProviderUnavailable, match='"openai" request failed: connection refused'):
        await collect(provider)


# -- build_tts ------------------------------------------------------------------------


def test_timeout_comes_from_tts_timeout_ms() -> None:
    assert openai(Vendor(pcm_reply(b""))).timeout_ms == 8000
    assert openai(Vendor(pcm_reply(b"")), timeoutMs=1500).timeout_ms == 1500


@pytest.mark.parametrize("name", ["microsoft", "edge"])
def test_microsoft_and_edge_have_no_telephony_output(name: str) -> None:
    with pytest.raises(ProviderNotConfigured) as caught:
        build_tts({"provider": name, "providers": {name: {"voice": "en-US-JennyNeural"}}})
    assert str(caught.value) == f'tts.provider "{name}" has no telephony output'


def test_unknown_provider_is_not_configured() -> None:
    with pytest.raises(ProviderNotConfigured) as caught:
        build_tts({"provider": "polly"})
    assert str(caught.value) == (
        'tts.provider "polly" is not supported for calls; use "openai" or "elevenlabs"'
    )


@pytest.mark.parametrize(
    ("name", "key"),
    [("openai", "tts.providers.openai.apiKey"), ("elevenlabs", "tts.providers.elevenlabs.apiKey")],
)
def test_missing_api_key_names_the_key(name: str, key: str) -> None:
    with pytest.raises(ProviderNotConfigured, match=key.replace(".", r"\.")):
        build_tts({"provider": name, "providers": {name: {"voice": "x"}}})


def test_bad_openai_speed_is_not_configured() -> None:
    with pytest.raises(ProviderNotConfigured, match="speed"):
        build_tts({"provider": "openai", "providers": {"openai": {"apiKey": "k", "speed": 9}}})


def test_provider_defaults_to_the_first_with_a_key() -> None:
    only_eleven = {"providers": {"elevenlabs": {"apiKey": "x", "voiceId": "v1"}}}
    provider = only(build_tts(only_eleven))
    assert isinstance(provider, ElevenLabsTts) and provider.voice_id == "v1"
    both = {"providers": {"elevenlabs": {"apiKey": "x"}, "openai": {"apiKey": "y"}}}
    assert isinstance(only(build_tts(both)), OpenAiTts)
    with pytest.raises(ProviderNotConfigured) as caught:
        build_tts({})
    assert str(caught.value) == (
        "tts.provider is not set and neither tts.providers.openai.apiKey nor "
        "tts.providers.elevenlabs.apiKey is configured"
    )

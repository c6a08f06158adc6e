"""The TTS chain: tts.provider, then tts.fallbacks, per utterance and never silently.

docs/plugin-behaviour.md, "TTS failover". Vendors are httpx.MockTransport handlers (no
network); the close-on-barge-in rule uses an in-process provider that records closing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from providers.errors import ProviderError, ProviderNotConfigured, ProviderUnavailable
from providers.tts import FailoverTts, TtsFailed, build_tts
from providers.tts.base import TtsProvider

OPENAI_HOST = "api.openai.com"
ELEVEN_HOST = "api.elevenlabs.io"
ULAW = b"\x7e" * 320
LOGGER = "providers.tts.failover"

Reply = Callable[[], httpx.Response]


def ok() -> httpx.Response:
    # ElevenLabs' default ulaw_8000 passes through; OpenAI's PCM (24 kHz) is resampled.
    return httpx.Response(200, content=b"\x00\x10" * 2400)


def busy() -> httpx.Response:
    return httpx.Response(503, text="busy")


class Vendors:
    """One MockTransport for every vendor, routed by host; records the hosts in order."""

    def __init__(self, **replies: Reply) -> None:
        self.replies = {OPENAI_HOST: replies.get("openai", ok)}
        self.replies[ELEVEN_HOST] = replies.get("elevenlabs", ok)
        self.hosts: list[str] = []
        self.client = httpx.AsyncClient(transport=httpx.MockTransport(self.handle))

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.hosts.append(request.url.host)
        return self.replies[request.url.host]()


KEYS = {"openai": {"apiKey": "sk-test"}, "elevenlabs": {"apiKey": "xi-test"}}


def chain(vendors: Vendors, **tts: Any) -> FailoverTts:
    return build_tts({"providers": KEYS, **tts}, http=vendors.client)


async def collect(tts: FailoverTts, text: str = "Hello") -> bytes:
    return b"".join([chunk async for chunk in tts.stream(text)])


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


# -- order ------------------------------------------------------------------------------


def test_the_primary_comes_first_then_the_fallbacks_in_order() -> None:
    vendors = Vendors()
    tts = chain(vendors, provider="elevenlabs", fallbacks=["openai"])
    assert tts.names == ("elevenlabs", "openai")
    tts = chain(vendors, provider="openai", fallbacks=["elevenlabs"])
    assert tts.names == ("openai", "elevenlabs")
    # Unset tts.provider: the automatic pick (first with a key) is the primary.
    assert chain(vendors, fallbacks=["elevenlabs"]).names == ("openai", "elevenlabs")


def test_every_provider_of_the_chain_shares_the_http_client() -> None:
    vendors = Vendors()
    tts = chain(vendors, provider="elevenlabs", fallbacks=["openai"])
    assert all(provider._http is vendors.client for provider in tts.providers)


async def test_the_primary_speaks_when_it_can() -> None:
    vendors = Vendors()
    tts = chain(vendors, provider="elevenlabs", fallbacks=["openai"])
    assert await collect(tts) == b"\x00\x10" * 2400
    assert vendors.hosts == [ELEVEN_HOST]
    assert (tts.failures, tts.fallbacks) == (0, 0)


async def test_duplicate_ids_are_tried_once() -> None:
    vendors = Vendors(openai=busy, elevenlabs=busy)
    tts = chain(
        vendors, provider="openai", fallbacks=["openai", " OpenAI ", "elevenlabs", "elevenlabs"]
    )
    assert tts.names == ("openai", "elevenlabs")
    with pytest.raises(TtsFailed):
        await collect(tts)
    assert vendors.hosts == [OPENAI_HOST, ELEVEN_HOST]


# -- skipped providers --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["edge", "microsoft"])
def test_edge_as_primary_is_skipped_with_a_warning(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        tts = chain(Vendors(), provider=name, fallbacks=["openai"])
    assert tts.names == ("openai",)
    assert f'Telephony TTS provider skipped: tts.provider "{name}" has no telephony output' in (
        messages(caplog)
    )


def test_unusable_fallbacks_are_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        tts = build_tts(
            {
                "provider": "openai",
                "fallbacks": ["edge", "polly", "elevenlabs"],
                "providers": {"openai": {"apiKey": "k"}},
            }
        )
    assert tts.names == ("openai",)
    assert messages(caplog) == [
        'Telephony TTS provider skipped: tts.fallbacks[0] "edge" has no telephony output',
        'Telephony TTS provider skipped: tts.fallbacks[1] "polly" is not supported for calls; '
        'use "openai" or "elevenlabs"',
        'Telephony TTS provider skipped: tts.fallbacks[2] "elevenlabs" is not configured: '
        "tts.providers.elevenlabs.apiKey is required (or set ELEVENLABS_API_KEY)",
    ]


def test_a_primary_without_a_key_is_skipped_for_a_configured_fallback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        tts = build_tts(
            {
                "provider": "openai",
                "fallbacks": ["elevenlabs"],
                "providers": {"elevenlabs": {"apiKey": "k"}},
            }
        )
    assert tts.names == ("elevenlabs",)
    assert messages(caplog) == [
        "Telephony TTS provider skipped: "
        "tts.providers.openai.apiKey is required (or set OPENAI_API_KEY)"
    ]


@pytest.mark.parametrize(
    ("tts", "message"),
    [
        (
            {"provider": "edge", "fallbacks": ["edge"]},
            'tts.provider "edge" has no telephony output and tts.fallbacks has no usable provider',
        ),
        (
            {"provider": "edge", "fallbacks": ["microsoft", "elevenlabs"]},
            'tts.provider "edge" has no telephony output and tts.fallbacks has no usable provider'
            ' (tts.fallbacks[0] "microsoft" has no telephony output; tts.fallbacks[1]'
            ' "elevenlabs" is not configured: tts.providers.elevenlabs.apiKey is required'
            " (or set ELEVENLABS_API_KEY))",
        ),
        (
            {"fallbacks": ["openai"]},
            "tts.provider is not set and neither tts.providers.openai.apiKey nor "
            "tts.providers.elevenlabs.apiKey is configured and tts.fallbacks has no usable "
            'provider (tts.fallbacks[0] "openai" is not configured: '
            "tts.providers.openai.apiKey is required (or set OPENAI_API_KEY))",
        ),
        ({"provider": "openai", "fallbacks": "elevenlabs"}, "tts.fallbacks must be a list"),
    ],
)
def test_no_usable_provider_is_a_configuration_error(tts: dict, message: str) -> None:
    with pytest.raises(ProviderNotConfigured) as caught:
        build_tts(tts)
    assert str(caught.value).startswith(message)


# -- failover per utterance -----------------------------------------------------------------


async def test_an_error_before_audio_moves_to_the_next_provider_with_the_plugin_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    vendors = Vendors(elevenlabs=busy)
    tts = chain(vendors, provider="elevenlabs", fallbacks=["openai"])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        audio = await collect(tts)
    assert len(audio) == 800  # OpenAI's 0.1 s of 24 kHz PCM as 8 kHz μ-law
    assert vendors.hosts == [ELEVEN_HOST, OPENAI_HOST]
    assert messages(caplog) == [
        'Telephony TTS provider "elevenlabs" failed before any audio: '
        'TTS provider "elevenlabs" returned HTTP 503: busy',
        "[voice-call] Telephony TTS fallback used from=elevenlabs to=openai "
        "attempts=elevenlabs -> openai",
    ]
    assert (tts.failures, tts.fallbacks) == (0, 1)


async def test_each_utterance_starts_again_at_the_primary() -> None:
    calls = iter([busy(), ok()])
    vendors = Vendors(elevenlabs=lambda: next(calls))
    tts = chain(vendors, provider="elevenlabs", fallbacks=["openai"])
    await collect(tts, "one")
    await collect(tts, "two")
    assert vendors.hosts == [ELEVEN_HOST, OPENAI_HOST, ELEVEN_HOST]


async def test_an_error_after_audio_is_not_retried_elsewhere(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def cut_off() -> AsyncIterator[bytes]:
        yield ULAW
        raise httpx.ReadError("connection reset")

    vendors = Vendors(elevenlabs=lambda: httpx.Response(200, content=cut_off()))
    tts = chain(vendors, provider="elevenlabs", fallbacks=["openai"])
    heard = b""
    with caplog.at_level(logging.WARNING, logger=LOGGER), pytest.raises(TtsFailed) as caught:
        async for chunk in tts.stream("Hello"):
            heard += chunk
    assert heard == ULAW
    assert vendors.hosts == [ELEVEN_HOST]  # OpenAI never asked
    assert str(caught.value) == (
        'TTS failed: TTS provider "elevenlabs" request failed: connection reset'
    )
    assert caught.value.partial_audio and caught.value.attempts == ("elevenlabs",)
    assert tts.failures == 1 and tts.fallbacks == 0
    assert len([m for m in messages(caplog) if "TTS failed" in m]) == 1
    assert not [m for m in messages(caplog) if "fallback used" in m]


async def test_when_every_provider_fails_the_utterance_fails_and_is_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def stalled() -> AsyncIterator[bytes]:
        await asyncio.sleep(30)
        yield b"never"

    vendors = Vendors(elevenlabs=busy, openai=lambda: httpx.Response(200, content=stalled()))
    tts = chain(vendors, provider="elevenlabs", fallbacks=["openai"], timeoutMs=50)
    with caplog.at_level(logging.WARNING, logger=LOGGER), pytest.raises(TtsFailed) as caught:
        async with asyncio.timeout(5):
            await collect(tts)
    error = caught.value
    assert isinstance(error, ProviderError)
    assert str(error) == "TTS failed: Telephony TTS synthesis timed out after 50ms"
    assert error.retryable and error.attempts == ("elevenlabs", "openai")
    assert not error.partial_audio
    assert tts.failures == 1
    failed = [m for m in messages(caplog) if m.startswith("TTS failed: ")]
    assert failed == [
        "TTS failed: Telephony TTS synthesis timed out after 50ms (attempts=elevenlabs -> openai)"
    ]
    with pytest.raises(TtsFailed):
        async with asyncio.timeout(5):
            await collect(tts)
    assert tts.failures == 2


async def test_a_single_provider_fails_with_the_same_prefix() -> None:
    tts = chain(Vendors(openai=busy), provider="openai")
    with pytest.raises(TtsFailed, match='^TTS failed: TTS provider "openai" returned HTTP 503'):
        await collect(tts)
    assert tts.failures == 1


@pytest.mark.parametrize(
    ("replies", "failed"),
    [
        ({}, []),
        ({"elevenlabs": busy}, ["elevenlabs"]),  # the fallback said it
        ({"elevenlabs": busy, "openai": busy}, ["elevenlabs", "openai"]),
    ],
)
async def test_each_provider_that_failed_is_reported_for_the_error_counts(
    replies: dict[str, Reply], failed: list[str]
) -> None:
    tts = chain(Vendors(**replies), provider="elevenlabs", fallbacks=["openai"])
    reported: list[str] = []
    tts.on_provider_error = reported.append
    try:
        await collect(tts)
    except TtsFailed:
        pass
    assert reported == failed


# -- barge-in -------------------------------------------------------------------------------


class Scripted(TtsProvider):
    """An in-process vendor: fails at once, or yields forever and records being closed."""

    output_format = "ulaw_8000"

    def __init__(self, name: str, *, fail: bool = False) -> None:
        super().__init__()
        self.name = name
        self.fail = fail
        self.closed = False

    async def fetch(self, text: str) -> AsyncGenerator[bytes, None]:
        if self.fail:
            raise ProviderUnavailable(f"{self.name} is down")
        try:
            while True:
                yield ULAW
                await asyncio.sleep(0)
        finally:
            self.closed = True

    def probe_request(self) -> httpx.Request:
        return httpx.Request("GET", f"http://{self.name}.test/v1/models")


async def test_a_consumer_that_stops_early_closes_the_vendor_stream_now() -> None:
    primary, fallback = Scripted("a", fail=True), Scripted("b")
    tts = FailoverTts([primary, fallback])
    stream = tts.stream("a long reply")
    assert isinstance(stream, AsyncGenerator)
    assert await anext(stream) == ULAW
    await stream.aclose()  # barge-in
    assert fallback.closed
    assert (tts.failures, tts.fallbacks) == (0, 1)

"""Server preflight: skipSignatureVerification only on loopback without exposure, and a
media-stream config whose TTS cannot speak stops the server.

docs/security.md, "Webhooks", step 9; docs/plugin-behaviour.md, "TTS failover".
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest

from calls.config import ConfigError
from calls.serving.startup import preflight


def test_skip_mode_is_allowed_on_loopback_without_exposure(configure: Any) -> None:
    configure({"skipSignatureVerification": True})
    preflight("127.0.0.1")


@pytest.mark.parametrize(
    ("raw", "host"),
    [
        ({"skipSignatureVerification": True}, "0.0.0.0"),
        (
            {"skipSignatureVerification": True, "publicUrl": "https://v.example.com/voice/webhook"},
            "127.0.0.1",
        ),
        ({"skipSignatureVerification": True, "tunnel": {"provider": "ngrok"}}, "127.0.0.1"),
    ],
)
def test_skip_mode_is_refused_when_exposed(configure: Any, raw: dict, host: str) -> None:
    configure(raw)
    with pytest.raises(SystemExit, match="only allowed when serving on loopback"):
        preflight(host)


def test_a_bad_config_stops_the_server(monkeypatch: pytest.MonkeyPatch) -> None:

    def broken() -> Any:
        raise ConfigError(["plugins.entries.voice-call.config.serve.hots is not a recognized key"])

    monkeypatch.setattr("calls.serving.startup.get_config", broken)
    with pytest.raises(ConfigError, match="serve.hots"):
        preflight("127.0.0.1")


# -- media streams need a TTS that can speak ------------------------------------------

STREAMING_TWILIO = {
    "provider": "twilio",
    "fromNumber": "+15550001234",
    "twilio": {"accountSid": "AC123", "authToken": "secret"},
    "streaming": {"enabled": True, "providers": {"openai": {"apiKey": "sk-test"}}},
}
REFUSED_TTS = "Invalid voice-call config: plugins.entries.voice-call.config."


@pytest.mark.parametrize(
    ("tts", "error"),
    [
        ({}, "tts.provider is not set and neither tts.providers.openai.apiKey nor"),
        (
            {"provider": "openai"},
            "tts.providers.openai.apiKey is required (or set OPENAI_API_KEY)",
        ),
        (
            {"provider": "polly", "providers": {"polly": {"apiKey": "k"}}},
            'tts.provider "polly" is not supported for calls',
        ),
        (
            {"provider": "edge", "fallbacks": ["elevenlabs"]},
            'tts.provider "edge" has no telephony output and tts.fallbacks has no usable provider',
        ),
    ],
)
def test_a_stream_config_whose_tts_cannot_speak_stops_the_server(
    configure: Any, tts: dict, error: str
) -> None:
    configure({**STREAMING_TWILIO, "tts": tts})
    with pytest.raises(SystemExit) as caught:
        preflight("127.0.0.1")
    assert str(caught.value).startswith(REFUSED_TTS + error)


@pytest.mark.parametrize(
    "tts",
    [
        {"provider": "openai", "providers": {"openai": {"apiKey": "sk-test"}}},
        {"providers": {"elevenlabs": {"apiKey": "xi-test"}}},
        {
            "provider": "edge",
            "fallbacks": ["elevenlabs"],
            "providers": {"elevenlabs": {"apiKey": "xi-test"}},
        },
    ],
)
def test_a_stream_config_with_a_usable_tts_passes(configure: Any, tts: dict) -> None:
    configure({**STREAMING_TWILIO, "tts": tts})
    preflight("127.0.0.1")


def test_tts_is_not_checked_without_streams_or_with_realtime_voice(configure: Any) -> None:
    configure({**STREAMING_TWILIO, "streaming": {"enabled": False}})
    preflight("127.0.0.1")
    # Realtime voice speaks through its model (both flags only load when not enabled).
    configure({**STREAMING_TWILIO, "enabled": False, "realtime": {"enabled": True}})
    preflight("127.0.0.1")


def test_uvicorn_never_takes_the_peer_address_from_forwarding_headers() -> None:
    """Behind a local tunnel every request comes from 127.0.0.1, which uvicorn trusts by
    default: X-Forwarded-For would then choose the address the per-peer limits see."""
    from calls.serving.server import uvicorn_config

    config = uvicorn_config(object(), "127.0.0.1", 3334)
    assert config.proxy_headers is False
    assert config.ws_max_size == 64 * 1024


def test_serve_freezes_what_start_up_left_before_it_takes_traffic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A full collection walking the start-up heap (~250,000 objects) paused every stream.
    from calls.serving import server

    seen: dict[str, int] = {}

    class Server:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def run(self) -> None:
            seen["frozen"] = gc.get_freeze_count()

    for name in ("static_files_collect", "preflight", "startup", "_release_stream_leases"):
        monkeypatch.setattr(server, name, lambda *args, **kwargs: None)
    monkeypatch.setattr(server, "exposure_start", lambda *args, **kwargs: None)
    monkeypatch.setattr(server, "exposure_stop", lambda *args, **kwargs: None)
    monkeypatch.setattr(server, "DrainingServer", Server)
    monkeypatch.setenv("VOICECALL_SWEEP", "off")
    gc.unfreeze()
    try:
        server.run(host="127.0.0.1", port=0)
        assert seen["frozen"] > 1000
    finally:
        gc.unfreeze()


def test_a_frozen_heap_still_collects_garbage_made_later() -> None:
    from calls.serving.server import heap_freeze

    try:
        assert heap_freeze() > 0
        ref = weakref.ref(_Node())
        gc.collect()
        assert ref() is None
    finally:
        gc.unfreeze()


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it

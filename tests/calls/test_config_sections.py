"""The typed sections of the config: their defaults, and one typed read of each.

docs/plugin-behaviour.md, "Config shape and defaults"; calls/config/sections.py.
"""

from __future__ import annotations

import dataclasses

import pytest

from calls.config import (
    CARRIER_KEYS,
    AgentContextConfig,
    FastContextConfig,
    MockConfig,
    OutboundConfig,
    PlivoConfig,
    RealtimeConfig,
    RouteConfig,
    ServeConfig,
    StreamingConfig,
    TailscaleConfig,
    TelnyxConfig,
    TtsConfig,
    TunnelConfig,
    TwilioConfig,
    VoiceCallConfig,
    WebhookSecurityConfig,
    parse_config,
)
from calls.config.schema import spec_has
from calls.config.sections import document_defaults, key_of

TWILIO_OK = {
    "provider": "twilio",
    "fromNumber": "+15550001234",
    "twilio": {"accountSid": "AC123", "authToken": "secret"},
}


# --- defaults ----------------------------------------------------------------------


def test_each_section_carries_the_plugin_defaults() -> None:
    assert OutboundConfig() == OutboundConfig("notify", 3, ())
    assert ServeConfig() == ServeConfig(3334, "127.0.0.1", "/voice/webhook")
    assert TailscaleConfig() == TailscaleConfig("off", "/voice/webhook", 443)
    assert TunnelConfig() == TunnelConfig("none", None, None, False)
    assert WebhookSecurityConfig() == WebhookSecurityConfig((), False, ())
    streaming = StreamingConfig()
    assert (streaming.enabled, streaming.provider, streaming.stream_path) == (
        False,
        None,
        "/voice/stream",
    )
    assert (streaming.pre_start_timeout_ms, streaming.max_connections) == (5000, 128)
    assert (streaming.max_pending_connections, streaming.max_pending_connections_per_ip) == (32, 4)
    realtime = RealtimeConfig()
    assert (realtime.enabled, realtime.stream_path, realtime.tools) == (False, None, ())
    assert (realtime.tool_policy, realtime.consult_policy) == ("safe-read-only", "auto")
    assert FastContextConfig().sources == ("memory", "sessions")
    assert AgentContextConfig().files == ("SOUL.md", "IDENTITY.md", "USER.md")
    assert TwilioConfig().api_base_url == "https://api.twilio.com"
    assert TelnyxConfig().api_base_url == "https://api.telnyx.com"
    assert PlivoConfig().api_base_url == "https://api.plivo.com"
    assert MockConfig().caller_replies == ("Yes, that works for me.", "No, thank you. Goodbye.")
    assert TtsConfig().providers == {} and RouteConfig().agent_id is None


def test_a_config_without_keys_reads_as_the_section_defaults() -> None:
    cfg = parse_config({}, {})
    assert (cfg.enabled, cfg.provider) == (True, "mock")  # the plugin-entry quirk
    assert cfg.serve == ServeConfig() and cfg.tailscale == TailscaleConfig()
    assert cfg.tunnel == TunnelConfig() and cfg.webhook_security == WebhookSecurityConfig()
    assert cfg.outbound == OutboundConfig() and cfg.streaming == StreamingConfig()
    # The one default not in the dataclass: it follows serve.path.
    assert cfg.realtime == RealtimeConfig(stream_path="/voice/stream/realtime")
    assert cfg.twilio == TwilioConfig() and cfg.mock_config == MockConfig()
    assert cfg.tts_config == TtsConfig() and cfg.numbers == {}
    assert (cfg.session_scope, cfg.silence_timeout_ms, cfg.store) == ("per-phone", 800, None)


def test_the_filled_document_is_made_of_the_section_defaults() -> None:
    expected = document_defaults()
    expected["provider"] = "mock"  # the plugin-entry quirk
    expected["realtime"]["streamPath"] = "/voice/stream/realtime"  # follows serve.path
    assert parse_config({}, {}).data == expected


def test_unset_keys_stay_out_of_the_filled_document() -> None:
    defaults = document_defaults()
    assert "fromNumber" not in defaults and "provider" not in defaults
    assert "ngrokAuthToken" not in defaults["tunnel"] and "streamPath" not in defaults["realtime"]
    assert defaults["tts"] == {"providers": {}}
    assert defaults["mock"]["callerReplies"] == list(MockConfig().caller_replies)


# --- a typed read of each section ----------------------------------------------------


def test_carrier_blocks_read_typed() -> None:
    cfg = parse_config({**TWILIO_OK, "twilio": {**TWILIO_OK["twilio"], "region": "ie1"}}, {})
    assert cfg.twilio == TwilioConfig("AC123", "secret", "ie1", "https://api.twilio.com")
    telnyx = parse_config({"telnyx": {"apiKey": "k", "apiBaseUrl": "http://127.0.0.1:9"}}, {})
    assert (telnyx.telnyx.api_key, telnyx.telnyx.api_base_url) == ("k", "http://127.0.0.1:9")
    assert parse_config({"plivo": {"authId": "MA1"}}, {}).plivo.auth_id == "MA1"


def test_outbound_serve_and_exposure_read_typed() -> None:
    cfg = parse_config(
        {
            "outbound": {"defaultMode": "conversation", "allowTo": ["+44"]},
            "serve": {"port": 8080, "bind": "0.0.0.0", "path": "/hooks"},
            "tailscale": {"mode": "funnel", "port": 8443},
            "tunnel": {"provider": "ngrok", "ngrokDomain": "x.ngrok.app"},
            "webhookSecurity": {"allowedHosts": ["a.example"], "trustedProxyIPs": ["10.0.0.1"]},
        },
        {"NGROK_AUTHTOKEN": "tok"},
    )
    assert cfg.outbound == OutboundConfig("conversation", 3, ("+44",))
    assert cfg.serve == ServeConfig(8080, "0.0.0.0", "/hooks")
    assert (cfg.serve_port, cfg.serve_bind, cfg.serve_path) == (8080, "0.0.0.0", "/hooks")
    assert cfg.tailscale == TailscaleConfig("funnel", "/voice/webhook", 8443)
    assert cfg.tunnel == TunnelConfig("ngrok", "tok", "x.ngrok.app", False)
    assert cfg.webhook_security == WebhookSecurityConfig(("a.example",), False, ("10.0.0.1",))


def test_streaming_reads_typed() -> None:
    raw = {
        **TWILIO_OK,
        "streaming": {
            "enabled": True,
            "provider": "openai",
            "maxConnections": 7,
            "preStartTimeoutMs": 250,
            "providers": {"openai": {"model": "m"}, "deepgram": None},
        },
    }
    streaming = parse_config(raw, {"OPENAI_API_KEY": "sk"}).streaming
    assert (streaming.enabled, streaming.provider) == (True, "openai")
    assert (streaming.max_connections, streaming.pre_start_timeout_ms) == (7, 250)
    assert streaming.max_pending_connections_per_ip == 4
    # A null provider block is unset; env filled the selected one.
    assert streaming.providers == {"openai": {"model": "m", "apiKey": "sk"}}


def test_realtime_reads_typed() -> None:
    raw = {
        **TWILIO_OK,
        "inboundPolicy": "open",
        "serve": {"path": "/api/webhook"},
        "realtime": {
            "enabled": True,
            "instructions": "Be brief.",
            "tools": [],  # a tool there is refused (tests/calls/test_config_unsupported.py)
            "fastContext": {"maxResults": 5},
            "agentContext": {"files": ["SOUL.md"]},
        },
    }
    realtime = parse_config(raw, {}).realtime
    assert (realtime.enabled, realtime.instructions) == (True, "Be brief.")
    assert realtime.stream_path == "/api/stream/realtime"
    assert realtime.tools == ()
    assert realtime.fast_context == FastContextConfig(max_results=5)
    assert realtime.agent_context == AgentContextConfig(files=("SOUL.md",))


def test_number_routes_read_typed() -> None:
    routes = {
        "+15550001234": {
            "agentId": "sales",
            "responseTimeoutMs": 5000,
            "tts": {"providers": {"openai": {"voice": "v"}}},
        },
        "+15550005678": None,
    }
    cfg = parse_config({"numbers": routes, "agentId": "main", "responseModel": "gpt"}, {})
    assert cfg.numbers["+15550001234"] == RouteConfig(
        agent_id="sales", response_timeout_ms=5000, tts={"providers": {"openai": {"voice": "v"}}}
    )
    # A null route still names its number, with no overrides.
    assert cfg.numbers["+15550005678"] == RouteConfig()
    assert (cfg.agent_id, cfg.response_model, cfg.response_timeout_ms) == ("main", "gpt", 30000)


def test_tts_and_mock_read_typed_beside_their_camel_case_blocks() -> None:
    raw = {
        "tts": {"provider": "openai", "providers": {"openai": {"apiKey": "k", "voice": "v"}}},
        "mock": {"simulate": False, "callerReplies": ["hi"]},
    }
    cfg = parse_config(raw, {})
    assert cfg.tts_config.provider == "openai"
    assert cfg.tts_config.providers["openai"] == {"apiKey": "k", "voice": "v"}
    assert cfg.tts == raw["tts"]  # the block the speech adapters take
    assert cfg.tts_config.fallbacks is None  # unset, and out of the camelCase block
    assert cfg.mock_config == MockConfig(simulate=False, caller_replies=("hi",))
    assert cfg.mock["callerReplies"] == ["hi"]


def test_tts_fallbacks_read_as_a_tuple() -> None:
    cfg = parse_config({"tts": {"fallbacks": ["elevenlabs", "openai"]}}, {})
    assert cfg.tts_config.fallbacks == ("elevenlabs", "openai")
    assert cfg.tts["fallbacks"] == ["elevenlabs", "openai"]


# --- parsed once, frozen, detached ---------------------------------------------------


def test_sections_are_frozen_and_detached_from_the_document() -> None:
    cfg = parse_config({"streaming": {"providers": {"openai": {"model": "a"}}}}, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.streaming.max_connections = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.provider = "twilio"  # type: ignore[misc]
    cfg.data["streaming"]["providers"]["openai"]["model"] = "changed"
    cfg.data["serve"]["port"] = 1
    assert cfg.streaming.providers["openai"]["model"] == "a" and cfg.serve.port == 3334


def test_a_config_built_from_a_document_reads_it_typed() -> None:
    cfg = VoiceCallConfig(data={"provider": "twilio", "streaming": {"maxConnections": 2}})
    assert (cfg.provider, cfg.streaming.max_connections) == ("twilio", 2)
    assert cfg.serve == ServeConfig() and cfg.enabled is True


# --- the typed sections and the key table agree --------------------------------------


def _paths(cls: type, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for item in dataclasses.fields(cls):
        if item.name in ("data", "warnings", "source"):
            continue
        path = (*prefix, key_of(item))
        found.append(path)
        default = item.default_factory() if callable(item.default_factory) else item.default
        if dataclasses.is_dataclass(default):
            found += _paths(type(default), path)
    return found


def test_every_typed_field_reads_a_key_of_the_table() -> None:
    paths = _paths(VoiceCallConfig)
    assert ("streaming", "maxPendingConnectionsPerIp") in paths
    assert ("webhookSecurity", "trustedProxyIPs") in paths
    assert [path for path in paths if not spec_has(*path)] == []


def test_route_fields_are_the_route_keys() -> None:
    keys = {key_of(item) for item in dataclasses.fields(RouteConfig)}
    assert keys == {
        "inboundGreeting",
        "tts",
        "agentId",
        "responseModel",
        "responseSystemPrompt",
        "responseTimeoutMs",
    }


@pytest.mark.parametrize("carrier", sorted(CARRIER_KEYS))
def test_each_carrier_declares_keys_of_its_own_block(carrier: str) -> None:
    keys = CARRIER_KEYS[carrier]
    assert keys.credentials
    assert all(spec_has(carrier, key) for key, _ in keys.credentials)
    assert set(keys.signature_keys) <= {key for key, _ in keys.credentials}

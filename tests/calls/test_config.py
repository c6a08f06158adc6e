from __future__ import annotations

import types

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calls import config as config_module
from calls.config import (
    PLUGIN_PATH,
    SKIP_SIGNATURE_WARNING,
    ConfigError,
    VoiceCallConfig,
    deep_merge,
    get_config,
    load_config,
    mask_secret,
    parse_config,
    reset_config,
    set_config,
)

P = PLUGIN_PATH
TWILIO_OK = {
    "provider": "twilio",
    "fromNumber": "+15550001234",
    "twilio": {"accountSid": "AC123", "authToken": "secret"},
}


def errors_of(raw: dict, env: dict | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, env or {})
    return info.value.errors


def write(tmp_path, text: str):
    path = tmp_path / "voicecall.json5"
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults and sources ----------------------------------------------------------


def test_it_fills_every_default_when_no_file():
    cfg = load_config(None, env={})
    assert cfg.source is None and cfg.warnings == ()
    assert (cfg.enabled, cfg.provider) == (True, "mock")
    assert cfg.inbound_policy == "disabled" and cfg.allow_from == ()
    assert (cfg.default_mode, cfg.notify_hangup_delay_sec, cfg.allow_to) == ("notify", 3, ())
    assert (cfg.max_duration_seconds, cfg.stale_call_reaper_seconds) == (300, 120)
    assert (cfg.transcript_timeout_ms, cfg.ring_timeout_ms) == (180000, 30000)
    assert cfg.max_concurrent_calls == 1 and cfg.response_timeout_ms == 30000
    serve = (cfg.serve_port, cfg.serve_bind, cfg.serve_path)
    assert serve == (3334, "127.0.0.1", "/voice/webhook")
    assert cfg.stream_path == "/voice/stream" and cfg.streaming_enabled is False
    assert cfg.public_url is None and cfg.skip_signature_verification is False
    data = cfg.data
    assert data["silenceTimeoutMs"] == 800 and data["sessionScope"] == "per-phone"
    assert data["tailscale"] == {"mode": "off", "path": "/voice/webhook", "port": 443}
    assert data["tunnel"] == {"provider": "none", "allowNgrokFreeTierLoopbackBypass": False}
    assert data["webhookSecurity"] == {
        "allowedHosts": [],
        "trustForwardingHeaders": False,
        "trustedProxyIPs": [],
    }
    assert data["streaming"]["maxPendingConnectionsPerIp"] == 4
    assert data["realtime"]["streamPath"] == "/voice/stream/realtime"
    assert data["realtime"]["fastContext"]["sources"] == ["memory", "sessions"]
    assert data["realtime"]["agentContext"]["maxChars"] == 6000
    assert cfg.section("twilio") == {"apiBaseUrl": "https://api.twilio.com"}
    assert cfg.section("plivo")["apiBaseUrl"] == "https://api.plivo.com"
    assert cfg.section("nothing-here") == {}
    assert cfg.mock == {
        "simulate": True,
        "answerDelayMs": 1500,
        "ringDelayMs": 500,
        "replyDelayMs": 1200,
        "callerReplies": ["Yes, that works for me.", "No, thank you. Goodbye."],
        "callerHangupAfterReplies": 0,
        "callerIdleHangupMs": 10000,
        "machineDetectionDelayMs": 800,
    }


def test_it_reads_a_whole_openclaw_document_written_in_json5(tmp_path):
    path = write(
        tmp_path,
        """
    // a whole OpenClaw config document
    {
      messages: { tts: { provider: "openai",
                         providers: { openai: { voice: "alloy", model: "tts-1" } } } },
      plugins: {
        entries: {
          "voice-call": {
            enabled: true,
            config: {
              provider: "twilio",   // the carrier
              fromNumber: "+15550001234",
              twilio: { accountSid: "AC123", authToken: "tok", },
              tts: { providers: { openai: { voice: "marin" } } },
            },
          },
        },
      },
    }
    """,
    )
    cfg = load_config(path, env={})
    assert cfg.source == str(path)
    assert (cfg.provider, cfg.from_number) == ("twilio", "+15550001234")
    assert cfg.tts["provider"] == "openai"
    assert cfg.tts["providers"]["openai"] == {"voice": "marin", "model": "tts-1"}


def test_the_document_entry_enabled_flag_wins_over_the_config_flag():
    doc = {
        "plugins": {
            "entries": {
                "voice-call": {"enabled": False, "config": {"enabled": True, "provider": "twilio"}}
            }
        }
    }
    cfg = parse_config(doc, {})
    assert cfg.enabled is False  # and so twilio's missing credentials are not errors


def test_a_document_without_a_voice_call_entry_means_defaults():
    cfg = parse_config({"plugins": {"entries": {}}, "messages": {}}, {})
    assert cfg.provider == "mock" and cfg.tts == {"providers": {}}


def test_a_malformed_document_names_the_bad_level():
    with pytest.raises(ConfigError) as info:
        parse_config({"plugins": {"entries": {"voice-call": "on"}}}, {})
    assert info.value.errors == ["plugins.entries.voice-call must be an object"]


def test_an_empty_credential_counts_as_missing():
    raw = {**TWILIO_OK, "twilio": {"accountSid": "AC1", "authToken": ""}}
    assert errors_of(raw) == [f"{P}.twilio.authToken is required (or set TWILIO_AUTH_TOKEN env)"]
    cfg = parse_config(raw, {"TWILIO_AUTH_TOKEN": "tok-env"})
    assert cfg.section("twilio")["authToken"] == "tok-env"


def test_it_accepts_the_plain_plugin_object(tmp_path):
    text = '{"provider": "mock", "inboundPolicy": "open", "toNumber": "+15550005678"}'
    path = write(tmp_path, text)
    cfg = load_config(path, env={})
    assert (cfg.inbound_policy, cfg.to_number) == ("open", "+15550005678")


def test_a_missing_enabled_flag_means_enabled_with_the_mock_provider():
    cfg = parse_config({"inboundGreeting": "Hi"}, {})
    assert (cfg.enabled, cfg.provider, cfg.inbound_greeting) == (True, "mock", "Hi")


def test_a_non_boolean_enabled_flag_is_rejected():
    assert errors_of({"enabled": "yes"}) == [f"{P}.enabled must be a boolean"]


# --- environment -------------------------------------------------------------------


def test_env_fills_only_missing_secrets_of_the_selected_provider():
    env = {
        "TWILIO_ACCOUNT_SID": "ACenv",
        "TWILIO_AUTH_TOKEN": "tok-env",
        "TWILIO_FROM_NUMBER": "+15550009999",
        "TELNYX_API_KEY": "KEYenv",
        "PLIVO_AUTH_ID": "MAenv",
    }
    cfg = parse_config({"provider": "twilio"}, env)
    assert cfg.section("twilio")["accountSid"] == "ACenv"
    assert cfg.section("twilio")["authToken"] == "tok-env"
    assert cfg.from_number == "+15550009999"
    assert "apiKey" not in cfg.section("telnyx")
    assert "authId" not in cfg.section("plivo")


def test_a_file_value_wins_over_env():
    env = {
        "TWILIO_AUTH_TOKEN": "from-env",
        "TWILIO_FROM_NUMBER": "+15550009999",
        "NGROK_DOMAIN": "env.ngrok.app",
    }
    raw = {**TWILIO_OK, "tunnel": {"ngrokDomain": "file.ngrok.app"}}
    cfg = parse_config(raw, env)
    assert cfg.section("twilio")["authToken"] == "secret"
    assert cfg.from_number == "+15550001234"
    assert cfg.section("tunnel")["ngrokDomain"] == "file.ngrok.app"


def test_twilio_from_number_env_is_ignored_for_other_providers():
    env = {"TWILIO_FROM_NUMBER": "+15550009999"}
    assert parse_config({"provider": "mock"}, env).from_number is None


def test_ngrok_env_always_fills_the_tunnel():
    cfg = parse_config({}, {"NGROK_AUTHTOKEN": "ngrok-tok", "NGROK_DOMAIN": "x.ngrok.app"})
    assert cfg.section("tunnel")["ngrokAuthToken"] == "ngrok-tok"
    assert cfg.section("tunnel")["ngrokDomain"] == "x.ngrok.app"


def test_openai_key_fills_streaming_only_when_streaming_uses_openai():
    env = {"OPENAI_API_KEY": "sk-env"}
    chosen = parse_config({**TWILIO_OK, "streaming": {"provider": "openai"}}, env)
    other = parse_config({**TWILIO_OK, "streaming": {"provider": "deepgram"}}, env)
    assert chosen.section("streaming")["providers"]["openai"]["apiKey"] == "sk-env"
    assert other.section("streaming")["providers"] == {}


def test_speech_keys_fill_existing_tts_provider_blocks_only():
    env = {"ELEVENLABS_API_KEY": "el-env", "OPENAI_API_KEY": "sk-env"}
    cfg = parse_config({"tts": {"providers": {"elevenlabs": {"voiceId": "v1"}}}}, env)
    assert cfg.tts["providers"] == {"elevenlabs": {"voiceId": "v1", "apiKey": "el-env"}}


# --- required credentials (docs/plugin-behaviour.md, "Config errors") ----------------


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        (
            "twilio",
            [
                f"{P}.fromNumber is required (or set TWILIO_FROM_NUMBER env)",
                f"{P}.twilio.accountSid is required (or set TWILIO_ACCOUNT_SID env)",
                f"{P}.twilio.authToken is required (or set TWILIO_AUTH_TOKEN env)",
            ],
        ),
        (
            "telnyx",
            [
                f"{P}.fromNumber is required",
                f"{P}.telnyx.apiKey is required (or set TELNYX_API_KEY env)",
                f"{P}.telnyx.connectionId is required (or set TELNYX_CONNECTION_ID env)",
                f"{P}.telnyx.publicKey is required (or set TELNYX_PUBLIC_KEY env)",
            ],
        ),
        (
            "plivo",
            [
                f"{P}.fromNumber is required",
                f"{P}.plivo.authId is required (or set PLIVO_AUTH_ID env)",
                f"{P}.plivo.authToken is required (or set PLIVO_AUTH_TOKEN env)",
            ],
        ),
    ],
)
def test_it_names_every_missing_credential_exactly(provider, expected):
    assert errors_of({"provider": provider}) == expected


def test_telnyx_public_key_is_optional_when_signature_verification_is_skipped():
    raw = {
        "provider": "telnyx",
        "fromNumber": "+15550001234",
        "telnyx": {"apiKey": "k", "connectionId": "c"},
    }
    missing = f"{P}.telnyx.publicKey is required (or set TELNYX_PUBLIC_KEY env)"
    assert errors_of(raw) == [missing]
    cfg = parse_config({**raw, "skipSignatureVerification": True}, {})
    assert cfg.provider == "telnyx"


def test_the_mock_provider_needs_no_credentials():
    assert parse_config({"provider": "mock"}, {}).from_number is None


def test_enabled_false_skips_provider_validation():
    raw = {
        "enabled": False,
        "provider": "twilio",
        "streaming": {"enabled": True},
        "realtime": {"enabled": True},
    }
    cfg = parse_config(raw, {})
    assert cfg.enabled is False and cfg.provider == "twilio"
    assert errors_of({**raw, "enabled": True})  # the same config fails when enabled


def test_disabled_config_keeps_provider_unset():
    assert parse_config({"enabled": False}, {}).provider is None


def test_it_reports_every_problem_together():
    raw = {"provider": "plivo", "serve": {"port": 0, "hots": "x"}, "fromNumber": "555"}
    errors = errors_of(raw)
    assert sorted(errors) == sorted(
        [
            f"{P}.fromNumber: Expected E.164 format, e.g. +15550001234",
            f"{P}.serve.port must be an integer between 1 and 65535",
            f"{P}.serve.hots is not a recognized key",
            f"{P}.plivo.authId is required (or set PLIVO_AUTH_ID env)",
            f"{P}.plivo.authToken is required (or set PLIVO_AUTH_TOKEN env)",
        ]
    )


def test_the_exception_message_puts_each_problem_on_its_own_line():
    with pytest.raises(ConfigError) as info:
        parse_config({"maxConcurrentCalls": 0, "bogus": 1}, {})
    assert str(info.value) == (
        "Invalid voice-call config:\n"
        f"- {P}.maxConcurrentCalls must be an integer greater than 0\n"
        f"- {P}.bogus is not a recognized key"
    )


def test_a_single_problem_stays_on_one_line():
    with pytest.raises(ConfigError) as info:
        parse_config({"bogus": 1}, {})
    assert str(info.value) == f"Invalid voice-call config: {P}.bogus is not a recognized key"


def test_a_near_miss_of_a_key_gets_a_hint():
    errors = errors_of({"provder": "mock", "serve": {"prot": 1}, "maxConcurentCalls": 2})
    assert errors == [
        f'{P}.provder is not a recognized key (did you mean "provider"?)',
        f'{P}.serve.prot is not a recognized key (did you mean "port"?)',
        f'{P}.maxConcurentCalls is not a recognized key (did you mean "maxConcurrentCalls"?)',
    ]


def test_a_bare_config_file_names_keys_as_the_file_spells_them(tmp_path):
    bare = tmp_path / "bare.json5"
    bare.write_text('{ provder: "mock", serve: { port: 0 } }')
    with pytest.raises(ConfigError) as info:
        load_config(bare, {})
    assert info.value.errors == [
        'provder is not a recognized key (did you mean "provider"?)',
        "serve.port must be an integer between 1 and 65535",
    ]
    whole = tmp_path / "openclaw.json5"
    whole.write_text('{ plugins: { entries: { "voice-call": { config: { provder: "mock" } } } } }')
    with pytest.raises(ConfigError) as info:
        load_config(whole, {})
    assert info.value.errors == [f'{P}.provder is not a recognized key (did you mean "provider"?)']


# --- combinations ------------------------------------------------------------------


TELNYX_OK = {
    "provider": "telnyx",
    "fromNumber": "+15550001234",
    "telnyx": {"apiKey": "KEY1", "connectionId": "123", "publicKey": "pk"},
}
PLIVO_OK = {
    "provider": "plivo",
    "fromNumber": "+15550001234",
    "plivo": {"authId": "MA1", "authToken": "secret"},
}


def test_streaming_refuses_the_mock_carrier():
    raw = {"provider": "mock", "streaming": {"enabled": True}}
    assert errors_of(raw) == [
        f'{P}.provider must be "twilio", "telnyx" or "plivo" when streaming.enabled is true'
    ]


@pytest.mark.parametrize(
    "carrier", [TWILIO_OK, TELNYX_OK, PLIVO_OK], ids=["twilio", "telnyx", "plivo"]
)
def test_every_real_carrier_may_stream(carrier: dict) -> None:
    # The plugin streams on Twilio only; voicecall on every real carrier
    # (docs/plugin-behaviour.md, "Streaming and realtime settings").
    assert parse_config({**carrier, "streaming": {"enabled": True}}, {}).streaming_enabled


def test_realtime_needs_an_inbound_policy_and_excludes_streaming():
    raw = {**TWILIO_OK, "realtime": {"enabled": True}, "streaming": {"enabled": True}}
    assert errors_of(raw) == [
        f'{P}.inboundPolicy must not be "disabled" when realtime.enabled is true',
        f"{P}.realtime.enabled and {P}.streaming.enabled cannot both be true",
    ]


def test_realtime_rejects_plivo():
    raw = {
        "provider": "plivo",
        "fromNumber": "+15550001234",
        "inboundPolicy": "open",
        "plivo": {"authId": "MA1", "authToken": "t"},
        "realtime": {"enabled": True},
    }
    assert errors_of(raw) == [
        f'{P}.provider must be "twilio", "telnyx", or "mock" when realtime.enabled is true'
    ]


def test_realtime_stream_path_follows_serve_path():
    cfg = parse_config({"serve": {"path": "/api/hooks"}}, {})
    assert cfg.data["realtime"]["streamPath"] == "/api/hooks/stream/realtime"
    root = parse_config({"serve": {"path": "/"}}, {})
    assert root.data["realtime"]["streamPath"] == "/voice/stream/realtime"


def test_serve_drain_seconds_defaults_to_30_and_takes_zero_or_more():
    # Ours: how long live streams may run on after SIGTERM (docs/architecture.md,
    # "Graceful drain").
    assert parse_config({}, {}).serve.drain_seconds == 30
    assert parse_config({"serve": {"drainSeconds": 0}}, {}).serve.drain_seconds == 0
    assert parse_config({"serve": {"drainSeconds": 5}}, {}).serve.drain_seconds == 5
    for bad in (-1, 2.5, "30", True):
        assert errors_of({"serve": {"drainSeconds": bad}}) == [
            f"{P}.serve.drainSeconds must be an integer greater than or equal to 0"
        ]


def test_tailscale_funnel_only_takes_its_three_ports():
    assert errors_of({"tailscale": {"mode": "funnel", "port": 444}}) == [
        f"{P}.tailscale.port: Tailscale Funnel HTTPS port must be one of 443, 8443, 10000"
    ]
    assert parse_config({"tailscale": {"mode": "serve", "port": 444}}, {})


# --- schema ------------------------------------------------------------------------


def test_it_rejects_unknown_keys_at_top_level_and_nested():
    errors = errors_of(
        {"provder": "mock", "serve": {"hots": "0.0.0.0"}, "realtime": {"fastContext": {"extra": 1}}}
    )
    assert errors == [
        f'{P}.provder is not a recognized key (did you mean "provider"?)',
        f"{P}.serve.hots is not a recognized key",
        f"{P}.realtime.fastContext.extra is not a recognized key",
    ]


def test_provider_sub_blocks_are_free_form():
    raw = {
        "streaming": {"providers": {"deepgram": {"anything": 1}}},
        "realtime": {"providers": {"google": {"voice": "Kore"}}},
        "tts": {"providers": {"acme": {"apiKey": "k", "style": "x"}}},
    }
    cfg = parse_config(raw, {})
    assert cfg.data["realtime"]["providers"]["google"] == {"voice": "Kore"}


def test_it_rejects_bad_e164_numbers_with_their_index():
    errors = errors_of(
        {
            "fromNumber": "15550001234",
            "allowFrom": ["+15550001234", "+0123"],
            "numbers": {"555": {}},
        }
    )
    assert errors == [
        f"{P}.fromNumber: Expected E.164 format, e.g. +15550001234",
        f"{P}.allowFrom[1]: Expected E.164 format, e.g. +15550001234",
        f"{P}.numbers.555: Expected E.164 format, e.g. +15550001234",
    ]


def test_number_routes_are_strict():
    ok = parse_config({"numbers": {"+15550001234": {"inboundGreeting": "Hi"}}}, {})
    assert ok.data["numbers"]["+15550001234"] == {"inboundGreeting": "Hi"}
    assert errors_of({"numbers": {"+15550001234": {"greeting": "Hi"}}}) == [
        f"{P}.numbers.+15550001234.greeting is not a recognized key"
    ]


def test_allow_to_takes_numbers_and_country_prefixes_but_not_garbage():
    cfg = parse_config({"outbound": {"allowTo": ["+44", "+15550001234"]}}, {})
    assert cfg.allow_to == ("+44", "+15550001234")
    errors = errors_of({"outbound": {"allowTo": ["+44", "44", "+"]}})
    assert [e.split(":")[0] for e in errors] == [
        f"{P}.outbound.allowTo[1]",
        f"{P}.outbound.allowTo[2]",
    ]


def test_type_and_enum_errors_name_the_expected_values():
    errors = errors_of(
        {
            "inboundPolicy": "everyone",
            "staleCallReaperSeconds": -1,
            "skipSignatureVerification": "yes",
            "twilio": {"region": "eu"},
        }
    )
    assert errors == [
        f'{P}.inboundPolicy must be one of "disabled", "allowlist", "pairing", "open"',
        f"{P}.staleCallReaperSeconds must be an integer greater than or equal to 0",
        f"{P}.skipSignatureVerification must be a boolean",
        f'{P}.twilio.region must be one of "us1", "ie1", "au1"',
    ]


def test_booleans_are_not_integers():
    assert errors_of({"maxConcurrentCalls": True}) == [
        f"{P}.maxConcurrentCalls must be an integer greater than 0"
    ]


@pytest.mark.parametrize(
    "url",
    [
        "https://api.twilio.com/2010-04-01",
        "ftp://x.example",
        "https://x.example?x=1",
        "api.twilio.com",
    ],
)
def test_api_base_url_must_be_an_origin(url):
    errors = errors_of({"twilio": {"apiBaseUrl": url}})
    assert errors == [
        f"{P}.twilio.apiBaseUrl must be an http(s) origin "
        "(scheme, host and optional port; no path or query)"
    ]


def test_api_base_url_may_point_at_a_local_fake():
    cfg = parse_config({"plivo": {"apiBaseUrl": "http://127.0.0.1:8081/"}}, {})
    assert cfg.section("plivo")["apiBaseUrl"] == "http://127.0.0.1:8081/"


def test_urls_and_paths_are_checked():
    errors = errors_of(
        {
            "publicUrl": "voice.example.com/hook",
            "serve": {"path": "voice"},
            "responseBaseUrl": "localhost:8000",
            "tts": {"providers": {"openai": {"baseUrl": "nope"}}},
        }
    )
    assert sorted(errors) == sorted(
        [
            f'{P}.serve.path must be a string starting with "/"',
            f"{P}.tts.providers.openai.baseUrl must be an http(s) URL",
            f"{P}.publicUrl must be an http(s) URL",
            f"{P}.responseBaseUrl must be an http(s) URL",
        ]
    )


def test_mock_block_is_validated():
    errors = errors_of({"mock": {"answerDelayMs": -5, "callerReplies": ["ok", 3]}})
    assert errors == [
        f"{P}.mock.answerDelayMs must be an integer greater than or equal to 0",
        f"{P}.mock.callerReplies[1] must be a string",
    ]


@pytest.mark.parametrize(
    ("fallbacks", "error"),
    [
        ("elevenlabs", "tts.fallbacks must be a list"),
        ({"0": "openai"}, "tts.fallbacks must be a list"),
        (["openai", 3], "tts.fallbacks[1] must be a string"),
        ([["edge"]], "tts.fallbacks[0] must be a string"),
    ],
)
def test_tts_fallbacks_must_be_a_list_of_provider_ids(fallbacks, error):
    assert errors_of({"tts": {"fallbacks": fallbacks}}) == [f"{P}.{error}"]


def test_tts_fallbacks_are_kept_in_order_and_replace_the_base_list():
    cfg = parse_config({"tts": {"fallbacks": ["elevenlabs", "edge", "openai"]}}, {})
    assert cfg.tts["fallbacks"] == ["elevenlabs", "edge", "openai"]
    document = {
        "messages": {"tts": {"fallbacks": ["openai", "elevenlabs"]}},
        "plugins": {"entries": {"voice-call": {"config": {"tts": {"fallbacks": ["edge"]}}}}},
    }
    assert parse_config(document, {}).tts["fallbacks"] == ["edge"]  # arrays replace


# --- legacy keys -------------------------------------------------------------------


def test_legacy_log_provider_becomes_mock_with_a_warning():
    cfg = parse_config({"provider": "log"}, {})
    assert cfg.provider == "mock"
    assert any('provider "log"' in w for w in cfg.warnings)


def test_legacy_twilio_from_moves_to_from_number_with_a_warning():
    raw = {
        "provider": "twilio",
        "twilio": {"from": "+15550001234", "accountSid": "AC1", "authToken": "t"},
    }
    cfg = parse_config(raw, {})
    assert cfg.from_number == "+15550001234" and "from" not in cfg.section("twilio")
    assert any("twilio.from" in w for w in cfg.warnings)


def test_legacy_twilio_from_does_not_override_from_number():
    twilio = {**TWILIO_OK["twilio"], "from": "+15559999999"}
    cfg = parse_config({**TWILIO_OK, "twilio": twilio}, {})
    assert cfg.from_number == "+15550001234"


def test_legacy_streaming_keys_move_to_the_openai_provider_block():
    raw = {
        **TWILIO_OK,
        "streaming": {
            "sttProvider": "openai-realtime",
            "openaiApiKey": "sk",
            "sttModel": "gpt-4o-transcribe",
            "vadThreshold": 0.4,
        },
    }
    cfg = parse_config(raw, {})
    streaming = cfg.section("streaming")
    assert streaming["provider"] == "openai"
    assert streaming["providers"]["openai"] == {
        "apiKey": "sk",
        "model": "gpt-4o-transcribe",
        "vadThreshold": 0.4,
    }
    assert "sttModel" not in streaming and len(cfg.warnings) == 4


def test_legacy_stt_block_is_ignored_with_a_warning():
    cfg = parse_config({"stt": {"provider": "openai", "model": "whisper-1"}}, {})
    assert "stt" not in cfg.data and len(cfg.warnings) == 1


def test_legacy_tts_provider_blocks_move_under_providers():
    cfg = parse_config({"tts": {"provider": "elevenlabs", "elevenlabs": {"voiceId": "v"}}}, {})
    assert cfg.tts == {"provider": "elevenlabs", "providers": {"elevenlabs": {"voiceId": "v"}}}
    assert any("tts.elevenlabs" in w for w in cfg.warnings)


def test_skip_signature_verification_warns():
    cfg = parse_config({"skipSignatureVerification": True}, {})
    assert SKIP_SIGNATURE_WARNING in cfg.warnings
    assert parse_config({}, {}).warnings == ()


# --- files -------------------------------------------------------------------------


def test_a_json5_syntax_error_is_one_sentence(tmp_path):
    path = write(tmp_path, "{provider: 'mock',,}")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert len(info.value.errors) == 1
    assert info.value.errors[0].startswith(f"{path}: invalid JSON5 (line 1")


def test_a_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.json5", env={})
    assert info.value.errors == [f"{tmp_path / 'absent.json5'}: file not found"]


def test_a_file_that_is_not_an_object_is_an_error(tmp_path):
    path = write(tmp_path, "[1, 2]")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.errors == [f"{path}: the top level must be an object"]


def test_mutating_the_result_does_not_leak_into_later_loads():
    first = parse_config({}, {})
    first.data["allowFrom"].append("+15550001234")
    first.data["mock"]["callerReplies"].clear()
    first.tts["providers"]["x"] = {}
    second = parse_config({}, {})
    assert second.allow_from == () and len(second.mock["callerReplies"]) == 2
    assert first.tts == {"providers": {}}


def test_parse_does_not_mutate_its_input():
    raw = {"provider": "log", "twilio": {"from": "+15550001234"}, "tts": {"openai": {}}}
    parse_config(raw, {})
    assert raw == {"provider": "log", "twilio": {"from": "+15550001234"}, "tts": {"openai": {}}}


# --- deep merge --------------------------------------------------------------------


def test_deep_merge_merges_nested_dicts_and_replaces_lists_and_scalars():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": "x"}
    merged = deep_merge(base, {"a": {"c": [3]}, "d": "y"})
    assert merged == {"a": {"b": 1, "c": [3]}, "d": "y"}


def test_deep_merge_keeps_base_for_none_and_does_not_mutate_base():
    base = {"a": {"b": 1}, "c": 2}
    merged = deep_merge(base, {"a": {"b": None}, "c": None})
    merged["a"]["b"] = 99
    assert base == {"a": {"b": 1}, "c": 2}
    assert deep_merge(base, {"a": {"b": None}, "c": None}) == base


def test_deep_merge_drops_prototype_keys_at_every_level():
    base = {"constructor": 1, "a": {"prototype": 2, "ok": 1}}
    override = {"__proto__": {"polluted": True}, "a": {"__proto__": 3, "b": {"constructor": 4}}}
    assert deep_merge(base, override) == {"a": {"ok": 1, "b": {}}}


_KEYS = st.sampled_from(["a", "b", "__proto__", "constructor", "prototype"]) | st.text(max_size=4)
_JSON = st.recursive(
    st.booleans() | st.integers() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=3),
    max_leaves=12,
)


def _without_forbidden(value):
    if isinstance(value, dict):
        return {
            k: _without_forbidden(v)
            for k, v in value.items()
            if k not in ("__proto__", "constructor", "prototype")
        }
    if isinstance(value, list):
        return [_without_forbidden(v) for v in value]
    return value


@given(st.dictionaries(_KEYS, _JSON, max_size=4))
def test_deep_merge_with_an_empty_side_returns_the_other_minus_forbidden_keys(x):
    assert deep_merge(x, {}) == _without_forbidden(x)
    assert deep_merge({}, x) == _without_forbidden(x)


# --- process-wide cache and helpers --------------------------------------------------


@pytest.fixture
def clean_cache():
    reset_config()
    yield
    reset_config()


def test_get_config_loads_the_settings_file_once(tmp_path, monkeypatch, clean_cache):
    path = write(tmp_path, "{inboundPolicy: 'open'}")
    settings = types.SimpleNamespace(VOICECALL_CONFIG=str(path))
    monkeypatch.setattr("calls.config.loading.settings", settings)
    first = get_config()
    path.write_text("{inboundPolicy: 'allowlist'}")
    assert first.inbound_policy == "open" and get_config() is first
    reset_config()
    assert get_config().inbound_policy == "allowlist"


def test_get_config_without_a_setting_means_defaults(monkeypatch, clean_cache):
    monkeypatch.setattr("calls.config.loading.settings", types.SimpleNamespace(VOICECALL_CONFIG=""))
    assert get_config().provider == "mock" and get_config().source is None
    reset_config()
    monkeypatch.setattr("calls.config.loading.settings", types.SimpleNamespace())
    assert get_config().provider == "mock"


def test_set_config_overrides_the_cache(clean_cache):
    override = VoiceCallConfig(data={"provider": "twilio"})
    set_config(override)
    assert config_module.get_config() is override


def test_mask_secret_shows_only_a_prefix():
    assert mask_secret("abcdefghijklmnop") == "abcd…"
    assert mask_secret("short") == "…"
    assert mask_secret("") == ""


def test_openai_api_key_fills_the_realtime_provider_when_realtime_is_on() -> None:
    raw = {
        "provider": "twilio",
        "fromNumber": "+15550001234",
        "inboundPolicy": "open",
        "twilio": {"accountSid": "AC1", "authToken": "t"},
        "realtime": {"enabled": True},
    }
    cfg = parse_config(raw, {"OPENAI_API_KEY": "sk-env"})
    assert cfg.section("realtime")["providers"]["openai"]["apiKey"] == "sk-env"
    off = parse_config({**raw, "realtime": {"enabled": False}}, {"OPENAI_API_KEY": "sk-env"})
    assert "openai" not in off.section("realtime").get("providers", {})

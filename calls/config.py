"""Load and validate the voice-call plugin config.

docs/design.md, "4. Configuration"; docs/plugin-behaviour.md, "Configuration".
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import json5
from django.conf import settings

PLUGIN_PATH = "plugins.entries.voice-call.config"
E164_HINT = ": Expected E.164 format, e.g. +15550001234"
SKIP_SIGNATURE_WARNING = (
    "SECURITY WARNING: skipSignatureVerification=true disables webhook signature "
    "verification (development only)"
)
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_DIAL_PREFIX = re.compile(r"^\+[1-9]\d{0,14}$")
_FORBIDDEN_KEYS = frozenset({"__proto__", "prototype", "constructor"})


class ConfigError(Exception):
    """Invalid configuration; .errors holds one sentence per problem, naming the key."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("Invalid voice-call config: " + "; ".join(self.errors))


Check = Callable[[str, Any], list[str]]  # (key path, value) -> error sentences


def _pred(test: Callable[[Any], bool], tail: str) -> Check:
    return lambda path, value: [] if test(value) else [f"{path}{tail}"]


def _int(low: int, high: int | None = None) -> Check:
    if high is not None:
        tail = f" must be an integer between {low} and {high}"
    else:
        tail = f" must be an integer greater than {'or equal to 0' if low == 0 else 0}"
    return _pred(lambda v: type(v) is int and low <= v <= (high or v), tail)


def _enum(*allowed: str) -> Check:
    choices = ", ".join(f'"{a}"' for a in allowed)
    return _pred(lambda v: v in allowed, f" must be one of {choices}")


def _is_url(value: Any, *, origin: bool) -> bool:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except (TypeError, ValueError, AttributeError):
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    bare = parts.path in ("", "/") and not (parts.query or parts.fragment)
    return bare or not origin


def _list(item: Check) -> Check:
    def check(path: str, value: Any) -> list[str]:
        if not isinstance(value, list):
            return [f"{path} must be a list"]
        return [e for i, v in enumerate(value) for e in item(f"{path}[{i}]", v)]

    return check


def _obj(
    spec: Mapping[str, Any], extra: Check | None = None, key_check: Check | None = None
) -> Check:
    """One check for an object. Spec leaves are a check or (check, default); keys
    outside the spec go to `extra` (a free-form map) or are rejected (strict)."""
    checks = {
        k: _obj(v) if isinstance(v, dict) else v[0] if isinstance(v, tuple) else v
        for k, v in spec.items()
    }

    def check(path: str, value: Any) -> list[str]:
        if not isinstance(value, dict):
            return [f"{path} must be an object"]
        errors = []
        for key, item in value.items():
            errors += key_check(f"{path}.{key}", key) if key_check else []
            item_check = checks.get(key, extra)
            if item_check is None:
                errors.append(f"{path}.{key} is not a recognized key")
            elif item is not None:  # null means "unset", as in the plugin's JSON
                errors += item_check(f"{path}.{key}", item)
        return errors

    return check


_ANY = _pred(lambda v: True, "")
_BOOL = _pred(lambda v: isinstance(v, bool), " must be a boolean")
_STR = _pred(lambda v: isinstance(v, str), " must be a string")
_STRS = _list(_STR)
_INT0, _INT1, _PORT = _int(0), _int(1), _int(1, 65535)
_FREE = _pred(lambda v: isinstance(v, dict), " must be an object")
_PATH = _pred(
    lambda v: isinstance(v, str) and v.startswith("/"), ' must be a string starting with "/"'
)
_URL = _pred(lambda v: _is_url(v, origin=False), " must be an http(s) URL")
_ORIGIN = _pred(
    lambda v: _is_url(v, origin=True),
    " must be an http(s) origin (scheme, host and optional port; no path or query)",
)
_PHONE = _pred(lambda v: isinstance(v, str) and bool(_E164.match(v)), E164_HINT)
_PREFIX = _pred(
    lambda v: isinstance(v, str) and bool(_DIAL_PREFIX.match(v)),
    ": Expected an E.164 number or +<country code> prefix, e.g. +44",
)
_API_BLOCK = _obj({"apiKey": _STR, "baseUrl": _URL}, extra=_ANY)
_ROUTE = _obj(
    {
        "inboundGreeting": _STR,
        "tts": _FREE,
        "agentId": _STR,
        "responseModel": _STR,
        "responseSystemPrompt": _STR,
        "responseTimeoutMs": _INT1,
    }
)
_MODEL_OVERRIDES = (
    "enabled",
    "allowText",
    "allowProvider",
    "allowVoice",
    "allowModelId",
    "allowVoiceSettings",
    "allowNormalization",
    "allowSeed",
)
_REPLIES = ["Yes, that works for me.", "No, thank you. Goodbye."]

# The plugin's keys plus our additions, `mock` among them (docs/plugin-behaviour.md,
# "Config shape and defaults"). A dict is a strict object; a leaf is a check or
# (check, default); keys without a default stay unset. Empty credential strings count as
# unset (env may fill them; the "Config errors" strings name them).
_SPEC: dict[str, Any] = {
    "enabled": _BOOL,
    "provider": _enum("telnyx", "twilio", "plivo", "mock"),
    "telnyx": {
        "apiKey": _STR,
        "connectionId": _STR,
        "publicKey": _STR,
        "apiBaseUrl": (_ORIGIN, "https://api.telnyx.com"),
    },
    "twilio": {
        "accountSid": _STR,
        "authToken": _STR,
        "region": _enum("us1", "ie1", "au1"),
        "apiBaseUrl": (_ORIGIN, "https://api.twilio.com"),
    },
    "plivo": {"authId": _STR, "authToken": _STR, "apiBaseUrl": (_ORIGIN, "https://api.plivo.com")},
    "fromNumber": _PHONE,
    "toNumber": _PHONE,
    "inboundPolicy": (_enum("disabled", "allowlist", "pairing", "open"), "disabled"),
    "allowFrom": (_list(_PHONE), []),
    "inboundGreeting": _STR,
    "numbers": (_obj({}, extra=_ROUTE, key_check=_PHONE), {}),
    "outbound": {
        "defaultMode": (_enum("notify", "conversation"), "notify"),
        "notifyHangupDelaySec": (_INT0, 3),
        "allowTo": (_list(_PREFIX), []),
    },
    "maxDurationSeconds": (_INT1, 300),
    "staleCallReaperSeconds": (_INT0, 120),
    "silenceTimeoutMs": (_INT1, 800),  # declared but unused, as in the plugin
    "transcriptTimeoutMs": (_INT1, 180000),
    "ringTimeoutMs": (_INT1, 30000),
    "maxConcurrentCalls": (_INT1, 1),
    "serve": {
        "port": (_PORT, 3334),
        "bind": (_STR, "127.0.0.1"),
        "path": (_PATH, "/voice/webhook"),
    },
    "tailscale": {
        "mode": (_enum("off", "serve", "funnel"), "off"),
        "path": (_PATH, "/voice/webhook"),
        "port": (_PORT, 443),
    },
    "tunnel": {
        "provider": (_enum("none", "ngrok", "tailscale-serve", "tailscale-funnel"), "none"),
        "ngrokAuthToken": _STR,
        "ngrokDomain": _STR,
        "allowNgrokFreeTierLoopbackBypass": (_BOOL, False),
    },
    "webhookSecurity": {
        "allowedHosts": (_STRS, []),
        "trustForwardingHeaders": (_BOOL, False),
        "trustedProxyIPs": (_STRS, []),
    },
    "streaming": {
        "enabled": (_BOOL, False),
        "provider": _STR,
        "streamPath": (_PATH, "/voice/stream"),
        "providers": (_obj({"openai": _API_BLOCK}, extra=_FREE), {}),
        "preStartTimeoutMs": (_INT1, 5000),
        "maxPendingConnections": (_INT1, 32),
        "maxPendingConnectionsPerIp": (_INT1, 4),
        "maxConnections": (_INT1, 128),
    },
    "realtime": {
        "enabled": (_BOOL, False),
        "provider": _STR,
        "streamPath": _PATH,
        "instructions": _STR,
        "tools": (_list(_FREE), []),
        "providers": (_obj({}, extra=_FREE), {}),
        "toolPolicy": (_enum("safe-read-only", "owner", "none"), "safe-read-only"),
        "consultPolicy": (_enum("auto", "substantive", "always"), "auto"),
        "consultThinkingLevel": _STR,
        "consultFastMode": _BOOL,
        "idleHangupMs": _INT1,
        "fastContext": {
            "enabled": (_BOOL, False),
            "timeoutMs": (_INT1, 800),
            "maxResults": (_INT1, 3),
            "sources": (_STRS, ["memory", "sessions"]),
            "fallbackToConsult": (_BOOL, False),
        },
        "agentContext": {
            "enabled": (_BOOL, False),
            "maxChars": (_INT1, 6000),
            "includeIdentity": (_BOOL, True),
            "includeWorkspaceFiles": (_BOOL, True),
            "files": (_STRS, ["SOUL.md", "IDENTITY.md", "USER.md"]),
        },
    },
    "sessionScope": (_enum("per-phone", "per-call", "main"), "per-phone"),
    "publicUrl": _URL,
    "skipSignatureVerification": (_BOOL, False),
    "tts": {
        "auto": _enum("off", "always", "inbound", "tagged"),
        "enabled": _BOOL,
        "mode": _enum("final", "all"),
        "provider": _STR,
        "summaryModel": _STR,
        "modelOverrides": {key: _BOOL for key in _MODEL_OVERRIDES},
        "providers": (_obj({"openai": _API_BLOCK, "elevenlabs": _API_BLOCK}, extra=_FREE), {}),
        "prefsPath": _STR,
        "maxTextLength": _INT1,
        "timeoutMs": _int(1000, 120000),
    },
    "store": _STR,
    "agentId": _STR,
    "responseModel": _STR,
    "responseSystemPrompt": _STR,
    "responseTimeoutMs": (_INT1, 30000),
    "responseBaseUrl": _URL,
    "mock": {
        "simulate": (_BOOL, True),
        "answerDelayMs": (_INT0, 1500),
        "ringDelayMs": (_INT0, 500),
        "replyDelayMs": (_INT0, 1200),
        "callerReplies": (_STRS, _REPLIES),
        "callerHangupAfterReplies": (_INT0, 0),
        "callerIdleHangupMs": (_INT0, 10000),
    },
}


def _defaults(spec: Mapping[str, Any]) -> dict:
    found: dict[str, Any] = {}
    for key, entry in spec.items():
        if isinstance(entry, tuple):
            found[key] = entry[1]
        elif isinstance(entry, dict) and (nested := _defaults(entry)):
            found[key] = nested
    return found


_SCHEMA, _DEFAULTS = _obj(_SPEC), _defaults(_SPEC)

# provider -> ((key in its block, env var), ...): drives env fill and the required-key
# errors (docs/plugin-behaviour.md, "Config errors").
_CREDENTIALS: dict[str, tuple[tuple[str, str], ...]] = {
    "twilio": (("accountSid", "TWILIO_ACCOUNT_SID"), ("authToken", "TWILIO_AUTH_TOKEN")),
    "telnyx": (
        ("apiKey", "TELNYX_API_KEY"),
        ("connectionId", "TELNYX_CONNECTION_ID"),
        ("publicKey", "TELNYX_PUBLIC_KEY"),
    ),
    "plivo": (("authId", "PLIVO_AUTH_ID"), ("authToken", "PLIVO_AUTH_TOKEN")),
}
_LEGACY_STREAMING = {
    "openaiApiKey": "apiKey",
    "sttModel": "model",
    "silenceDurationMs": "silenceDurationMs",
    "vadThreshold": "vadThreshold",
}
_LEGACY_TTS_PROVIDERS = ("openai", "elevenlabs", "microsoft", "edge")


def _sub(node: Any, *keys: str) -> dict:
    """The dict at node[k1][k2]...; a detached {} when absent or not a dict."""
    for key in keys:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, dict) else {}


def _read(*keys: str) -> Any:
    return property(lambda self: _sub(self.data, *keys[:-1]).get(keys[-1]))


@dataclass(frozen=True)
class VoiceCallConfig:
    data: dict
    warnings: tuple[str, ...] = ()
    source: str | None = None

    # Read-only views over `data`; the camelCase dict stays the source of truth.
    enabled = _read("enabled")
    provider = _read("provider")
    from_number = _read("fromNumber")
    to_number = _read("toNumber")
    inbound_policy = _read("inboundPolicy")
    inbound_greeting = _read("inboundGreeting")
    default_mode = _read("outbound", "defaultMode")
    notify_hangup_delay_sec = _read("outbound", "notifyHangupDelaySec")
    max_duration_seconds = _read("maxDurationSeconds")
    max_concurrent_calls = _read("maxConcurrentCalls")
    stale_call_reaper_seconds = _read("staleCallReaperSeconds")
    transcript_timeout_ms = _read("transcriptTimeoutMs")
    ring_timeout_ms = _read("ringTimeoutMs")
    serve_port = _read("serve", "port")
    serve_bind = _read("serve", "bind")
    serve_path = _read("serve", "path")
    public_url = _read("publicUrl")
    skip_signature_verification = _read("skipSignatureVerification")
    streaming_enabled = _read("streaming", "enabled")
    stream_path = _read("streaming", "streamPath")
    response_model = _read("responseModel")
    response_system_prompt = _read("responseSystemPrompt")
    response_timeout_ms = _read("responseTimeoutMs")
    response_base_url = _read("responseBaseUrl")

    allow_from = property(lambda self: tuple(self.data.get("allowFrom") or ()))
    allow_to = property(lambda self: tuple(_sub(self.data, "outbound").get("allowTo") or ()))
    tts = property(lambda self: self.section("tts"))  # copies: the cache stays intact
    mock = property(lambda self: self.section("mock"))

    def section(self, name: str) -> dict:
        return copy.deepcopy(_sub(self.data, name))


def deep_merge(base: Mapping, override: Mapping) -> dict:
    """Merge override over base into a new dict.

    Plain dicts merge recursively; lists and scalars replace; None in override keeps
    the base value; __proto__/prototype/constructor are dropped at every level
    (docs/plugin-behaviour.md, "TTS config and voice lookup").
    """
    result = {k: _clean(v) for k, v in base.items() if k not in _FORBIDDEN_KEYS}
    for key, value in override.items():
        if key in _FORBIDDEN_KEYS or value is None:
            continue
        if isinstance(value, Mapping) and isinstance(result.get(key), dict):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = _clean(value)
    return result


def _clean(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items() if k not in _FORBIDDEN_KEYS}
    if isinstance(value, list):
        return [_clean(item) for item in value]
    return copy.deepcopy(value)


def realtime_stream_path(serve_path: str) -> str:
    """A trailing /webhook becomes /stream/realtime, else append.

    docs/plugin-behaviour.md, "Streaming and realtime settings".
    """
    path = serve_path.rstrip("/")
    if not path:
        return "/voice/stream/realtime"
    if path.endswith("/webhook"):
        return path.removesuffix("/webhook") + "/stream/realtime"
    return path + "/stream/realtime"


def _fill_defaults(data: dict, defaults: Mapping[str, Any]) -> None:
    for key, default in defaults.items():
        if data.get(key) is None:
            data[key] = copy.deepcopy(default)
        elif isinstance(default, dict) and isinstance(data[key], dict):
            _fill_defaults(data[key], default)


def _migrate_legacy(data: dict, warnings: list[str]) -> None:
    def warn(message: str) -> None:
        warnings.append(f"{PLUGIN_PATH}.{message}")

    if data.get("provider") == "log":
        data["provider"] = "mock"
        warn('provider "log" is deprecated; using "mock"')
    twilio = _sub(data, "twilio")
    if "from" in twilio:
        legacy = twilio.pop("from")
        if data.get("fromNumber") is None:
            data["fromNumber"] = legacy
            warn("twilio.from is deprecated; moved to fromNumber")
        else:
            warn("twilio.from is ignored because fromNumber is set")
    if data.pop("stt", None) is not None:
        warn("stt is no longer used and was ignored")
    _migrate_streaming(_sub(data, "streaming"), warn)


def _migrate_streaming(streaming: dict, warn: Callable[[str], None]) -> None:
    if "sttProvider" in streaming:
        legacy = streaming.pop("sttProvider")
        # v4.12 named the OpenAI realtime transcriber "openai-realtime".
        streaming.setdefault(
            "provider", legacy.removesuffix("-realtime") if isinstance(legacy, str) else legacy
        )
        warn("streaming.sttProvider is deprecated; moved to streaming.provider")
    for old, new in _LEGACY_STREAMING.items():
        if old in streaming:
            providers = streaming.setdefault("providers", {})
            if isinstance(providers, dict):  # values already in the new place win
                providers["openai"] = {new: streaming[old], **_sub(providers, "openai")}
            del streaming[old]
            warn(f"streaming.{old} is deprecated; moved to streaming.providers.openai.{new}")


def _merge_tts(data: dict, base: Any, warnings: list[str]) -> list[str]:
    """The plugin tts deep-merges over messages.tts; old tts.<id> blocks move."""
    override = data.get("tts") or {}
    if not isinstance(override, Mapping) or not isinstance(base, Mapping):
        data["tts"] = {}
        bad = "messages" if isinstance(override, Mapping) else PLUGIN_PATH
        return [f"{bad}.tts must be an object"]
    tts = data["tts"] = deep_merge(base, override)
    providers = tts.setdefault("providers", {})
    for name in _LEGACY_TTS_PROVIDERS:
        # Older configs (the seed document's examples too) put blocks at tts.<id>.
        if isinstance(tts.get(name), dict) and isinstance(providers, dict):
            providers[name] = deep_merge(tts.pop(name), _sub(providers, name))
            warnings.append(
                f"{PLUGIN_PATH}.tts.{name} is a legacy location; treated as tts.providers.{name}"
            )
    return []


def _env_fill(block: dict, key: str, env: Mapping[str, str], var: str) -> None:
    if block.get(key) in (None, "") and env.get(var):
        block[key] = env[var]


def _apply_env(data: dict, env: Mapping[str, str]) -> None:
    """Env fills missing secrets only, and only for the selected provider's block."""
    provider = str(data.get("provider") or "")
    for key, var in _CREDENTIALS.get(provider, ()):
        _env_fill(_sub(data, provider), key, env, var)
    if provider == "twilio":
        _env_fill(data, "fromNumber", env, "TWILIO_FROM_NUMBER")
    _env_fill(_sub(data, "tunnel"), "ngrokAuthToken", env, "NGROK_AUTHTOKEN")
    _env_fill(_sub(data, "tunnel"), "ngrokDomain", env, "NGROK_DOMAIN")
    if _sub(data, "streaming").get("provider") == "openai":
        providers = _sub(data, "streaming", "providers")
        providers.setdefault("openai", {})
        _env_fill(_sub(providers, "openai"), "apiKey", env, "OPENAI_API_KEY")
    _env_fill(_sub(data, "tts", "providers", "openai"), "apiKey", env, "OPENAI_API_KEY")
    if _sub(data, "realtime").get("enabled") is True:
        providers = _sub(data, "realtime", "providers")
        providers.setdefault("openai", {})
        _env_fill(_sub(providers, "openai"), "apiKey", env, "OPENAI_API_KEY")
    _env_fill(_sub(data, "tts", "providers", "elevenlabs"), "apiKey", env, "ELEVENLABS_API_KEY")


def _provider_errors(data: dict) -> list[str]:
    """The plugin's validateProviderConfig; runs only when the plugin is enabled.

    docs/plugin-behaviour.md, "Config errors".
    """
    p, provider = PLUGIN_PATH, str(data.get("provider") or "")
    errors = [] if provider else [f"{p}.provider is required"]
    if provider in _CREDENTIALS and data.get("fromNumber") in (None, ""):
        hint = " (or set TWILIO_FROM_NUMBER env)" if provider == "twilio" else ""
        errors.append(f"{p}.fromNumber is required{hint}")
    for key, var in _CREDENTIALS.get(provider, ()):
        if key == "publicKey" and data.get("skipSignatureVerification") is True:
            continue
        if isinstance(data[provider], dict) and data[provider].get(key) in (None, ""):
            errors.append(f"{p}.{provider}.{key} is required (or set {var} env)")
    return errors + _mode_errors(data, provider)


STREAMING_CARRIERS = ("twilio", "telnyx", "plivo")


def _mode_errors(data: dict, provider: str) -> list[str]:
    p, errors = PLUGIN_PATH, []
    streaming = _sub(data, "streaming").get("enabled") is True
    if _sub(data, "realtime").get("enabled") is True:
        if data.get("inboundPolicy") == "disabled":
            errors.append(f'{p}.inboundPolicy must not be "disabled" when realtime.enabled is true')
        if streaming:
            errors.append(f"{p}.realtime.enabled and {p}.streaming.enabled cannot both be true")
        if provider not in ("twilio", "telnyx", "mock"):
            errors.append(
                f'{p}.provider must be "twilio", "telnyx", or "mock" when realtime.enabled is true'
            )
    # The plugin streams on Twilio only; here every real carrier streams
    # (docs/plugin-behaviour.md, "Streaming and realtime settings").
    if streaming and provider not in STREAMING_CARRIERS:
        errors.append(
            f'{p}.provider must be "twilio", "telnyx" or "plivo" when streaming.enabled is true'
        )
    return errors


def _funnel_errors(data: dict) -> list[str]:
    tailscale = _sub(data, "tailscale")
    funnel = tailscale.get("mode") == "funnel" or (
        _sub(data, "tunnel").get("provider") == "tailscale-funnel"
    )
    if funnel and tailscale.get("port") not in (443, 8443, 10000):
        return [
            f"{PLUGIN_PATH}.tailscale.port: Tailscale Funnel HTTPS port "
            "must be one of 443, 8443, 10000"
        ]
    return []


def _document_entry(raw: Mapping) -> Mapping:
    node, path = raw, ""
    for key in ("plugins", "entries", "voice-call"):
        node, path = node.get(key) or {}, f"{path}.{key}".lstrip(".")
        if not isinstance(node, Mapping):
            raise ConfigError([f"{path} must be an object"])
    return node


def parse_config(
    raw: Mapping, env: Mapping[str, str] | None = None, *, source: str | None = None
) -> VoiceCallConfig:
    """Normalize and validate a plugin config object or a whole OpenClaw document."""
    config: Any = raw
    base_tts: Any = {}
    if "plugins" in raw:  # a whole OpenClaw document
        entry = _document_entry(raw)
        config = entry.get("config") or {}
        if isinstance(config, Mapping) and entry.get("enabled") is not None:
            config = {**config, "enabled": entry["enabled"]}
        base_tts = _sub(raw, "messages").get("tts") or {}
    if not isinstance(config, Mapping):
        raise ConfigError([f"{PLUGIN_PATH} must be an object"])
    data = copy.deepcopy(dict(config))
    warnings: list[str] = []
    _migrate_legacy(data, warnings)
    errors = _merge_tts(data, base_tts, warnings)
    _fill_defaults(data, _DEFAULTS)
    # Plugin-entry quirk: a missing flag means enabled, with the mock provider.
    if data.get("enabled") is None:
        data["enabled"] = True
    if data["enabled"] is True and data.get("provider") is None:
        data["provider"] = "mock"
    realtime, serve_path = _sub(data, "realtime"), _sub(data, "serve").get("path")
    if (
        realtime.get("streamPath") is None
        and isinstance(serve_path, str)
        and serve_path.startswith("/")
    ):
        realtime["streamPath"] = realtime_stream_path(serve_path)
    _apply_env(data, os.environ if env is None else env)
    errors += _SCHEMA(PLUGIN_PATH, data) + _funnel_errors(data)
    if data["enabled"] is True:
        errors += _provider_errors(data)
    if errors:
        raise ConfigError(errors)
    if data["skipSignatureVerification"]:
        warnings.append(SKIP_SIGNATURE_WARNING)
    return VoiceCallConfig(data=data, warnings=tuple(warnings), source=source)


def load_config(
    path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None
) -> VoiceCallConfig:
    """Read a JSON/JSON5 file and parse it; no path means the mock defaults."""
    if path is None:
        return parse_config({}, env)
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ConfigError([f"{name}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{name}: file cannot be read ({exc})"]) from exc
    try:
        raw = json5.loads(text)
    except ValueError as exc:
        detail = str(exc).replace("<string>:", "line ")
        raise ConfigError([f"{name}: invalid JSON5 ({detail})"]) from exc
    if not isinstance(raw, dict):
        raise ConfigError([f"{name}: the top level must be an object"])
    return parse_config(raw, env, source=name)


_cached: VoiceCallConfig | None = None


def get_config() -> VoiceCallConfig:
    """The process-wide config, loaded once from settings.VOICECALL_CONFIG."""
    global _cached
    if _cached is None:
        _cached = load_config(getattr(settings, "VOICECALL_CONFIG", None) or None)
    return _cached


def reset_config() -> None:
    global _cached
    _cached = None


def set_config(cfg: VoiceCallConfig) -> None:
    global _cached
    _cached = cfg


def mask_secret(value: str) -> str:
    """Show the first four characters ("abcd…"); secrets under 12 show nothing."""
    if not value:
        return ""
    return value[:4] + "…" if len(value) >= 12 else "…"

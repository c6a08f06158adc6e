"""Small helpers every carrier adapter shares: its config values and the configured TTS voice."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx

from providers.base import CallTarget
from providers.errors import ProviderError, ProviderNotConfigured

# The call states after which a call is over (docs/plugin-behaviour.md, "State machine"):
# a reply for such a call must not keep it open.
TERMINAL_STATES = frozenset(
    {
        "completed",
        "hangup-user",
        "hangup-bot",
        "timeout",
        "error",
        "failed",
        "no-answer",
        "busy",
        "voicemail",
    }
)

# The preferred voice of tts.providers[tts.provider], newest key first
# (docs/plugin-behaviour.md, "TTS config and voice lookup").
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


def required_block_values(
    settings: Mapping[str, Any], block: str, keys: tuple[str, ...], *, carrier: str
) -> dict[str, str]:
    """The `<block>.<key>` settings an adapter cannot start without, by key.

    ProviderNotConfigured names every missing one ("Twilio is not configured: missing …").
    """
    values = {key: block_value(settings, block, key) for key in keys}
    missing = [f"{block}.{key}" for key, value in values.items() if not value]
    if missing:
        raise ProviderNotConfigured(f"{carrier} is not configured: missing {', '.join(missing)}")
    return values


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


OPENAI_BASE_URL = "https://api.openai.com"


def openai_probe(url: str, api_key: str) -> httpx.Request:
    """`GET <base>/v1/models` with the key: free, and refused (401) for a bad key. `url` is
    any OpenAI URL we use (REST or realtime); its host and base path are kept."""
    parts = urlsplit(url.strip())
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/")
    for suffix in ("/realtime", "/audio/speech", "/v1"):
        path = path.removesuffix(suffix)
    target = urlunsplit((scheme, parts.netloc, f"{path}/v1/models", "", ""))
    return httpx.Request("GET", target, headers={"Authorization": f"Bearer {api_key}"})


def openai_realtime_url(base_url: str | None, query: str) -> str:
    """ws(s)://<host>/v1/realtime?<query> from an http(s) or ws(s) OpenAI base URL."""
    parts = urlsplit((base_url or OPENAI_BASE_URL).strip())
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    # OpenAI base URLs are often written with the /v1 suffix; do not double it.
    path = parts.path.rstrip("/").removesuffix("/v1")
    return urlunsplit((scheme, parts.netloc, f"{path}/v1/realtime", query, ""))


def selected_provider(
    settings: Mapping[str, Any], section: str, supported: tuple[str, ...]
) -> tuple[str, Mapping[str, Any]]:
    """`<section>.provider` (default: the first supported) and its `providers.<id>` block.

    The `streaming` and `realtime` blocks share this shape (docs/plugin-behaviour.md,
    "Streaming and realtime settings"); an absent block reads as {}.
    """
    provider = str(settings.get("provider") or supported[0]).strip()
    if provider not in supported:
        choices = " or ".join(f'"{name}"' for name in supported)
        raise ProviderNotConfigured(
            f'{section}.provider "{provider}" is not supported; use {choices}'
        )
    providers = settings.get("providers")
    block = providers.get(provider) if isinstance(providers, Mapping) else None
    return provider, block if isinstance(block, Mapping) else {}


def number_setting(block: Mapping[str, Any], key: str, default: float, *, path: str) -> float:
    """A numeric provider setting (default when unset); ProviderNotConfigured naming `path`."""
    value = block.get(key)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ProviderNotConfigured(f"{path}.{key} must be a number") from None


def api_key_setting(block: Mapping[str, Any], *, path: str, env: str | None = None) -> str:
    """`<path>.apiKey`, stripped; ProviderNotConfigured (naming `env`, if any) when unset."""
    api_key = str(block.get("apiKey") or "").strip()
    if not api_key:
        hint = f" (or set {env})" if env else ""
        raise ProviderNotConfigured(f"{path}.apiKey is required{hint}")
    return api_key


def json_finite_number(value: object) -> float | None:
    """A JSON number as a float a database can hold; None for bools, NaN, infinities and
    integers too large for a float (json.loads accepts all of them, JSONB and SQLite's JSON
    check do not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def with_query(base: str, **params: str | int | None) -> str:
    """`base` plus the non-empty params, percent-encoded, after `?` or `&`."""
    pairs = [(key, str(value)) for key, value in params.items() if value not in (None, "")]
    if not pairs:
        return base
    return f"{base}{'&' if '?' in base else '?'}{urlencode(pairs)}"


def call_webhook_url(target: CallTarget, settings: Mapping[str, Any], *, missing: str) -> str:
    """The call's webhook URL (it carries our callId): the one stored on the call, else
    publicUrl plus callId (an inbound call may not have one stored yet).

    `missing` is the carrier's error when neither exists; the plugin's wording differs per
    carrier (docs/plugin-behaviour.md, "Error strings worth knowing").
    """
    if target.webhook_url:
        return target.webhook_url
    public = settings.get("publicUrl")
    if not public:
        raise ProviderError(missing)
    return with_query(str(public), callId=target.call_id)

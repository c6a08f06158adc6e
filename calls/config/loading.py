"""From a file or object to a `VoiceCallConfig`, and the process-wide instance.

Reads JSON/JSON5, takes the plugin entry out of a whole OpenClaw document, merges the tts
block over messages.tts, fills defaults and missing secrets from the environment, then
validates (docs/plugin-behaviour.md, "Config shape and defaults"; docs/design.md,
"4. Configuration").
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import json5
from django.conf import settings

from calls.config.legacy import migrate, pop_tts_provider_blocks
from calls.config.schema import (
    CARRIER_KEYS,
    PLUGIN_PATH,
    SKIP_SIGNATURE_WARNING,
    ConfigError,
    block_at,
    validate,
)
from calls.config.sections import VoiceCallConfig, document_defaults, realtime_stream_path
from calls.config.unsupported import unsupported_errors

_FORBIDDEN_KEYS = frozenset({"__proto__", "prototype", "constructor"})
_DEFAULTS = document_defaults()


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
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


def _merge_tts(data: dict[str, Any], base: Any, warnings: list[str]) -> list[str]:
    """The plugin tts deep-merges over messages.tts; old tts.<id> blocks move."""
    override = data.get("tts") or {}
    if not isinstance(override, Mapping) or not isinstance(base, Mapping):
        data["tts"] = {}
        bad = "messages" if isinstance(override, Mapping) else PLUGIN_PATH
        return [f"{bad}.tts must be an object"]
    tts = data["tts"] = deep_merge(base, override)
    providers = tts.setdefault("providers", {})
    if isinstance(providers, dict):
        for name, block in pop_tts_provider_blocks(tts, warnings):
            providers[name] = deep_merge(block, block_at(providers, name))
    return []


def _fill_defaults(data: dict[str, Any], defaults: Mapping[str, Any]) -> None:
    for key, default in defaults.items():
        if data.get(key) is None:
            data[key] = copy.deepcopy(default)
        elif isinstance(default, dict) and isinstance(data[key], dict):
            _fill_defaults(data[key], default)


def _env_fill(block: dict[str, Any], key: str, env: Mapping[str, str], var: str) -> None:
    if block.get(key) in (None, "") and env.get(var):
        block[key] = env[var]


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> None:
    """Env fills missing secrets only, and only for the selected carrier's block."""
    provider = str(data.get("provider") or "")
    carrier = CARRIER_KEYS.get(provider)
    if carrier is not None:
        for key, var in carrier.credentials:
            _env_fill(block_at(data, provider), key, env, var)
        if carrier.from_number_env:
            _env_fill(data, "fromNumber", env, carrier.from_number_env)
    _env_fill(block_at(data, "tunnel"), "ngrokAuthToken", env, "NGROK_AUTHTOKEN")
    _env_fill(block_at(data, "tunnel"), "ngrokDomain", env, "NGROK_DOMAIN")
    if block_at(data, "streaming").get("provider") == "openai":
        providers = block_at(data, "streaming", "providers")
        providers.setdefault("openai", {})
        _env_fill(block_at(providers, "openai"), "apiKey", env, "OPENAI_API_KEY")
    _env_fill(block_at(data, "tts", "providers", "openai"), "apiKey", env, "OPENAI_API_KEY")
    if block_at(data, "realtime").get("enabled") is True:
        providers = block_at(data, "realtime", "providers")
        providers.setdefault("openai", {})
        _env_fill(block_at(providers, "openai"), "apiKey", env, "OPENAI_API_KEY")
    _env_fill(block_at(data, "tts", "providers", "elevenlabs"), "apiKey", env, "ELEVENLABS_API_KEY")


def _document_entry(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    node, path = raw, ""
    for key in ("plugins", "entries", "voice-call"):
        node, path = node.get(key) or {}, f"{path}.{key}".lstrip(".")
        if not isinstance(node, Mapping):
            raise ConfigError([f"{path} must be an object"])
    return node


def parse_config(
    raw: Mapping[str, Any], env: Mapping[str, str] | None = None, *, source: str | None = None
) -> VoiceCallConfig:
    """Normalize and validate a plugin config object or a whole OpenClaw document."""
    config: Any = raw
    base_tts: Any = {}
    if "plugins" in raw:  # a whole OpenClaw document
        entry = _document_entry(raw)
        config = entry.get("config") or {}
        if isinstance(config, Mapping) and entry.get("enabled") is not None:
            config = {**config, "enabled": entry["enabled"]}
        base_tts = block_at(raw, "messages").get("tts") or {}
    if not isinstance(config, Mapping):
        raise ConfigError([f"{PLUGIN_PATH} must be an object"])
    data = copy.deepcopy(dict(config))
    warnings: list[str] = []
    migrate(data, warnings)
    # Judged on what the user wrote: before defaults fill in and tts merges.
    refused = unsupported_errors(data)
    errors = _merge_tts(data, base_tts, warnings)
    # A missing `enabled` fills in as true: the plugin-entry quirk.
    _fill_defaults(data, _DEFAULTS)
    if data["enabled"] is True and data.get("provider") is None:
        data["provider"] = "mock"
    realtime, serve_path = block_at(data, "realtime"), block_at(data, "serve").get("path")
    if (
        realtime.get("streamPath") is None
        and isinstance(serve_path, str)
        and serve_path.startswith("/")
    ):
        realtime["streamPath"] = realtime_stream_path(serve_path)
    _apply_env(data, os.environ if env is None else env)
    errors += validate(data) + refused
    if errors:
        raise ConfigError(errors)
    if data["skipSignatureVerification"]:
        warnings.append(SKIP_SIGNATURE_WARNING)
    return VoiceCallConfig(data=data, warnings=tuple(warnings), source=source)


def load_config(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
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
    if "plugins" in raw:
        return parse_config(raw, env, source=name)
    # A bare plugin config: its problems are named by the keys as the file spells them,
    # not by where they would sit in a whole OpenClaw document.
    try:
        cfg = parse_config(raw, env, source=name)
    except ConfigError as exc:
        raise ConfigError([_bare_path(error) for error in exc.errors]) from None
    return dataclasses.replace(cfg, warnings=tuple(_bare_path(w) for w in cfg.warnings))


def _bare_path(sentence: str) -> str:
    return sentence.replace(f"{PLUGIN_PATH}.", "")


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

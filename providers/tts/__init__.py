"""Streaming telephony TTS: the provider chain the merged `tts` config selects.

`tts.provider` (or, unset, the first of openai/elevenlabs with an apiKey) is tried first,
then each id of `tts.fallbacks` (docs/plugin-behaviour.md, "TTS config and voice lookup"
and "TTS failover").
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx

from providers.common import preferred_voice
from providers.errors import ProviderNotConfigured
from providers.tts.base import DEFAULT_TIMEOUT_MS, TtsProvider, TtsSetup
from providers.tts.elevenlabs import ElevenLabsTts
from providers.tts.failover import FailoverTts, TtsFailed
from providers.tts.openai import OpenAiTts

__all__ = ["FailoverTts", "TtsFailed", "TtsProvider", "build_tts", "tts_probes"]

logger = logging.getLogger(__name__)

_BUILDERS = {"openai": OpenAiTts.from_settings, "elevenlabs": ElevenLabsTts.from_settings}
# Microsoft/Edge speech has no telephony output: skipped in the chain, as in the plugin
# (docs/plugin-behaviour.md, "TTS config and voice lookup").
_NO_TELEPHONY = ("microsoft", "edge")


def build_tts(tts: Mapping[str, Any], *, http: httpx.AsyncClient | None = None) -> FailoverTts:
    """The TTS chain of the merged `tts` config (plugin tts over messages.tts).

    Providers that cannot be used (no telephony output, unknown, not configured) are
    skipped with a warning; when none is left, ProviderNotConfigured names the key path.
    `http` is shared by every provider of the chain.
    """
    providers = tts.get("providers")
    providers = providers if isinstance(providers, Mapping) else {}
    candidates, primary_reason = _candidates(tts, providers)
    chain: list[TtsProvider] = []
    skipped: list[str] = [primary_reason] if primary_reason else []
    seen: set[str] = set()
    for path, name in candidates:
        if name in seen:
            continue  # a repeated id is tried once
        seen.add(name)
        try:
            chain.append(_build_one(tts, providers, name, path, http))
        except ProviderNotConfigured as exc:
            skipped.append(str(exc))
    if not chain:
        has_fallbacks = any(path != "tts.provider" for path, _ in candidates)
        raise ProviderNotConfigured(_nothing_usable(skipped, has_fallbacks=has_fallbacks))
    for reason in skipped:
        logger.warning("Telephony TTS provider skipped: %s", reason)
    return FailoverTts(chain)


def tts_probes(tts: Mapping[str, Any]) -> list[tuple[str, httpx.Request]]:
    """(provider id, probe request) for each provider of the chain, in order; raises as
    `build_tts` does when none is usable."""
    return [(provider.name, provider.probe_request()) for provider in build_tts(tts).providers]


def _candidates(
    tts: Mapping[str, Any], providers: Mapping[str, Any]
) -> tuple[list[tuple[str, str]], str | None]:
    """[(key path, provider id)] in the order to try them, and why there is no primary."""
    candidates: list[tuple[str, str]] = []
    primary_reason = None
    name = _provider_name(tts, providers)
    if name:
        candidates.append(("tts.provider", name))
    else:
        primary_reason = (
            "tts.provider is not set and neither tts.providers.openai.apiKey nor "
            "tts.providers.elevenlabs.apiKey is configured"
        )
    fallbacks = tts.get("fallbacks")
    if fallbacks is None:
        fallbacks = []
    if not isinstance(fallbacks, list | tuple):
        raise ProviderNotConfigured("tts.fallbacks must be a list of provider ids")
    for index, item in enumerate(fallbacks):
        path = f"tts.fallbacks[{index}]"
        if not isinstance(item, str):
            raise ProviderNotConfigured(f"{path} must be a string")
        candidates.append((path, item.strip().lower()))
    return candidates, primary_reason


def _build_one(
    tts: Mapping[str, Any],
    providers: Mapping[str, Any],
    name: str,
    path: str,
    http: httpx.AsyncClient | None,
) -> TtsProvider:
    if name in _NO_TELEPHONY:
        raise ProviderNotConfigured(f'{path} "{name}" has no telephony output')
    builder = _BUILDERS.get(name)
    if builder is None:
        raise ProviderNotConfigured(
            f'{path} "{name}" is not supported for calls; use "openai" or "elevenlabs"'
        )
    block = providers.get(name)
    setup = TtsSetup(
        voice=preferred_voice({**tts, "provider": name}),
        timeout_ms=int(tts.get("timeoutMs") or DEFAULT_TIMEOUT_MS),
        http=http,
    )
    try:
        return builder(block if isinstance(block, Mapping) else {}, setup)
    except ProviderNotConfigured as exc:
        # Every reason names its key path, so a start-up refusal can point at it.
        reason = str(exc) if str(exc).startswith("tts.") else f"tts.providers.{name}: {exc}"
        if path != "tts.provider":
            reason = f'{path} "{name}" is not configured: {reason}'
        raise ProviderNotConfigured(reason) from None


def _nothing_usable(reasons: list[str], *, has_fallbacks: bool) -> str:
    """The primary's reason; with fallbacks, also that none of them is usable, and why."""
    primary, rest = reasons[0], reasons[1:]
    if not has_fallbacks:
        return primary
    message = f"{primary} and tts.fallbacks has no usable provider"
    return f"{message} ({'; '.join(rest)})" if rest else message


def _provider_name(tts: Mapping[str, Any], providers: Mapping[str, Any]) -> str | None:
    """tts.provider, else the first of openai/elevenlabs that has an apiKey."""
    name = str(tts.get("provider") or "").strip().lower()
    if name:
        return name
    for candidate in _BUILDERS:
        block = providers.get(candidate)
        if isinstance(block, Mapping) and str(block.get("apiKey") or "").strip():
            return candidate
    return None

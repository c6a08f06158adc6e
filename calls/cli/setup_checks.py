"""`voicecall setup` readiness checks and `voicecall smoke`.

docs/plugin-behaviour.md, "Command line".

The checks read the plugin config as a plain camelCase dict: the validated config when it
loads, else the raw file, so one invalid key still leaves the other checks meaningful.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import json5
from django.conf import settings

from calls.cli.client import connect
from calls.config import ConfigError, VoiceCallConfig, get_config
from calls.exceptions import ServiceDisabled
from calls.services.webhooks import carrier_readiness
from calls.serving.exposure import is_local_host
from providers.errors import ProviderError
from providers.realtime import realtime_name, realtime_probe
from providers.registry import provider_names
from providers.stt import stt_name, stt_probe
from providers.tts import tts_probes

SMOKE_MESSAGE = "OpenClaw voice call smoke test."
SKIPPED = "live-call: skipped (pass --to and --yes to place one)"
_PROVIDERS = tuple(provider_names())


@dataclass(frozen=True, slots=True)
class Check:
    id: str
    ok: bool
    message: str


# Tests put an httpx.Client on a MockTransport here; None = a client of our own.
PROBE_CLIENT: httpx.Client | None = None
PROBE_TIMEOUT_S = 10.0


def setup_report(*, probe: bool = False) -> dict[str, Any]:
    """{ok, checks:[{id, ok, message}]} for the current config. With `probe`, each speech
    vendor's key is also tried against the vendor (one free request each)."""
    data, errors = _load()
    checks = [
        _plugin_enabled(data),
        _provider(data),
        _provider_config(errors),
        _webhook_exposure(data),
        _mode(data),
    ]
    if not errors:
        checks += [Check(*row) for row in carrier_readiness()]
        checks += _speech_checks(get_config(), probe=probe)
    return {"ok": all(c.ok for c in checks), "checks": [asdict(c) for c in checks]}


def _speech_checks(cfg: VoiceCallConfig, *, probe: bool) -> list[Check]:
    """TTS, STT and realtime readiness for the mode the config selects: a key for each
    vendor that will be asked, and with `probe` the vendor's answer to it."""
    streaming, realtime = cfg.streaming.enabled, cfg.realtime.enabled
    if not streaming and not realtime:
        off = "the carrier speaks and recognises speech (streaming off)"
        return [Check("tts", True, off), Check("stt", True, off), Check("realtime", True, "off")]
    checks: list[Check] = []
    if realtime:
        spoken = "the realtime model speaks and listens (realtime.enabled)"
        checks += [Check("tts", True, spoken), Check("stt", True, spoken)]
        block = cfg.section("realtime")
        model = _vendor_check(
            "realtime", lambda: [(realtime_name(block), realtime_probe(block))], probe
        )
        return [*checks, model]
    checks.append(_vendor_check("tts", lambda: tts_probes(cfg.tts), probe))
    streaming_block = cfg.section("streaming")
    checks.append(
        _vendor_check(
            "stt", lambda: [(stt_name(streaming_block), stt_probe(streaming_block))], probe
        )
    )
    checks.append(Check("realtime", True, "off"))
    return checks


def _vendor_check(
    check_id: str, requests: Callable[[], list[tuple[str, httpx.Request]]], probe: bool
) -> Check:
    try:
        planned = requests()
    except ProviderError as exc:  # a missing key, an unusable TTS chain
        return Check(check_id, False, str(exc))
    names = ", ".join(name for name, _ in planned)
    if not probe:
        return Check(check_id, True, f"{names}: key set (--probe to try it)")
    failures = [f for name, request in planned if (f := _tried(name, request)) is not None]
    if failures:
        return Check(check_id, False, "; ".join(failures))
    return Check(check_id, True, f"{names}: key accepted")


def _tried(name: str, request: httpx.Request) -> str | None:
    """None when the vendor accepted the key; else why not, in a few words (never the key)."""
    client = PROBE_CLIENT or httpx.Client(timeout=PROBE_TIMEOUT_S)
    try:
        response = client.send(request)
    except httpx.HTTPError as exc:
        return f"{name} unreachable at {request.url.host}: {type(exc).__name__}"
    finally:
        if client is not PROBE_CLIENT:
            client.close()
    if response.status_code in (401, 403):
        return f"{name} refused the key (HTTP {response.status_code})"
    if response.is_error:
        return f"{name} answered HTTP {response.status_code}"
    return None


def render_text(report: dict[str, Any]) -> str:
    lines = [f"Voice Call setup: {'OK' if report['ok'] else 'needs attention'}"]
    lines += [f"{'OK' if c['ok'] else 'FAIL'} {c['id']}: {c['message']}" for c in report["checks"]]
    return "\n".join(lines)


def _load() -> tuple[dict[str, Any], list[str]]:
    try:
        return get_config().data, []
    except ConfigError as exc:
        return _raw_config(), exc.errors


def _raw_config() -> dict[str, Any]:
    """The plugin config object from VOICECALL_CONFIG, unvalidated; {} when unreadable."""
    path = getattr(settings, "VOICECALL_CONFIG", "") or ""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json5.loads(handle.read())
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict) or "plugins" not in raw:
        return raw if isinstance(raw, dict) else {}
    entry = _section(_section(_section(raw, "plugins"), "entries"), "voice-call")
    config = dict(_section(entry, "config"))
    if entry.get("enabled") is not None:
        config["enabled"] = entry["enabled"]
    return config


def _section(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _provider_name(data: dict[str, Any]) -> str | None:
    provider = data.get("provider")
    if provider is None and data.get("enabled") is not False:
        return "mock"  # the plugin's default when enabled without a provider
    return provider if isinstance(provider, str) else None


def _plugin_enabled(data: dict[str, Any]) -> Check:
    if data.get("enabled") is False:
        # The service runs but places no calls and answers webhooks 503 (enabled: false).
        return Check("plugin-enabled", False, f"{ServiceDisabled.MESSAGE} (enabled: false)")
    return Check("plugin-enabled", True, "Voice Call is enabled")


def _provider(data: dict[str, Any]) -> Check:
    provider = _provider_name(data)
    if provider is None:
        return Check("provider", False, "No provider configured")
    if provider not in _PROVIDERS:
        return Check("provider", False, f'Unknown provider "{provider}"')
    return Check("provider", True, f"Provider: {provider}")


def _provider_config(errors: list[str]) -> Check:
    if errors:
        return Check("provider-config", False, "; ".join(errors))
    return Check("provider-config", True, "Config is valid")


def _webhook_exposure(data: dict[str, Any]) -> Check:
    provider = _provider_name(data)
    if provider == "mock":
        return Check("webhook-exposure", True, "The mock provider needs no public webhook")
    url = data.get("publicUrl")
    if isinstance(url, str) and url:
        if is_local_host(urlsplit(url).hostname or ""):
            return Check(
                "webhook-exposure",
                False,
                f"publicUrl {url} is a loopback or private address that {provider} cannot reach",
            )
        return Check("webhook-exposure", True, f"publicUrl {url}")
    tunnel = _tunnel(data)
    if tunnel:
        return Check("webhook-exposure", True, f"Exposed through {tunnel}")
    return Check(
        "webhook-exposure",
        False,
        f"No publicUrl and no tunnel, so {provider} cannot reach the webhook",
    )


def _tunnel(data: dict[str, Any]) -> str | None:
    tunnel = _section(data, "tunnel").get("provider")
    if tunnel not in (None, "none"):
        return str(tunnel)
    mode = _section(data, "tailscale").get("mode")
    return f"tailscale {mode}" if mode in ("serve", "funnel") else None


def _mode(data: dict[str, Any]) -> Check:
    streaming = _section(data, "streaming").get("enabled") is True
    realtime = _section(data, "realtime").get("enabled") is True
    if streaming and realtime:
        return Check("mode", False, "streaming and realtime cannot both be enabled")
    if realtime:
        return Check("mode", True, "Realtime voice")
    return Check(
        "mode", True, "Media-stream transcription" if streaming else "Carrier speech recognition"
    )


def smoke_run(*, to: str | None, message: str, mode: str, confirmed: bool) -> dict[str, Any]:
    """Setup, then (with --to and --yes) one real call through voicecall.start."""
    setup = setup_report()
    if not setup["ok"]:
        return {"ok": False, "setup": setup, "liveCall": False}
    if not to:
        return {"ok": True, "setup": setup, "liveCall": False, "skipped": SKIPPED}
    if not confirmed:
        return {
            "ok": True,
            "setup": setup,
            "liveCall": False,
            "wouldCall": {"to": to, "message": message, "mode": mode},
        }
    with connect() as backend:
        result = backend.call("voicecall.start", {"to": to, "message": message, "mode": mode})
    return {"ok": True, "setup": setup, "liveCall": True, "callId": result.get("callId")}

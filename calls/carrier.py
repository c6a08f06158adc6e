"""The process's carrier adapter and webhook URL, built from the config on first use."""

from __future__ import annotations

import threading
from typing import Any

from calls.config import VoiceCallConfig, get_config
from calls.exceptions import CallError
from providers.base import TelephonyProvider
from providers.errors import ProviderError
from providers.registry import build_provider

_lock = threading.Lock()
_provider: TelephonyProvider | None = None
# Where this process actually serves, when it differs from serve.bind/serve.port.
_local_address: tuple[str, int] | None = None
# (origin, path) of the tunnel `voicecall serve` started; path None means serve.path.
_public_base: tuple[str, str | None] | None = None


def provider_settings(cfg: VoiceCallConfig) -> dict[str, Any]:
    """The adapter's slice of the config: its own block plus the shared keys it needs.

    Blocks go whole, in the plugin's camelCase: providers/ owns those keys and must not
    import calls/, so the typed sections stop at this boundary.
    """
    return {
        **cfg.section(cfg.provider or ""),
        "publicUrl": public_url(cfg),
        "servePath": cfg.serve_path,
        "skipSignatureVerification": cfg.skip_signature_verification,
        "webhookSecurity": cfg.section("webhookSecurity"),
        "tunnel": cfg.section("tunnel"),
        "serveBind": cfg.serve_bind,
        "servePort": cfg.serve_port,
        "streaming": cfg.section("streaming"),
        "tts": cfg.tts,
        "ringTimeoutMs": cfg.ring_timeout_ms,
    }


def get_provider() -> TelephonyProvider:
    """The configured adapter.

    Raises CallError('Provider not initialized') when it can't be built.
    """
    global _provider
    with _lock:
        if _provider is None:
            cfg = get_config()
            try:
                _provider = build_provider(cfg.provider or "", settings=provider_settings(cfg))
            except ProviderError as exc:
                raise CallError("Provider not initialized") from exc
        return _provider


def set_provider(provider: TelephonyProvider | None) -> None:
    """Replace the adapter (tests, config reload)."""
    global _provider
    with _lock:
        if _provider is not None and _provider is not provider:
            _provider.close()
        _provider = provider


def set_local_address(*, host: str, port: int) -> None:
    global _local_address
    _local_address = (host, port)


def set_public_base(url: str | None, *, path: str | None = None) -> None:
    """Record the tunnel's public origin (None clears it): the webhook becomes <url><path>.

    Adapters read publicUrl when they are built, so a cached one is dropped and rebuilt.
    """
    global _public_base
    _public_base = (url.rstrip("/"), path) if url else None
    set_provider(None)


def public_url(cfg: VoiceCallConfig | None = None) -> str | None:
    """publicUrl, else the tunnel's public webhook URL, else None.

    docs/plugin-behaviour.md, "Start-up and the public URL".
    """
    cfg = cfg or get_config()
    if cfg.public_url:
        return cfg.public_url
    if _public_base:
        origin, path = _public_base
        return origin + (path or cfg.serve_path)
    return None


def webhook_url(cfg: VoiceCallConfig | None = None) -> str:
    """The public webhook URL when there is one, else the local server URL."""
    cfg = cfg or get_config()
    if public := public_url(cfg):
        return public
    host, port = _local_address or (cfg.serve_bind, cfg.serve_port)
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{cfg.serve_path}"


def call_webhook_url(call_id: object, cfg: VoiceCallConfig | None = None) -> str:
    """The webhook URL handed to the carrier for one call: it carries our callId."""
    base = webhook_url(cfg)
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}callId={call_id}"

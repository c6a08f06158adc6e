"""What every server process checks and does once before it serves.

Both `voicecall serve` (calls/serving/server.py) and the ASGI application
(voicecall_project/asgi.py, for any other ASGI server) run these, so neither imports the
other.
"""

from __future__ import annotations

import logging

from django.db import close_old_connections

from calls.config import PLUGIN_PATH, ConfigError, VoiceCallConfig, get_config
from calls.services.inbound import allowlist_sync_config
from calls.services.timers import calls_restore
from calls.serving.exposure import local_only_refusal, tunnel_mode
from providers.errors import ProviderError
from providers.tts import build_tts

logger = logging.getLogger(__name__)


def startup() -> None:
    """Work every server does once before serving: config rows, restart restore."""
    cfg = get_config()
    for warning in cfg.warnings:
        logger.warning("%s", warning)
    allowlist_sync_config()
    calls_restore()
    close_old_connections()


def preflight(host: str | None = None, *, serving: bool = False) -> None:
    """Refuse to serve with a bad config (raises ConfigError), a media-stream config whose
    TTS cannot speak (SystemExit), or an unsafe skip mode.

    `serving` (only from run()): also refuse a real carrier whose webhook would be local.
    Not at ASGI import, where tests run carriers without a public URL.
    """
    cfg = get_config()
    _check_stream_tts(cfg)
    _check_skip_signature(host or cfg.serve_bind)
    if serving and (refusal := local_only_refusal(cfg)):
        raise SystemExit(refusal)


def _check_stream_tts(cfg: VoiceCallConfig) -> None:
    """Media streams speak through the TTS chain: build it once now, so a bad TTS config
    stops the server instead of failing every stream (docs/plugin-behaviour.md,
    "TTS failover"). Realtime voice speaks through its model and needs no TTS.
    """
    if not cfg.streaming.enabled or cfg.realtime.enabled:
        return
    try:
        build_tts(cfg.tts)
    except ProviderError as exc:
        # The config's own error style: the full key path, after "Invalid voice-call config".
        raise SystemExit(str(ConfigError([f"{PLUGIN_PATH}.{exc}"]))) from exc


def _check_skip_signature(host: str) -> None:
    """skipSignatureVerification only on loopback without public exposure.

    docs/security.md, "Webhooks", step 9.
    """
    cfg = get_config()
    if not cfg.skip_signature_verification:
        return
    exposed = bool(cfg.public_url) or tunnel_mode(cfg) is not None
    if host not in ("127.0.0.1", "::1", "localhost") or exposed:
        raise SystemExit(
            "skipSignatureVerification is only allowed when serving on loopback "
            "without publicUrl or a tunnel"
        )
    logger.warning(
        "SECURITY WARNING: skipSignatureVerification=true disables webhook "
        "signature verification (development only)"
    )

"""`voicecall serve`: one process running HTTP, websockets and the timer sweep (embedded default).

In production the sweep belongs to Celery beat; set VOICECALL_SWEEP=off on servers then.
"""

from __future__ import annotations

import logging
import os
import threading

from django.conf import settings
from django.db import close_old_connections

from calls.config import get_config
from calls.exposure import (
    exposure_start,
    exposure_stop,
    local_only_refusal,
    tunnel_mode,
)
from calls.runtime import set_local_address, webhook_url

logger = logging.getLogger(__name__)

# Media-stream frames over 64 KiB are refused before parsing (docs/plugin-behaviour.md,
# "Media streams: limits and close codes").
MAX_WS_FRAME_BYTES = 64 * 1024


def startup() -> None:
    """Work every server does once before serving: config rows, restart restore."""
    from calls.services import allowlist_sync_config, calls_restore

    cfg = get_config()
    for warning in cfg.warnings:
        logger.warning("%s", warning)
    allowlist_sync_config()
    calls_restore()
    close_old_connections()


class Sweeper(threading.Thread):
    """Runs timers_sweep every interval until stopped; errors are logged, never fatal."""

    def __init__(self, interval: float) -> None:
        super().__init__(name="voicecall-sweep", daemon=True)
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        from calls.services import timers_sweep

        while not self.stopped.wait(self.interval):
            try:
                timers_sweep()
            except Exception:  # the loop must outlive one bad sweep; the next one retries
                logger.exception("timer sweep failed")
            finally:
                close_old_connections()


def run(*, host: str, port: int) -> None:
    """Serve the ASGI app on host:port (blocking) with uvicorn.

    uvicorn rather than Daphne (docs/performance.md, "Why uvicorn"): it streams request
    bodies to the application, which the webhook gate needs for 408/413 before the body is
    read, and it measured 1.8x Daphne's media-stream capacity.
    """
    import uvicorn

    from voicecall_project.asgi import application

    set_local_address(host=host, port=port)
    preflight(host, serving=True)
    # Started before anything builds the adapter, so it sees the tunnel's public URL.
    tunnel = exposure_start(get_config(), port=port)
    sweeper = None
    try:
        startup()
        if os.environ.get("VOICECALL_SWEEP", "on") != "off":
            sweeper = Sweeper(settings.VOICECALL_SWEEP_INTERVAL_SECONDS)
            sweeper.start()
        logger.info("voicecall listening on http://%s:%s (webhook %s)", host, port, webhook_url())
        config = uvicorn.Config(
            application,
            host=host,
            port=port,
            lifespan="off",
            log_config=None,
            access_log=False,
            ws_max_size=MAX_WS_FRAME_BYTES,
            timeout_keep_alive=5,
        )
        uvicorn.Server(config).run()
    finally:
        if sweeper:
            sweeper.stopped.set()
        exposure_stop(tunnel)


def preflight(host: str | None = None, *, serving: bool = False) -> None:
    """Refuse to serve with a bad config (raises ConfigError) or an unsafe skip mode.

    `serving` (only from run()): also refuse a real carrier whose webhook would be local.
    Not at ASGI import, where tests run carriers without a public URL.
    """
    cfg = get_config()
    _check_skip_signature(host or cfg.serve_bind)
    if serving and (refusal := local_only_refusal(cfg)):
        raise SystemExit(refusal)


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

"""`voicecall serve`: one process running HTTP, websockets and the timer sweep (embedded default).

In production the sweep belongs to Celery beat; set VOICECALL_SWEEP=off on servers then.
"""

from __future__ import annotations

import logging
import os
import threading

import uvicorn
from django.conf import settings
from django.db import close_old_connections

from calls.carrier import set_local_address, webhook_url
from calls.config import get_config
from calls.services.timers import timers_sweep
from calls.serving.exposure import (
    exposure_start,
    exposure_stop,
)
from calls.serving.startup import preflight, startup
from calls.streams.limits import MAX_FRAME_BYTES

logger = logging.getLogger(__name__)


class Sweeper(threading.Thread):
    """Runs timers_sweep every interval until stopped; errors are logged, never fatal."""

    def __init__(self, interval: float) -> None:
        super().__init__(name="voicecall-sweep", daemon=True)
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
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
    # Importing the ASGI module builds the application (and runs preflight): only here,
    # when this process is about to serve it.
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
            # The consumer closes frames over this with 1009 itself (any server); uvicorn
            # refuses them before buffering (docs/plugin-behaviour.md, "Media streams:
            # limits and close codes").
            ws_max_size=MAX_FRAME_BYTES,
            timeout_keep_alive=5,
        )
        uvicorn.Server(config).run()
    finally:
        if sweeper:
            sweeper.stopped.set()
        exposure_stop(tunnel)

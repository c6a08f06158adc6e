"""`voicecall serve`: one process running HTTP, websockets and the timer sweep (embedded default).

In production the sweep belongs to Celery beat; set VOICECALL_SWEEP=off on servers then.
SIGTERM drains the process before it shuts down (`DrainingServer`; docs/architecture.md,
"Graceful drain").
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from django.conf import settings
from django.db import close_old_connections

from calls.carrier import set_local_address, webhook_url
from calls.config import get_config
from calls.drain import DRAIN, Drain
from calls.services.timers import timers_sweep
from calls.serving.exposure import (
    exposure_start,
    exposure_stop,
)
from calls.serving.startup import preflight, startup
from calls.serving.static_files import static_files_collect
from calls.streams import consumer
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


class DrainingServer(uvicorn.Server):
    """uvicorn, with SIGTERM as a drain instead of an immediate shutdown.

    - First SIGTERM: `drain` begins (readiness 503, no new streams or new calls) and the
      server keeps serving; once `live_streams()` is 0 or `drain_seconds` have passed,
      uvicorn's own graceful shutdown follows.
    - A second SIGTERM, or SIGINT during a drain: exit at once (uvicorn's force exit).
    - SIGINT otherwise: uvicorn's own handling (graceful; a second one forces).
    """

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        drain: Drain,
        drain_seconds: float,
        live_streams: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(config)
        self.drain = drain
        self.drain_seconds = drain_seconds
        self.live_streams = live_streams
        self.clock = clock
        self._announced = self._forced = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Runs as a signal handler: set flags only; on_tick logs and decides.
        if sig == signal.SIGTERM and not self.should_exit:
            if self.drain.begin(seconds=self.drain_seconds, now=self.clock()):
                return
        if sig == signal.SIGTERM or self.drain.draining:
            self.should_exit = self.force_exit = True
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self.drain.draining:
            live = self.live_streams()
            if not self._announced:
                self._announced = True
                logger.warning(
                    "SIGTERM: draining; %d live stream(s) may run up to %ss "
                    "(SIGTERM again to exit at once)",
                    live,
                    self.drain_seconds,
                )
            if self.force_exit:
                if not self._forced:
                    self._forced = True
                    logger.warning("exiting at once; %d live stream(s) cut", live)
            elif not self.should_exit and self.drain.over(live_streams=live, now=self.clock()):
                logger.warning("drain over (%d live stream(s) left); shutting down", live)
                self.should_exit = True
        return await super().on_tick(counter)


def run(*, host: str, port: int) -> None:
    """Serve the ASGI app on host:port (blocking) with uvicorn.

    uvicorn rather than Daphne (docs/performance.md, "Why uvicorn"): it streams request
    bodies to the application, which the webhook gate needs for 408/413 before the body is
    read, and it measured 1.8x Daphne's media-stream capacity.
    """
    # Collected first: building the app (below) indexes STATIC_ROOT.
    static_files_collect()
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
        heap_freeze()
        DrainingServer(
            uvicorn_config(application, host, port),
            drain=DRAIN,
            drain_seconds=get_config().serve.drain_seconds,
            live_streams=lambda: consumer.ADMISSION.connections.total,
        ).run()
    finally:
        if sweeper:
            sweeper.stopped.set()
        exposure_stop(tunnel)
        _release_stream_leases()


def uvicorn_config(application: Any, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        application,
        host=host,
        port=port,
        lifespan="off",
        # None: uvicorn leaves logging as settings.LOGGING set it, so its error and access
        # loggers reach the root handler: one format (LOG_FORMAT), numbers masked.
        log_config=None,
        access_log=settings.LOG_ACCESS,
        # The consumer closes frames over this with 1009 itself (any server); uvicorn
        # refuses them before buffering (docs/plugin-behaviour.md, "Media streams:
        # limits and close codes").
        ws_max_size=MAX_FRAME_BYTES,
        timeout_keep_alive=5,
        # The peer address is the socket's. uvicorn would otherwise take X-Forwarded-For
        # from any request that comes from 127.0.0.1 — every request, behind a local tunnel
        # — so a caller could pick the address the per-peer limits and trustedProxyIPs see;
        # forwarding headers are trusted only by webhookSecurity (docs/security.md).
        proxy_headers=False,
    )


def heap_freeze() -> int:
    """Put what start-up left alive out of the collector's sight; how many objects that was.

    A full collection walks every tracked object and holds the event loop meanwhile, and
    after start-up most of them are modules, classes and the SDKs' models that live as long
    as the process (about 250,000). With them in view, each full collection of a server
    holding 200 media streams paused every stream for 100–270 ms, every frame that was due
    meanwhile late by as much (docs/performance.md, "Concurrent streams"). Collected once
    first, so that no garbage is frozen with them; an object frozen is never collected.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def _release_stream_leases() -> None:
    """Whatever ended the server, the leases of its sockets count no more."""
    try:
        released = consumer.ADMISSION.connections.release_all()
    except Exception:  # the database is away: the leases expire unrenewed
        logger.exception("stream leases not released at exit; they expire on their own")
        return
    if released:
        logger.info("released %d stream lease(s) at exit", released)

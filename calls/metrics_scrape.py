"""One `/metrics` scrape: every process's samples from the multiprocess directory, plus the
gauges the database answers (docs/operations.md, "Metrics").

Active calls and open media streams are read from the database at scrape time, not kept
as `livesum` gauges that each process moves up and down: a call is placed on one process
and ended by a webhook or a timer on another, and a process killed with `kill -9` never
takes back what it added. The database holds the truth for the whole deployment (the same
rows `maxConcurrentCalls` and `streaming.maxConnections` are enforced with), so every
process's scrape says the same.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from calls import metrics as _definitions  # noqa: F401  (defines every metric before a scrape)
from calls.exceptions import MetricsUnavailable
from calls.selectors import calls_active_by_provider
from calls.services.stream_leases import stream_leases_live
from providers.registry import provider_names

logger = logging.getLogger(__name__)


class DatabaseGauges(Collector):
    """voicecall_active_calls{provider} and voicecall_streams_active, counted now."""

    def collect(self) -> Iterator[Metric]:
        try:
            live = calls_active_by_provider()
            streams = stream_leases_live()
        except DatabaseError as exc:
            # The counters still scrape; the gauges are missing rather than wrong.
            logger.warning("metrics: database gauges skipped: %s", exc)
            return
        calls = GaugeMetricFamily(
            "voicecall_active_calls", "Calls not yet ended, per carrier.", labels=["provider"]
        )
        # Every carrier, at 0 when idle: a series that comes and goes reads as missing data.
        for provider in sorted(set(provider_names()) | set(live)):
            calls.add_metric([provider], live.get(provider, 0))
        yield calls
        yield GaugeMetricFamily(
            "voicecall_streams_active",
            "Open media-stream sockets (counted against streaming.maxConnections).",
            value=streams,
        )


def metrics_render(*, accept: str | None) -> tuple[bytes, str]:
    """The exposition for a scraper's Accept header: (body, content type).

    prometheus_client chooses the format: the text format 0.0.4 unless the scraper asks for
    OpenMetrics or a newer text format. Raises MetricsUnavailable when the multiprocess
    directory is missing (deleted under a running server, or never creatable).
    """
    path = Path(settings.PROMETHEUS_MULTIPROC_DIR)
    if not path.is_dir():
        raise MetricsUnavailable(
            f"Metrics unavailable: the metrics directory {path} does not exist "
            "(PROMETHEUS_MULTIPROC_DIR; restart the server to recreate it)"
        )
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(path))
    registry.register(DatabaseGauges())
    encode, content_type = choose_encoder(accept or "")
    try:
        return encode(registry), content_type
    except FileNotFoundError as exc:
        # A starting process cleared a dead one's file between the listing and the read.
        raise MetricsUnavailable("Metrics changed during the scrape; try again") from exc

"""Prometheus metrics: every definition, and the small functions the services count with.

prometheus_client runs in multiprocess mode (docs/operations.md, "Metrics"): each process
writes its samples to files in PROMETHEUS_MULTIPROC_DIR (set by voicecall_project/settings.py
before anything imports the library) and a scrape on any process adds them all up, so the
server processes and Celery workers of one host report one set. What lives in the database
(active calls, open streams) is not counted here but read at scrape time
(calls/metrics_scrape.py).

Counting never fails a call: a metrics directory that vanished or filled up costs the
sample and one warning, nothing else.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import transaction

# prometheus_client reads PROMETHEUS_MULTIPROC_DIR once, when it is imported. The settings
# put it in the environment; load them first, whichever process (server, Celery worker,
# command) imports this module before anything else touched them.
_DIRECTORY = Path(settings.PROMETHEUS_MULTIPROC_DIR)

from prometheus_client import Counter, Histogram, multiprocess  # noqa: E402

from providers.audio import FRAME_BYTES, SAMPLE_RATE  # noqa: E402

logger = logging.getLogger(__name__)

# One 20 ms frame per call per 20 ms: the lateness of every 50th frame of an utterance
# (one a second) is observed, which shows a late event loop without a sample per frame.
LATENESS_SAMPLE_EVERY = 50
_SAMPLED = LATENESS_SAMPLE_EVERY - 1
_FRAME_SECONDS = FRAME_BYTES / SAMPLE_RATE  # 160 μ-law bytes at 8 kHz

# turn_records stage names -> the `stage` label.
TURN_STAGES = {
    "endpointingMs": "endpointing",
    "transcriptMs": "transcript",
    "replyMs": "reply",
    "firstAudioMs": "first_audio",
    "totalMs": "total",
    "playedMs": "played",
}


def metrics_dir_prepare(path: Path) -> None:
    """Create the multiprocess directory and clear what dead processes left in it.

    prometheus_client wants the directory wiped before a run starts. Several servers and
    workers start and stop independently here, so a process wipes it only when no process
    that wrote to it is alive (a new run); otherwise it only drops the live-gauge files of
    dead processes (`mark_process_dead`) and keeps their counters, so the deployment's
    totals never go backwards while the others run. Liveness is a pid check: the directory
    belongs to one host (one pid namespace), as mmapped files must.
    """
    path.mkdir(parents=True, exist_ok=True)
    files = list(path.glob("*.db"))
    pids = {pid for pid in map(_pid_of, files) if pid is not None}
    alive = {pid for pid in pids if _alive(pid)}
    if not alive:
        for file in files:
            file.unlink(missing_ok=True)
        return
    for pid in pids - alive:
        multiprocess.mark_process_dead(pid, str(path))


def _pid_of(file: Path) -> int | None:
    # The library names its files <type>[_<mode>]_<pid>.db.
    tail = file.stem.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, alive
    return True


metrics_dir_prepare(_DIRECTORY)

CALLS = Counter(
    "voicecall_calls",
    "Calls that ended, by how they ended.",
    ["provider", "direction", "mode", "end_reason"],
)
WEBHOOKS = Counter(
    "voicecall_webhooks",
    "Carrier webhooks handled, by the HTTP status answered.",
    ["provider", "status"],
)
WEBHOOK_SECONDS = Histogram(
    "voicecall_webhook_seconds",
    "Time to verify, apply and answer one carrier webhook.",
    ["provider"],
)
PROVIDER_ERRORS = Counter(
    "voicecall_provider_errors",
    "Carrier and responder requests that failed, by what was asked.",
    ["provider", "kind"],
)
TURN_SECONDS = Histogram(
    "voicecall_turn_seconds",
    "Stages of each conversation turn (docs/voice-path.md, 'Turns').",
    ["stage"],
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 8, 13, 30, 60),
)
FRAME_LATENESS = Histogram(
    "voicecall_stream_frame_lateness_seconds",
    f"How late a paced 20 ms audio frame went out after its slot (every "
    f"{LATENESS_SAMPLE_EVERY}th frame of an utterance).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 1),
)

_warned = False


@contextmanager
def _recording() -> Iterator[None]:
    global _warned
    try:
        yield
    except OSError as exc:
        if not _warned:
            _warned = True
            logger.warning("metrics sample lost (metrics directory): %s", exc)


def _after_commit(record: Callable[[], None]) -> None:
    """Count what the current transaction did once it is committed: a rolled-back webhook
    is applied again on its redelivery and would be counted twice."""

    def guarded() -> None:
        with _recording():
            record()

    transaction.on_commit(guarded)


def call_ended(*, provider: str, direction: str, mode: str, end_reason: str) -> None:
    """A call reached its terminal state (counted once, by the writer that ended it)."""
    _after_commit(lambda: CALLS.labels(provider, direction, mode, end_reason).inc())


def webhook_handled(*, provider: str, status: int, seconds: float) -> None:
    with _recording():
        WEBHOOKS.labels(provider, str(status)).inc()
        WEBHOOK_SECONDS.labels(provider).observe(seconds)


def webhook_refused(*, provider: str | None, status: int) -> None:
    """A webhook request refused at the gate (method, signature headers, size, the peer's
    in-flight count, a slow body): counted with its status under the configured carrier
    ("none" without one), never timed."""
    with _recording():
        WEBHOOKS.labels(provider or "none", str(status)).inc()


def provider_error(*, provider: str, kind: str) -> None:
    """A request to a carrier (or the responder) failed with a ProviderError.

    Counted where the error is caught, once: `kind` names what was asked (dial, hangup,
    speak, a carrier command's kind …).
    """
    with _recording():
        PROVIDER_ERRORS.labels(provider, kind).inc()


def turn_stages_observed(stages: Mapping[str, int | None], names: tuple[str, ...]) -> None:
    """The turn stages `names` (in ms, from turn_records.turn_stages) that just became known."""
    known = [(TURN_STAGES[name], ms) for name in names if (ms := stages.get(name)) is not None]
    if known:
        _after_commit(lambda: _turn_observe(known))


def _turn_observe(known: list[tuple[str, int]]) -> None:
    for stage, ms in known:
        TURN_SECONDS.labels(stage).observe(ms / 1000)


def frame_lateness_sample(index: int, started_at: float, clock: Callable[[], float]) -> None:
    """Called for every paced frame (`index` from 0 in its utterance, `started_at` its first
    frame's clock reading); observes every LATENESS_SAMPLE_EVERY-th.

    The frames in between cost one modulo of a small int and return: no clock reading, no
    lock, no allocation on the per-frame path.
    """
    if index % LATENESS_SAMPLE_EVERY != _SAMPLED:
        return
    lateness = clock() - (started_at + index * _FRAME_SECONDS)
    with _recording():
        FRAME_LATENESS.observe(max(0.0, lateness))

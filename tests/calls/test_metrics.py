"""calls/metrics.py: the sampled frame lateness, the multiprocess directory's start-up
clean-up, counting that never fails a call, and the Grafana dashboard in docs/."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from calls import metrics
from calls.metrics import LATENESS_SAMPLE_EVERY, frame_lateness_sample, metrics_dir_prepare
from tests.calls.test_media_playback import Line, _playback, _tts, _until
from tests.metrics_samples import sample

LATENESS = "voicecall_stream_frame_lateness_seconds"
DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-voicecall.json"


def test_only_every_nth_frame_is_observed_and_only_it_reads_the_clock() -> None:
    before = (sample(f"{LATENESS}_count"), sample(f"{LATENESS}_sum"))
    reads: list[int] = []
    index = 0

    def clock() -> float:
        reads.append(index)
        return 100.0 + index * 0.02 + 0.004  # every frame 4 ms after its slot

    for index in range(3 * LATENESS_SAMPLE_EVERY):  # the clock reads `index`
        frame_lateness_sample(index, 100.0, clock)

    assert reads == [49, 99, 149]
    assert sample(f"{LATENESS}_count") == before[0] + 3
    assert sample(f"{LATENESS}_sum") - before[1] == pytest.approx(0.012)


async def test_playback_observes_the_lateness_of_every_50th_frame() -> None:
    line = Line()
    sent = line.audio

    async def slow_send(ulaw: bytes) -> None:
        await sent(ulaw)
        line.now += 0.003  # the socket write takes 3 ms of the slot

    line.audio = slow_send  # type: ignore[method-assign]
    playback = _playback(line, _tts(b"\x01" * 160 * 120))
    before = (sample(f"{LATENESS}_count"), sample(f"{LATENESS}_sum"))

    playback.say("two seconds and a bit")
    await _until(lambda: "mark" in line.kinds())
    await playback.close()

    assert sample(f"{LATENESS}_count") == before[0] + 2  # frames 50 and 100 of 120
    assert sample(f"{LATENESS}_sum") - before[1] == pytest.approx(0.006)


def _pid_file(directory: Path, prefix: str, pid: int) -> Path:
    path = directory / f"{prefix}_{pid}.db"
    path.write_bytes(b"")
    return path


def _dead_pid() -> int:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(child.stdout)


def test_a_new_run_wipes_what_dead_processes_left(tmp_path: Path) -> None:
    dead = _dead_pid()
    files = [_pid_file(tmp_path, p, dead) for p in ("counter", "histogram", "gauge_livesum")]

    metrics_dir_prepare(tmp_path)

    assert not any(f.exists() for f in files)


def test_beside_a_live_process_only_dead_live_gauges_go(tmp_path: Path) -> None:
    dead = _dead_pid()
    live_counter = _pid_file(tmp_path, "counter", os.getpid())
    dead_counter = _pid_file(tmp_path, "counter", dead)
    dead_gauge = _pid_file(tmp_path, "gauge_livesum", dead)

    metrics_dir_prepare(tmp_path)

    # Totals never go backwards while others run; a dead process's live gauge is gone.
    assert live_counter.exists() and dead_counter.exists()
    assert not dead_gauge.exists()


def test_the_directory_is_created(tmp_path: Path) -> None:
    metrics_dir_prepare(tmp_path / "var" / "metrics")

    assert (tmp_path / "var" / "metrics").is_dir()


def test_a_lost_sample_never_fails_the_caller(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def labels(self, *values: str) -> Any:
            raise FileNotFoundError("metrics directory gone")

    monkeypatch.setattr(metrics, "PROVIDER_ERRORS", Broken())
    monkeypatch.setattr(metrics, "_warned", False)

    with caplog.at_level(logging.WARNING, logger="calls.metrics"):
        metrics.provider_error(provider="mock", kind="dial")
        metrics.provider_error(provider="mock", kind="dial")

    assert [r.message for r in caplog.records].count(
        "metrics sample lost (metrics directory): metrics directory gone"
    ) == 1


# --- the sample dashboard ------------------------------------------------------------------


def _defined_samples() -> set[str]:
    """Every sample name calls/metrics.py and the scrape's database gauges can expose."""
    names = {"voicecall_active_calls", "voicecall_streams_active"}
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    for family in REGISTRY.collect():
        if family.name.startswith("voicecall_"):
            names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names


def _queried(dashboard: dict[str, Any]) -> set[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return {name for expr in exprs for name in re.findall(r"voicecall_[a-z_]+", expr)}


def test_the_grafana_dashboard_queries_only_metrics_that_exist() -> None:
    dashboard = json.loads(DASHBOARD.read_text())

    queried = _queried(dashboard)

    assert queried and queried <= _defined_samples()


def test_the_grafana_dashboard_has_a_panel_for_every_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    families = {name.removesuffix("_total") for name in _queried(dashboard)}
    families = {re.sub(r"_(bucket|sum|count)$", "", name) for name in families}

    defined = {f.name for f in REGISTRY.collect() if f.name.startswith("voicecall_")}
    assert defined | {"voicecall_active_calls", "voicecall_streams_active"} <= families

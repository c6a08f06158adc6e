"""Reading metric values in tests: what a scrape adds up, from every process's files.

Samples accumulate over the whole test session (one multiprocess directory per run,
tests/settings.py), so tests compare a value before and after what they drive.
"""

from __future__ import annotations

from django.conf import settings
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families


def sample(name: str, **labels: str) -> float:
    """One sample summed over every process's files, 0 when nothing was recorded yet."""
    collector = MultiProcessCollector(None, path=settings.PROMETHEUS_MULTIPROC_DIR)
    for metric in collector.collect():
        for found in metric.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return 0.0


def parse(exposition: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """An exposition (text format) as {(sample name, labels): value}."""
    return {
        (found.name, frozenset(found.labels.items())): float(found.value)
        for family in text_string_to_metric_families(exposition.decode())
        for found in family.samples
    }

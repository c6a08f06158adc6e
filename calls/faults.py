"""Crash points for the kill -9 tests (tests/crash/): nothing happens unless asked for.

`VOICECALL_CRASH_AT=outbox.applied` makes this process SIGKILL itself the moment webhook
handling reaches that point, so a test can prove what a crash there leaves behind. The
names are read once at import; an unset variable costs one set lookup per point.
"""

from __future__ import annotations

import os
import signal

POINTS = frozenset(filter(None, os.environ.get("VOICECALL_CRASH_AT", "").split(",")))


def crash_point(name: str) -> None:
    """Die here, as `kill -9` would, when this point was named; otherwise do nothing."""
    if name in POINTS:
        os.kill(os.getpid(), signal.SIGKILL)

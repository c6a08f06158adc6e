"""Graceful drain of this process: the state every surface asks before taking new work.

On the first SIGTERM `voicecall serve` begins a drain (calls/serving/server.py): `/readyz`
answers 503, new media streams are refused at the upgrade (503) and webhooks that would
open a new call are refused (503, the carrier tries again elsewhere), while webhooks about
existing calls are still applied and live streams run on. The drain is over when this
process holds no stream any more or `serve.drainSeconds` have passed; the server then
shuts down. docs/architecture.md, "Graceful drain".

Process-local on purpose: each server drains on its own signal; the others keep serving.
"""

from __future__ import annotations


class Drain:
    """running → draining (begin) → over (no live stream left, or the deadline passed).

    Times are monotonic seconds handed in by the caller, so the machine is tested without
    a clock.
    """

    __slots__ = ("_deadline",)

    def __init__(self) -> None:
        self._deadline: float | None = None

    @property
    def draining(self) -> bool:
        return self._deadline is not None

    def begin(self, *, seconds: float, now: float) -> bool:
        """Start draining; False when a drain had already begun (the signal came twice)."""
        if self._deadline is not None:
            return False
        self._deadline = now + max(seconds, 0.0)
        return True

    def over(self, *, live_streams: int, now: float) -> bool:
        """Draining, and nothing left to wait for: no live stream, or the time is up."""
        if self._deadline is None:
            return False
        return live_streams <= 0 or now >= self._deadline


DRAIN = Drain()


def draining() -> bool:
    """True once this process has begun draining: take no new stream or new call."""
    return DRAIN.draining

"""Admission counting for this process: how many holders in all and per peer, under limits.

The webhook gate caps in-flight requests per peer (429) and the media-stream consumer caps
sockets in all (503) and sockets still waiting for a valid start in all and per peer
(1013) — the same count-and-give-back logic, here once. A `Slot` gives its place back
exactly once, whichever of close, disconnect or response-sent comes first.

Counts are per process; docs/design.md, "8. Runtime modes and scale" says where limits
across processes are still to come.
"""

from __future__ import annotations

from collections import Counter


class Slot:
    """One admitted holder; `release()` is idempotent."""

    __slots__ = ("_admission", "_peer", "released")

    def __init__(self, admission: Admission, peer: str) -> None:
        self._admission = admission
        self._peer = peer
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._admission._give_back(self._peer)


class Admission:
    """Holders counted in all and per peer (a socket's remote address)."""

    def __init__(self) -> None:
        self.total = 0
        self.by_peer: Counter[str] = Counter()

    def take(
        self, peer: str, *, limit: int | None = None, per_peer: int | None = None
    ) -> Slot | None:
        """A slot, or None when `limit` holders in all or `per_peer` from `peer` are in."""
        if limit is not None and self.total >= limit:
            return None
        if per_peer is not None and self.by_peer[peer] >= per_peer:
            return None
        self.total += 1
        self.by_peer[peer] += 1
        return Slot(self, peer)

    def _give_back(self, peer: str) -> None:
        self.total -= 1
        self.by_peer[peer] -= 1
        if self.by_peer[peer] <= 0:
            del self.by_peer[peer]

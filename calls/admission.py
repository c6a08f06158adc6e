"""Admission counting: how many holders in all and per peer, under limits.

The webhook gate caps in-flight requests per peer (429) and the media-stream consumer caps
sockets still waiting for a valid start in all and per peer (1013): per process, the same
count-and-give-back logic, here once (`Admission`). A `Slot` gives its place back exactly
once, whichever of close, disconnect or response-sent comes first.

Media-stream sockets in all (503 past `streaming.maxConnections`) are counted across every
process of the deployment (`LeasedAdmission`): one leased row per socket in the database
(calls/services/stream_leases.py; docs/architecture.md, "Admission across processes").
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import Counter

from calls.db_threads import stream_hop
from calls.services.stream_leases import (
    RENEW_EVERY_SECONDS,
    stream_lease_release,
    stream_lease_take,
    stream_leases_release_holder,
    stream_leases_renew,
)

logger = logging.getLogger(__name__)

_take = stream_hop(stream_lease_take)
_release = stream_hop(stream_lease_release)
_renew = stream_hop(stream_leases_renew)


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


def process_holder() -> str:
    """This process's name on the leases it holds: host, pid and a random tag."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """One admitted socket's row; `release()` is idempotent."""

    __slots__ = ("_admission", "lease_id", "released")

    def __init__(self, admission: LeasedAdmission, lease_id: int) -> None:
        self._admission = admission
        self.lease_id = lease_id
        self.released = False

    async def release(self) -> None:
        if not self.released:
            self.released = True
            await self._admission._give_back(self.lease_id)


class LeasedAdmission:
    """Holders counted across the deployment under one limit, by leases in the database.

    `held` is this process's share (what a drain waits for). While any is held, one task
    renews them all every RENEW_EVERY_SECONDS; it ends when none is left.
    """

    def __init__(self, holder: str | None = None) -> None:
        self.holder = holder or process_holder()
        self.held: set[int] = set()
        self._renewer: asyncio.Task[None] | None = None

    @property
    def total(self) -> int:
        return len(self.held)

    async def take(self, *, limit: int) -> Lease | None:
        """A lease, or None when `limit` holders are in across the deployment."""
        if len(self.held) >= limit:  # this process alone fills it: no need to ask
            return None
        lease_id = await _take(holder=self.holder, limit=limit)
        if lease_id is None:
            return None
        self.held.add(lease_id)
        self._keep_renewing()
        return Lease(self, lease_id)

    async def _give_back(self, lease_id: int) -> None:
        # No longer renewed from here on, whatever the delete does: at worst it expires.
        self.held.discard(lease_id)
        try:
            await _release(lease_id=lease_id)
        except Exception:  # the database is away; the lease expires on its own
            logger.exception("stream lease %s not released; it expires unrenewed", lease_id)

    def release_all(self) -> int:
        """This process is leaving: give back every lease it holds (synchronous; the
        renewing task, if its loop still runs, finds nothing left and ends)."""
        self.held.clear()
        return stream_leases_release_holder(holder=self.holder)

    def _keep_renewing(self) -> None:
        loop = asyncio.get_running_loop()
        task = self._renewer
        if task is None or task.done() or task.get_loop() is not loop:
            self._renewer = loop.create_task(self._renew_while_held())

    async def _renew_while_held(self) -> None:
        while self.held:
            await asyncio.sleep(RENEW_EVERY_SECONDS)
            if not self.held:
                return
            try:
                await _renew(lease_ids=sorted(self.held))
            except Exception:  # the next round retries; a lease outlives two misses
                logger.exception("stream lease renewal failed")

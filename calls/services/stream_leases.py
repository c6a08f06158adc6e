"""Media-stream sockets counted across the deployment: `streaming.maxConnections` in all.

Each open socket is a `StreamLease` row. A process takes one under a lock (count the live
rows, insert below the cap), renews the rows it holds in one UPDATE every
RENEW_EVERY_SECONDS, and deletes a row when its socket ends. A process that dies without
a word stops renewing, so its rows stop counting LEASE_SECONDS after their last renewal.
docs/architecture.md, "Admission across processes".
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta

from django.db import transaction

from calls import clock
from calls.models import ServiceLock, StreamLease

# A lease not renewed for this long counts no more: a killed process's slots come back
# within it. Renewed three times per period, so one missed renewal loses nothing.
LEASE_SECONDS = 30
RENEW_EVERY_SECONDS = 10
# Expired rows stay (uncounted) this long before they are deleted, so a process that
# stalled past its lease and renews again is counted again rather than forgotten.
PRUNE_AFTER = timedelta(minutes=10)

_LOCK = "streams"


def stream_lease_take(*, holder: str, limit: int) -> int | None:
    """A new lease's id, or None when `limit` live leases are held in the deployment.

    Counted and inserted under one lock (a row lock on PostgreSQL, the write lock that
    IMMEDIATE transactions take on SQLite), so concurrent processes never pass the cap.
    """
    with transaction.atomic():
        ServiceLock.objects.get_or_create(name=_LOCK)
        ServiceLock.objects.select_for_update().get(name=_LOCK)
        now = clock.now()
        if StreamLease.objects.filter(expires_at__gt=now).count() >= limit:
            return None
        lease = StreamLease.objects.create(
            holder=holder, created_at=now, expires_at=now + timedelta(seconds=LEASE_SECONDS)
        )
    return lease.pk


def stream_lease_release(*, lease_id: int) -> None:
    """The socket ended: its place is free at once."""
    StreamLease.objects.filter(pk=lease_id).delete()


def stream_leases_renew(*, lease_ids: Collection[int]) -> int:
    """Extend the leases this process still holds (one UPDATE), and delete rows long dead.

    Renewed by id, not by holder: a lease whose release failed is no longer listed by its
    process, so it expires instead of being renewed for ever. Returns how many were renewed.
    """
    now = clock.now()
    renewed = 0
    if lease_ids:
        renewed = StreamLease.objects.filter(pk__in=list(lease_ids)).update(
            expires_at=now + timedelta(seconds=LEASE_SECONDS)
        )
    StreamLease.objects.filter(expires_at__lt=now - PRUNE_AFTER).delete()
    return renewed


def stream_leases_release_holder(*, holder: str) -> int:
    """A process leaving gives back every lease it still holds (its exit path)."""
    deleted, _ = StreamLease.objects.filter(holder=holder).delete()
    return deleted


def stream_leases_live() -> int:
    """How many media-stream sockets the deployment holds now."""
    return StreamLease.objects.filter(expires_at__gt=clock.now()).count()

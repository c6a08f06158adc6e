"""Media-stream sockets counted across the deployment by leased rows.

docs/architecture.md, "Admission across processes": one row per socket, taken under a lock
below `streaming.maxConnections`, renewed while the socket lives, deleted when it ends; a
killed process's rows stop counting once they expire.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

from calls.models import StreamLease
from calls.services.stream_leases import (
    LEASE_SECONDS,
    PRUNE_AFTER,
    RENEW_EVERY_SECONDS,
    stream_lease_release,
    stream_lease_take,
    stream_leases_live,
    stream_leases_release_holder,
    stream_leases_renew,
)


@pytest.mark.django_db
def test_leases_of_two_processes_count_against_one_cap() -> None:
    first = stream_lease_take(holder="a", limit=2)
    second = stream_lease_take(holder="b", limit=2)
    assert first is not None and second is not None
    assert stream_lease_take(holder="a", limit=2) is None
    assert stream_lease_take(holder="b", limit=2) is None
    # A socket that ends frees its place at once, for any process.
    stream_lease_release(lease_id=first)
    assert stream_lease_take(holder="b", limit=2) is not None
    assert stream_leases_live() == 2


@pytest.mark.django_db
def test_a_lease_not_renewed_expires_and_frees_its_place(fake_clock: Any) -> None:
    dead = stream_lease_take(holder="killed", limit=1)
    assert dead is not None
    assert stream_lease_take(holder="alive", limit=1) is None
    fake_clock.advance(seconds=LEASE_SECONDS - 1)
    assert stream_lease_take(holder="alive", limit=1) is None
    fake_clock.advance(seconds=1)  # nobody renewed it: the holder is gone
    assert stream_lease_take(holder="alive", limit=1) is not None


@pytest.mark.django_db
def test_a_renewed_lease_outlives_its_first_expiry(fake_clock: Any) -> None:
    held = stream_lease_take(holder="alive", limit=1)
    assert held is not None
    for _ in range(5):
        fake_clock.advance(seconds=RENEW_EVERY_SECONDS)
        assert stream_leases_renew(lease_ids=[held]) == 1
    assert stream_lease_take(holder="other", limit=1) is None


@pytest.mark.django_db
def test_renewal_touches_only_the_listed_leases(fake_clock: Any) -> None:
    mine = stream_lease_take(holder="p", limit=5)
    forgotten = stream_lease_take(holder="p", limit=5)  # its release failed: no longer listed
    assert mine is not None and forgotten is not None
    fake_clock.advance(seconds=RENEW_EVERY_SECONDS * 2)
    stream_leases_renew(lease_ids=[mine])
    fake_clock.advance(seconds=RENEW_EVERY_SECONDS * 2)
    assert stream_leases_live() == 1


@pytest.mark.django_db
def test_renewal_prunes_rows_long_expired_but_counts_a_late_renewal_again(
    fake_clock: Any,
) -> None:
    stalled = stream_lease_take(holder="stalled", limit=5)
    dead = stream_lease_take(holder="dead", limit=5)
    assert stalled is not None and dead is not None
    fake_clock.advance(seconds=LEASE_SECONDS + 1)
    # A process that stalled past its lease and renews again is counted again.
    assert stream_leases_renew(lease_ids=[stalled]) == 1
    assert stream_leases_live() == 1
    fake_clock.advance(seconds=PRUNE_AFTER.total_seconds())
    stream_leases_renew(lease_ids=[stalled])
    assert list(StreamLease.objects.values_list("pk", flat=True)) == [stalled]


@pytest.mark.django_db
def test_a_leaving_process_gives_back_all_its_leases() -> None:
    for _ in range(3):
        stream_lease_take(holder="leaving", limit=10)
    stream_lease_take(holder="staying", limit=10)
    assert stream_leases_release_holder(holder="leaving") == 3
    assert list(StreamLease.objects.values_list("holder", flat=True)) == ["staying"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_takes_never_pass_the_cap() -> None:
    # Threads with their own connections stand in for processes (PostgreSQL: the row
    # lock; SQLite: the IMMEDIATE write lock).
    taken: list[int | None] = []
    start = threading.Barrier(8)

    def take(n: int) -> None:
        try:
            start.wait()
            taken.append(stream_lease_take(holder=f"p{n}", limit=3))
        finally:
            connection.close()

    threads = [threading.Thread(target=take, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(x is not None for x in taken) == [False] * 5 + [True] * 3
    assert StreamLease.objects.count() == 3


@pytest.mark.django_db
def test_a_lease_expires_lease_seconds_after_it_was_taken(fake_clock: Any) -> None:
    lease_id = stream_lease_take(holder="p", limit=1)
    row = StreamLease.objects.get(pk=lease_id)
    assert row.expires_at - row.created_at == timedelta(seconds=LEASE_SECONDS)
    assert row.created_at == fake_clock.now()

"""Database connections on threads that outlive a job: the webhook workers
(calls/web/workers.py) and the responder's threads (calls/services/auto_reply.py).

Django ties a connection's lifetime to a request; these threads run many jobs, so they apply
the request-start and request-end rules themselves around each job
(docs/performance.md, "Webhook path").
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import connections


def database_job[T](func: Callable[[], T]) -> T:
    """Run one job on a reused thread: connections checked before, pooled ones returned after."""
    connections_checked()
    try:
        return func()
    finally:
        pooled_connections_returned()


def pooled_connections_returned() -> None:
    """A connection from a pool (PostgreSQL) goes back after each job: taking it again is
    cheap, and request threads and the sweep draw from the same pool."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and getattr(conn, "pool", None) is not None:
            conn.close()


def connections_checked() -> None:
    """Django's request-start connection checks (`close_if_unusable_or_obsolete`), no age."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is None:
            continue
        if conn.get_autocommit() != conn.settings_dict["AUTOCOMMIT"]:
            conn.close()
            continue
        if conn.errors_occurred:
            if not conn.is_usable():
                conn.close()
                continue
            conn.errors_occurred = False
            # is_usable() just was the check (django-stubs lack health_check_done)
            conn.health_check_done = True  # type: ignore[attr-defined]
            continue
        conn.health_check_done = False  # type: ignore[attr-defined]

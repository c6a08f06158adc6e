"""Database connections on threads that outlive a job: the webhook and API workers, the
media streams' database thread, and the responder's threads (calls/services/auto_reply.py).

Django ties a connection's lifetime to a request; these threads run many jobs, so they apply
the request-start and request-end rules themselves around each job
(docs/performance.md, "Webhook path").

`DatabaseWorkers` serves the webhook and API endpoints. Django's ASGI handler runs each
request's synchronous code on a thread made for that request (a ThreadSensitiveContext per
request), so every request starts a thread and opens, then closes, a database connection.
Those endpoints instead hand their whole synchronous part to one of these threads. The pool
grows to `size` threads only when that many jobs run at once (a command to a slow carrier
API holds one), and queues jobs past that.

Connections: a pooled one (PostgreSQL) goes back to its pool after each job, as a request
thread's does; an unpooled one (SQLite, where opening costs more than a status callback's
queries) stays with its worker as long as it works, whatever CONN_MAX_AGE says (that
setting is about request threads, which die with their request). Before each job a worker
applies Django's request-start checks but the age rule: a connection left outside
autocommit is dropped, one that raised a database error is dropped unless it still
answers, and with CONN_HEALTH_CHECKS the job's first query checks it first.

`stream_hop` is the same for the media streams (calls/streams/, calls/admission.py): one
thread, so their hops run in the order they were asked for, as on the one thread Channels'
`database_sync_to_async` used; but Channels closed the connection after every hop, and a
new SQLite connection per hop (connect, Django's per-connection set-up, close) was a tenth
of the server's samples while 200 streams came up (docs/performance.md, "Concurrent
streams").
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
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


class DatabaseWorkers:
    """`await workers.run(func)` runs func on one of at most `size` reused threads.

    `size=0` runs it where Django runs synchronous views (`thread_sensitive=True`), which is
    what tests use so the work shares the test's connection and transaction.
    """

    def __init__(self, size: int, *, name: str = "webhook") -> None:
        self.size = size
        self._executor = (
            ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"voicecall-{name}")
            if size > 0
            else None
        )

    async def run[T](self, func: Callable[[], T]) -> T:
        if self._executor is None:
            return await sync_to_async(func, thread_sensitive=True)()
        return await sync_to_async(database_job, thread_sensitive=False, executor=self._executor)(
            func
        )


# The streams' one database thread (a second would let two hops of one stream overtake).
STREAM_DATABASE = DatabaseWorkers(1, name="stream")


def stream_hop[**P, T](func: Callable[P, T]) -> Callable[P, Awaitable[T]]:
    """`func` as a coroutine function that runs it on the streams' database thread."""

    @functools.wraps(func)
    async def hop(*args: P.args, **kwargs: P.kwargs) -> T:
        return await STREAM_DATABASE.run(functools.partial(func, *args, **kwargs))

    return hop

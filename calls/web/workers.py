"""A few reused threads that run the webhook path's database work, one hop per request.

docs/performance.md, "Webhook path". Django's ASGI handler runs each request's synchronous
code on a thread made for that request (a ThreadSensitiveContext per request), so every
request starts a thread and opens, then closes, a database connection. The webhook
endpoint instead hands its whole synchronous part to one of these threads. The pool grows
to `size` threads only when that many jobs run at once (a command to a slow carrier API
holds one), and queues jobs past that.

Connections: a pooled one (PostgreSQL) goes back to its pool after each job, as a request
thread's does; an unpooled one (SQLite, where opening costs more than a status callback's
queries) stays with its worker as long as it works, whatever CONN_MAX_AGE says (that
setting is about request threads, which die with their request). Before each job a worker
applies Django's request-start checks but the age rule: a connection left outside
autocommit is dropped, one that raised a database error is dropped unless it still
answers, and with CONN_HEALTH_CHECKS the job's first query checks it first.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async

from calls.db_threads import database_job


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

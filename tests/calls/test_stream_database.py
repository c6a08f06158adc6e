"""The media streams' database thread (calls/db_threads.py, `stream_hop`).

Every hop of every stream runs on one reused thread, in the order asked for, and keeps its
SQLite connection between hops (a pooled PostgreSQL one goes back to the pool after each);
Channels' `database_sync_to_async`, used before, closed the connection after every hop.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from django.db import connection

from calls.db_threads import stream_hop
from calls.models import Call

pytestmark = pytest.mark.django_db(transaction=True)


async def test_hops_run_in_order_on_one_thread_that_keeps_or_returns_its_connection() -> None:
    seen: list[tuple[int, str]] = []

    def job(index: int) -> Any:
        seen.append((index, threading.current_thread().name))
        Call.objects.count()  # a query: the thread holds a connection now
        return connection.connection

    held = await asyncio.gather(*(stream_hop(job)(index) for index in range(6)))

    assert [index for index, _ in seen] == list(range(6))
    names = {name for _, name in seen}
    assert len(names) == 1 and names.pop().startswith("voicecall-stream")
    after = await stream_hop(lambda: connection.connection)()
    if connection.settings_dict["OPTIONS"].get("pool"):
        assert after is None  # PostgreSQL: given back to the pool after each hop
    else:
        assert after is not None and all(conn is after for conn in held)  # SQLite: kept


async def test_a_hop_returns_what_its_function_returns_and_raises_what_it_raises() -> None:
    def fails(*, why: str) -> None:
        raise LookupError(why)

    assert await stream_hop(lambda a, b=0: a + b)(2, b=3) == 5
    with pytest.raises(LookupError, match="gone"):
        await stream_hop(fails)(why="gone")

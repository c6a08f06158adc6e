"""The graceful drain's state machine and the signals `voicecall serve` maps onto it.

docs/architecture.md, "Graceful drain": the first SIGTERM begins a drain, which is over
when no stream is left or `serve.drainSeconds` have passed; a second SIGTERM (or SIGINT
during a drain) exits at once; SIGINT otherwise keeps uvicorn's own handling.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest
import uvicorn

from calls.drain import Drain
from calls.serving.server import DrainingServer

# == the state machine =========================================================================


def test_a_new_drain_is_not_draining_and_never_over() -> None:
    drain = Drain()
    assert not drain.draining
    assert not drain.over(live_streams=0, now=1e9)


def test_the_first_begin_starts_it_and_a_second_reports_a_repeat() -> None:
    drain = Drain()
    assert drain.begin(seconds=30, now=100.0)
    assert drain.draining
    assert not drain.begin(seconds=30, now=101.0)


def test_it_is_over_once_no_stream_is_left() -> None:
    drain = Drain()
    drain.begin(seconds=30, now=100.0)
    assert not drain.over(live_streams=2, now=100.0)
    assert not drain.over(live_streams=1, now=110.0)
    assert drain.over(live_streams=0, now=110.0)


def test_it_is_over_when_drain_seconds_pass_with_streams_still_live() -> None:
    drain = Drain()
    drain.begin(seconds=30, now=100.0)
    assert not drain.over(live_streams=3, now=129.9)
    assert drain.over(live_streams=3, now=130.0)


def test_a_repeated_begin_does_not_move_the_deadline() -> None:
    drain = Drain()
    drain.begin(seconds=30, now=100.0)
    drain.begin(seconds=30, now=125.0)
    assert drain.over(live_streams=1, now=130.0)


def test_zero_drain_seconds_is_over_at_once() -> None:
    drain = Drain()
    drain.begin(seconds=0, now=100.0)
    assert drain.over(live_streams=5, now=100.0)


# == signals on the server =====================================================================


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _server(live: list[int], clock: Clock, seconds: float = 30) -> DrainingServer:
    async def app(scope: Any, receive: Any, send: Any) -> None:  # never called
        raise AssertionError

    return DrainingServer(
        uvicorn.Config(app, lifespan="off", log_config=None),
        drain=Drain(),
        drain_seconds=seconds,
        live_streams=lambda: live[0],
        clock=clock,
    )


async def test_sigterm_begins_a_drain_and_the_server_serves_on_until_streams_end() -> None:
    live, clock = [2], Clock()
    server = _server(live, clock)
    server.handle_exit(signal.SIGTERM, None)
    assert server.drain.draining
    assert not server.should_exit and not server.force_exit
    assert await server.on_tick(1) is False
    live[0] = 0
    assert await server.on_tick(2) is True
    assert server.should_exit and not server.force_exit  # uvicorn's graceful shutdown


async def test_a_drain_ends_at_drain_seconds_however_many_streams_live() -> None:
    live, clock = [4], Clock()
    server = _server(live, clock, seconds=5)
    server.handle_exit(signal.SIGTERM, None)
    clock.now += 4.9
    assert await server.on_tick(1) is False
    clock.now += 0.1
    assert await server.on_tick(2) is True
    assert not server.force_exit


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT])
async def test_a_second_signal_during_a_drain_exits_at_once(second: int) -> None:
    live, clock = [1], Clock()
    server = _server(live, clock)
    server.handle_exit(signal.SIGTERM, None)
    server.handle_exit(second, None)
    assert server.should_exit and server.force_exit
    assert await server.on_tick(1) is True


async def test_sigint_without_a_drain_is_uvicorns_graceful_shutdown() -> None:
    server = _server([1], Clock())
    server.handle_exit(signal.SIGINT, None)
    assert server.should_exit and not server.force_exit
    assert not server.drain.draining
    server.handle_exit(signal.SIGINT, None)
    assert server.force_exit


async def test_sigterm_while_already_shutting_down_forces_the_exit() -> None:
    server = _server([1], Clock())
    server.handle_exit(signal.SIGINT, None)
    server.handle_exit(signal.SIGTERM, None)
    assert server.force_exit and not server.drain.draining

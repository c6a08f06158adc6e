"""`streaming.maxConnections` across the deployment, and new streams refused while draining.

docs/architecture.md, "Admission across processes" and "Graceful drain". Two
`StreamAdmission` instances with different holders play two server processes sharing one
database; the consumer is driven over the real ASGI router (Twilio framing). The voice
pipeline is replaced by a session that does nothing, so admission is what is under test.
"""

from __future__ import annotations

import asyncio
import json
from functools import partial
from typing import Any

import httpx
import pytest
from channels.db import database_sync_to_async

from calls import admission as admission_module
from calls.carrier import provider_settings, set_provider
from calls.drain import Drain
from calls.models import Call, StreamLease
from calls.services.stream_leases import LEASE_SECONDS
from calls.streams.consumer import StreamAdmission
from calls.streams.limits import MAX_FRAME_BYTES
from providers.twilio import TwilioProvider
from tests.fakes.stream_socket import HTTP_RESPONSE, socket_open
from tests.fakes.stream_socket import Socket as BaseSocket

TOKEN = "12345678901234567890123456789012"
CALL_SID = "CA00000000000000000000000000000011"
TWILIO: dict[str, Any] = {
    "provider": "twilio",
    "fromNumber": "+15550001234",
    "twilio": {
        "accountSid": "AC00000000000000000000000000000001",
        "authToken": TOKEN,
        "apiBaseUrl": "http://127.0.0.1:9",
    },
    "publicUrl": "https://voice.example.com/voice/webhook",
    "streaming": {
        "enabled": True,
        "preStartTimeoutMs": 5000,
        "providers": {"openai": {"apiKey": "sk-test"}},
    },
    "tts": {"provider": "openai", "providers": {"openai": {"apiKey": "sk-test"}}},
}

pytestmark = pytest.mark.django_db(transaction=True)


class QuietSession:
    """Stands in for StreamSession: opens, says nothing, closes."""

    def __init__(self, **_: Any) -> None:
        self.closed = False

    async def open(self, greeting: str | None) -> None:
        pass

    async def audio(self, ulaw: bytes) -> None:
        pass

    def mark_done(self, name: str) -> None:
        pass

    async def say(self, message: Any) -> None:
        pass

    async def close(self) -> None:
        self.closed = True


class Processes:
    """Two server processes on one database; `use(name)` makes the next socket land there."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.by_name = {name: StreamAdmission(holder=f"test:{name}") for name in ("a", "b")}

    def use(self, name: str) -> StreamAdmission:
        chosen = self.by_name[name]
        self.monkeypatch.setattr("calls.streams.consumer.ADMISSION", chosen)
        return chosen


def _streaming(configure: Any, monkeypatch: pytest.MonkeyPatch, **limits: int) -> Processes:
    raw = json.loads(json.dumps(TWILIO))
    raw["streaming"].update(limits)
    cfg = configure(raw)
    carrier_api = httpx.Client(
        transport=httpx.MockTransport(
            lambda request: httpx.Response(200, json={"sid": CALL_SID, "status": "completed"})
        )
    )
    set_provider(TwilioProvider(settings=provider_settings(cfg), http=carrier_api))
    monkeypatch.setattr("calls.streams.consumer.StreamSession", QuietSession)
    monkeypatch.setattr("calls.drain.DRAIN", Drain())
    processes = Processes(monkeypatch)
    processes.use("a")
    return processes


@pytest.fixture
def application() -> Any:
    from voicecall_project.asgi import application

    return application


# These tests run as under uvicorn (HTTP responses on the upgrade) unless they say not.
_open = partial(socket_open, extensions=HTTP_RESPONSE)


class Socket(BaseSocket):
    def __init__(self, application: Any, **kwargs: Any) -> None:
        super().__init__(application, **{"extensions": HTTP_RESPONSE, **kwargs})


async def _refused(application: Any) -> tuple[int, bytes]:
    """(status, body) of an upgrade answered over HTTP."""
    socket = Socket(application)
    await socket.send_input({"type": "websocket.connect"})
    start = await socket.receive_output(timeout=5)
    body = await socket.receive_output(timeout=5)
    assert start["type"] == "websocket.http.response.start"
    return start["status"], body["body"]


@database_sync_to_async
def _leases(holder: str | None = None) -> int:
    rows = StreamLease.objects.all()
    return (rows.filter(holder=holder) if holder else rows).count()


@database_sync_to_async
def _make_call() -> Call:
    return Call.objects.create(
        provider="twilio",
        provider_call_id=CALL_SID,
        direction="outbound",
        mode="conversation",
        state="answered",
        stream_token="good-token",
        metadata={},
    )


def _start(token: str = "good-token") -> str:
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": "MZ1",
            "start": {
                "streamSid": "MZ1",
                "accountSid": "AC1",
                "callSid": CALL_SID,
                "tracks": ["inbound"],
                "customParameters": {"token": token},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        }
    )


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


# == one cap for every process =================================================================


async def test_sockets_on_two_processes_count_against_one_max_connections(
    configure: Any, monkeypatch: pytest.MonkeyPatch, application: Any
) -> None:
    processes = _streaming(configure, monkeypatch, maxConnections=2)
    processes.use("a")
    on_a = await _open(application)
    processes.use("b")
    on_b = await _open(application)
    # Each process holds one socket; neither may take a third.
    for name in ("a", "b"):
        processes.use(name)
        assert await _refused(application) == (503, b"Too many media stream connections")
    assert (await _leases("test:a"), await _leases("test:b")) == (1, 1)
    # A socket that ends on one process frees the place for the other.
    await on_a.disconnect()
    processes.use("b")
    again = await _open(application)
    assert processes.by_name["b"].connections.total == 2
    for socket in (on_b, again):
        await socket.disconnect()
    assert await _leases() == 0


async def test_the_sockets_of_a_killed_process_count_until_their_leases_expire(
    configure: Any, monkeypatch: pytest.MonkeyPatch, application: Any, fake_clock: Any
) -> None:
    processes = _streaming(configure, monkeypatch, maxConnections=1)
    # Process a holds the only place, then is killed: nothing releases or renews it.
    killed = processes.by_name["a"].connections
    assert await killed.take(limit=1) is not None
    assert killed._renewer is not None
    killed._renewer.cancel()
    processes.use("b")
    assert await _refused(application) == (503, b"Too many media stream connections")
    fake_clock.advance(seconds=LEASE_SECONDS)
    socket = await _open(application)
    await socket.disconnect()


async def test_a_live_process_renews_its_leases_while_its_sockets_last(
    configure: Any, monkeypatch: pytest.MonkeyPatch, application: Any, fake_clock: Any
) -> None:
    processes = _streaming(configure, monkeypatch, maxConnections=1)
    monkeypatch.setattr(admission_module, "RENEW_EVERY_SECONDS", 0.01)
    socket = await _open(application)
    fake_clock.advance(seconds=LEASE_SECONDS * 10)

    async def renewed() -> bool:
        return await database_sync_to_async(
            StreamLease.objects.filter(expires_at__gt=fake_clock.now()).exists
        )()

    await _until(renewed)
    await socket.disconnect()
    assert await _leases() == 0
    # With nothing left to renew, the renewing task ends.
    renewer = processes.by_name["a"].connections._renewer
    assert renewer is not None

    async def ended() -> bool:
        return renewer.done()

    await _until(ended)


# == released on every path ====================================================================


async def test_a_peer_that_disconnects_gives_its_place_back(
    configure: Any, monkeypatch: pytest.MonkeyPatch, application: Any
) -> None:
    processes = _streaming(configure, monkeypatch, maxConnections=1)
    socket = await _open(application)
    assert await _leases() == 1
    await socket.disconnect()
    assert await _leases() == 0
    assert processes.by_name["a"].connections.total == 0


async def test_a_start_timeout_gives_the_place_back_when_the_server_closes(
    configure: Any, monkeypatch: pytest.MonkeyPatch, application: Any
) -> None:
    _streaming(configure, monkeypatch, maxConnections=1, preStartTimeoutMs=50)
    socket = await _open(application)
    closed = await socket.receive_output(timeout=5)
    assert (closed["type"], closed["code"]) == ("websocket.close", 1008)
    # Released before the close frame went out, not when the peer goes.
    assert await _leases() == 0
    await socket.disconnect()


async def test_a_rejected_start_gives_the_place_back(
    configure: Any, monkeypatch: pytest.MonkeyPatch, application: Any
) -> None:
    _streaming(configure, monkeypatch, maxConnections=1)
    await _make_call()
    socket = await _open(application)
    await socket.send_to(text_data=_start(token="wrong-token"))
    closed = await socket.receive_output(timeout=5)
    assert (closed["code"], closed.get("reason")) == (1008, "Unknown call")
    assert await _leases() == 0
    await socket.disconnect()


async def test_a_socket_over_the_pending_cap_gives_its_place_back(
    configure: Any, monkeypatch: pytest.MonkeyPatch, application: Any
) -> None:
    _streaming(configure, monkeypatch, maxConnections=5, maxPendingConnections=1)
    first = await _open(application, client=("10.0.0.1", 5000))
    second = await _open(application, client=("10.0.0.2", 5000))
    closed = await second.receive_output(timeout=5)
    assert closed["code"] == 1013
    assert await _leases() == 1
    for socket in (first, second):
        await socket.disconnect()
    assert await _leases() == 0


async def test_a_frame_too_big_gives_the_place_back(
    configure: Any, monkeypatch: pytest.MonkeyPatch, application: Any
) -> None:
    _streaming(configure, monkeypatch, maxConnections=1)
    socket = await _open(application)
    await socket.send_to(text_data="x" * (MAX_FRAME_BYTES + 1))
    closed = await socket.receive_output(timeout=5)
    assert closed["code"] == 1009
    assert await _leases() == 0
    await socket.disconnect()


async def test_a_stop_after_the_start_tears_down_and_gives_the_place_back(
    configure: Any, monkeypatch: pytest.MonkeyPatch, application: Any
) -> None:
    _streaming(configure, monkeypatch, maxConnections=1)
    call = await _make_call()
    socket = await _open(application)
    await socket.send_to(text_data=_start())

    async def attached() -> bool:
        return await database_sync_to_async(
            Call.objects.filter(pk=call.pk, stream_id="MZ1").exists
        )()

    await _until(attached)
    assert await _leases() == 1
    await socket.send_to(text_data=json.dumps({"event": "stop", "streamSid": "MZ1"}))
    closed = await socket.receive_output(timeout=5)
    assert closed["type"] == "websocket.close"
    assert await _leases() == 0
    await socket.disconnect()


async def test_a_connect_that_fails_after_the_lease_gives_it_back(
    configure: Any, monkeypatch: pytest.MonkeyPatch, application: Any
) -> None:
    _streaming(configure, monkeypatch, maxConnections=1)

    class Broken:
        def media_codec(self) -> Any:
            raise RuntimeError("no codec")

    monkeypatch.setattr("calls.streams.consumer.get_provider", lambda: Broken())
    socket = Socket(application)
    await socket.send_input({"type": "websocket.connect"})
    with pytest.raises(RuntimeError, match="no codec"):
        await socket.receive_output(timeout=5)
    assert await _leases() == 0


async def test_a_process_leaving_gives_back_every_lease_it_holds(
    configure: Any, monkeypatch: pytest.MonkeyPatch, application: Any
) -> None:
    processes = _streaming(configure, monkeypatch, maxConnections=5)
    sockets = [await _open(application) for _ in range(2)]
    processes.use("b")
    other = await _open(application)
    leaving = processes.by_name["a"].connections
    assert await database_sync_to_async(leaving.release_all)() == 2
    assert (await _leases("test:a"), await _leases("test:b")) == (0, 1)
    assert leaving.total == 0
    for socket in (*sockets, other):
        await socket.disconnect()


# == draining ==================================================================================


async def test_a_draining_process_answers_new_streams_503_and_keeps_its_live_ones(
    configure: Any, monkeypatch: pytest.MonkeyPatch, application: Any
) -> None:
    processes = _streaming(configure, monkeypatch, maxConnections=5)
    live = await _open(application)
    drain = Drain()
    monkeypatch.setattr("calls.drain.DRAIN", drain)
    drain.begin(seconds=30, now=0.0)
    assert await _refused(application) == (503, b"Server shutting down")
    # No lease was taken for the refused socket; the live one runs on.
    assert await _leases() == 1
    assert await live.receive_nothing(timeout=0.1)
    assert processes.by_name["a"].connections.total == 1
    await live.disconnect()
    assert processes.by_name["a"].connections.total == 0


async def test_a_draining_process_without_http_responses_closes_new_streams(
    configure: Any, monkeypatch: pytest.MonkeyPatch, application: Any
) -> None:
    # Daphne offers no websocket.http.response extension: the consumer closes instead.
    _streaming(configure, monkeypatch, maxConnections=5)
    drain = Drain()
    monkeypatch.setattr("calls.drain.DRAIN", drain)
    drain.begin(seconds=30, now=0.0)
    refused = Socket(application, extensions=None)
    assert await refused.connect(timeout=5) == (False, 1000)
    assert await _leases() == 0

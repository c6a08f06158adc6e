"""Graceful drain as an operator sees it: `voicecall serve` in a subprocess, then SIGTERM.

docs/architecture.md, "Graceful drain". The server runs the Twilio adapter (the mock
carrier has no media stream) behind a public URL it never calls; the test signs Twilio's
webhooks itself and holds a media-stream socket open (it never sends a start, so no speech
vendor is reached) as the live stream the drain waits for.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.e2e.test_serve import Server
from tests.fakes.signing import twilio_sign

pytestmark = [pytest.mark.e2e]

PUBLIC_URL = "https://voice.example.com/voice/webhook"
ACCOUNT = "AC" + "5" * 32
AUTH_TOKEN = "f" * 32  # a fake auth token
OUR_NUMBER = "+15550100000"
CALLER = "+15555550111"


class TwilioServer(Server):
    """The e2e server with a Twilio config: open inbound, streams held before their start."""

    def __init__(self, tmp: Path, *, drain_seconds: int) -> None:
        super().__init__(tmp)
        (tmp / "voicecall.json5").write_text(
            json.dumps(
                {
                    "provider": "twilio",
                    "fromNumber": OUR_NUMBER,
                    "inboundPolicy": "open",
                    "publicUrl": PUBLIC_URL,
                    # Nothing listens there: the server must not need the carrier's REST API.
                    "twilio": {
                        "accountSid": ACCOUNT,
                        "authToken": AUTH_TOKEN,
                        "apiBaseUrl": "http://127.0.0.1:9",
                    },
                    "serve": {"port": self.port, "drainSeconds": drain_seconds},
                    "streaming": {
                        "enabled": True,
                        "preStartTimeoutMs": 120000,
                        "providers": {"openai": {"apiKey": "sk-test"}},
                    },
                    "tts": {"provider": "openai", "providers": {"openai": {"apiKey": "sk-test"}}},
                }
            )
        )

    def webhook(self, query: dict[str, str], **fields: str) -> httpx.Response:
        """A form webhook signed as Twilio signs it for the public URL."""
        suffix = f"?{urlencode(query)}" if query else ""
        params = {"AccountSid": ACCOUNT, "ApiVersion": "2010-04-01", **fields}
        body = urlencode(params).encode()
        return httpx.post(
            f"{self.base}/voice/webhook{suffix}",
            content=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": twilio_sign(PUBLIC_URL + suffix, body, AUTH_TOKEN),
            },
            timeout=10,
        )

    def incoming(self, call_sid: str) -> httpx.Response:
        """Twilio fetching the number's Voice URL for a new caller."""
        return self.webhook(
            {},
            CallSid=call_sid,
            Direction="inbound",
            From=CALLER,
            To=OUR_NUMBER,
            CallStatus="ringing",
        )

    def hung_up(self, call_sid: str) -> httpx.Response:
        """The number's status callback: the caller hung up."""
        return self.webhook(
            {"type": "status"},
            CallSid=call_sid,
            Direction="inbound",
            From=CALLER,
            To=OUR_NUMBER,
            CallStatus="completed",
            CallbackSource="call-progress-events",
            SequenceNumber="1",
        )

    def stream(self) -> ClientConnection:
        return connect(f"ws://127.0.0.1:{self.port}/voice/stream", open_timeout=10)

    def sigterm(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def exited(self) -> int:
        assert self.process is not None
        return self.process.wait(timeout=30)

    def alive(self) -> bool:
        assert self.process is not None
        return self.process.poll() is None

    def stream_leases(self) -> int:
        """Media-stream leases left in the database (the process has exited)."""
        count = "from calls.models import StreamLease; print(StreamLease.objects.count())"
        out = self.manage("shell", "-c", count).stdout
        return int(out.split()[-1])  # after any banner the shell prints


def _serve(tmp_path: Path, drain_seconds: int) -> Iterator[TwilioServer]:
    srv = TwilioServer(tmp_path, drain_seconds=drain_seconds)
    srv.manage("migrate", "--verbosity", "0")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TwilioServer]:
    yield from _serve(tmp_path, drain_seconds=120)


@pytest.fixture
def short_drain(tmp_path: Path) -> Iterator[TwilioServer]:
    yield from _serve(tmp_path, drain_seconds=1)


def _wait(predicate: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def _draining(srv: TwilioServer) -> bool:
    response = httpx.get(f"{srv.base}/readyz", timeout=5)
    return response.status_code == 503 and response.json().get("draining") is True


def _call_state(srv: TwilioServer, api: httpx.Client, call_sid: str) -> str | None:
    calls = api.get("/api/calls/").json()["results"]
    return next((c["state"] for c in calls if c.get("providerCallId") == call_sid), None)


def test_sigterm_drains_new_work_away_applies_existing_calls_and_exits_after_the_stream(
    server: TwilioServer,
) -> None:
    token = json.loads(server.manage("voicecall", "token", "create", "--name", "e2e").stdout)
    api = httpx.Client(
        base_url=server.base, headers={"Authorization": f"Bearer {token['token']}"}, timeout=10
    )
    assert httpx.get(f"{server.base}/readyz", timeout=5).status_code == 200
    existing = "CA" + "1" * 32
    answer = server.incoming(existing)
    assert answer.status_code == 200 and b"<Stream" in answer.content
    with server.stream():  # the carrier's media socket for that call
        server.sigterm()

        _wait(lambda: _draining(server))
        # A new media stream goes elsewhere: 503 at the upgrade.
        with pytest.raises(InvalidStatus) as refused, server.stream():
            pass
        assert refused.value.response.status_code == 503
        # A new caller goes elsewhere: 503 (Twilio then requests the number's fallback URL).
        assert server.incoming("CA" + "2" * 32).status_code == 503
        # The call it already holds is still served: the caller hanging up is applied.
        assert server.hung_up(existing).status_code == 200
        assert _call_state(server, api, existing) == "completed"
        assert _call_state(server, api, "CA" + "2" * 32) is None
        # The live stream keeps the process up...
        assert server.alive()
    # ...and once it has ended, the process exits by itself.
    assert server.exited() == 0
    assert server.stream_leases() == 0
    log = server.log.read_text()
    assert "draining" in log and "drain over" in log


def test_a_second_sigterm_exits_at_once_with_the_stream_still_open(
    server: TwilioServer,
) -> None:
    with server.stream() as stream:
        server.sigterm()
        _wait(lambda: _draining(server))
        assert server.alive()

        server.sigterm()

        assert server.exited() == 0
        with pytest.raises(ConnectionClosed):
            stream.recv(timeout=10)
    # Its socket's lease went with it, not 30 s later.
    assert server.stream_leases() == 0
    assert "exiting at once; 1 live stream(s) cut" in server.log.read_text()


def test_streams_still_live_after_drain_seconds_do_not_hold_the_process(
    short_drain: TwilioServer,
) -> None:
    with short_drain.stream() as stream:
        short_drain.sigterm()

        assert short_drain.exited() == 0
        with pytest.raises(ConnectionClosed):
            stream.recv(timeout=10)
    assert short_drain.stream_leases() == 0
    assert "drain over (1 live stream(s) left)" in short_drain.log.read_text()

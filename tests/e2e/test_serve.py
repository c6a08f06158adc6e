"""End to end as a user runs it: migrate, `voicecall serve` in a subprocess, HTTP and the CLI.

The mock carrier simulates a remote carrier here: it calls the server's webhook back over
loopback HTTP (ringing, answered, caller replies), so the whole pipeline is exercised.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.deployment import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.e2e]


class Server:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = tmp / "voicecall.json5"
        config.write_text(f"""{{
          // a plugin config in the seed's shape (JSON5)
          provider: "mock",
          toNumber: "+15555550123",
          maxConcurrentCalls: 3,
          serve: {{ port: {self.port} }},
          outbound: {{ notifyHangupDelaySec: 1 }},
          mock: {{ ringDelayMs: 100, answerDelayMs: 300, replyDelayMs: 300 }},
        }}""")
        self.env = {
            **{
                k: v
                for k, v in os.environ.items()
                if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")
            },
            "VOICECALL_CONFIG": str(config),
            "VOICECALL_DATA_DIR": str(tmp / "data"),
            "VOICECALL_SWEEP_INTERVAL_SECONDS": "0.2",
            "VOICECALL_DOTENV": "off",
            "DJANGO_SUPERUSER_PASSWORD": "e2e-password",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tmp / "server.log"

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{args} failed: {result.stderr}")
        return result

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "voicecall", "serve"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError(f"server did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def serving(srv: Server) -> Iterator[Server]:
    """Migrate, start, yield the running server, stop it (for fixtures: `yield from`)."""
    srv.manage("migrate", "--verbosity", "0")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    yield from serving(Server(tmp_path))


def _token(srv: Server) -> str:
    out = srv.manage("voicecall", "token", "create", "--name", "e2e").stdout
    return str(json.loads(out)["token"])


def _wait(predicate: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not reached in time")


def test_a_notify_call_placed_with_the_cli_runs_its_whole_lifecycle(server: Server) -> None:
    out = server.manage(
        "voicecall", "call", "--to", "+15555550123", "--message", "Hello", "--mode", "notify"
    ).stdout
    call_id = json.loads(out)["callId"]
    api = httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {_token(server)}"})

    def ended() -> dict[str, Any] | None:
        call = api.get(f"/api/calls/{call_id}/").json()
        return call if call["state"] == "hangup-bot" else None

    call = _wait(ended)
    assert call["answeredAt"] and call["endedAt"]
    events = [e["type"] for e in api.get(f"/api/calls/{call_id}/events/").json()["results"]]
    assert events[:2] == ["call.ringing", "call.answered"]
    transcript = api.get(f"/api/calls/{call_id}/transcript/").json()["results"]
    assert [(t["speaker"], t["text"]) for t in transcript] == [("bot", "Hello")]
    status = json.loads(server.manage("voicecall", "status", "--call-id", call_id).stdout)
    assert status["found"] and status["call"]["state"] == "hangup-bot"


def test_a_conversation_turn_through_rpc_and_the_cli_continue(server: Server) -> None:
    api = httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {_token(server)}"})
    reply = api.post(
        "/api/rpc",
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "voicecall.initiate",
            "params": {"message": "Hi, it's the clinic.", "mode": "conversation"},
        },
    ).json()
    call_id = reply["result"]["callId"]
    # The simulated caller answers the greeting first; then one explicit turn.
    _wait(
        lambda: [
            t
            for t in api.get(f"/api/calls/{call_id}/transcript/").json()["results"]
            if t["speaker"] == "user"
        ]
    )
    out = server.manage(
        "voicecall", "continue", "--call-id", call_id, "--message", "Does 3pm work?"
    ).stdout
    assert json.loads(out) == {"success": True, "transcript": "No, thank you. Goodbye."}
    json.loads(server.manage("voicecall", "end", "--call-id", call_id).stdout)
    detail = api.get(f"/api/calls/{call_id}/").json()
    assert detail["state"] == "hangup-bot"
    assert detail["metadata"]["turnCount"] == 1


def test_the_admin_shows_the_call_with_events_and_transcript(server: Server) -> None:
    server.manage(
        "createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.com"
    )
    call_id = json.loads(
        server.manage("voicecall", "call", "--message", "Admin check", "--mode", "notify").stdout
    )["callId"]
    admin = httpx.Client(base_url=server.base, follow_redirects=True)
    login = admin.get("/admin/login/")
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
    admin.post(
        "/admin/login/?next=/admin/",
        data={"csrfmiddlewaretoken": csrf, "username": "admin", "password": "e2e-password"},
    )

    def page() -> str | None:
        listing = admin.get("/admin/calls/call/", params={"q": call_id}).text
        match = re.search(r'href="(/admin/calls/call/\d+/change/)', listing)
        if not match:
            return None
        html = admin.get(match.group(1)).text
        return html if "call.answered" in html else None

    html = _wait(page)
    assert "Admin check" in html
    assert call_id in html


def test_cli_commands_exit_non_zero_with_one_line_for_an_unknown_call(server: Server) -> None:
    result = server.manage("voicecall", "end", "--call-id", "no-such-call", check=False)
    assert result.returncode != 0
    assert "Call not found" in result.stderr

"""The kill -9 harness: a real `voicecall serve` subprocess, a fake Twilio REST API on
loopback, a database of the server's own, and signed Twilio webhooks.

Nothing Django-related is shared with the pytest process: rows are created and inspected
by scripts run in a `manage.py shell` with the server's environment, which answer in JSON.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx

from tests.fakes.signing import twilio_sign

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_URL = "https://voice.example.test/voice/webhook"
ACCOUNT_SID = "AC" + "5" * 32
AUTH_TOKEN = "f" * 32
OUR_NUMBER = "+15550100000"
CALLEE = "+15555550123"
# What a `manage.py shell -c` script prints before its JSON answer.
MARK = "@@crash-test@@ "


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    what: str = "condition",
    interval: float = 0.1,
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(interval)


# -- the carrier's REST API ------------------------------------------------------------------
@dataclass(frozen=True)
class ApiRequest:
    method: str
    path: str
    form: dict[str, list[str]]


@dataclass
class FakeTwilioApi:
    """Twilio's Call resource on loopback: records every request, answers as Twilio would."""

    requests: list[ApiRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    httpd: ThreadingHTTPServer | None = None

    @property
    def origin(self) -> str:
        assert self.httpd is not None
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                path = urlsplit(self.path).path
                with api.lock:
                    api.requests.append(
                        ApiRequest(self.command, path, parse_qs(body, keep_blank_values=True))
                    )
                status, answer = api.answer(self.command, path)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, name="fake-twilio", daemon=True).start()

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()

    def answer(self, method: str, path: str) -> tuple[int, dict[str, Any]]:
        prefix = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/"
        if path.startswith(prefix) and path.endswith(".json") and method in ("GET", "POST"):
            return 200, {"sid": path[len(prefix) : -len(".json")], "status": "in-progress"}
        return 404, {
            "code": 20404,
            "message": "The requested resource was not found",
            "status": 404,
        }

    def updates(self, call_sid: str) -> list[ApiRequest]:
        """POSTs to the call's resource: the REST commands the server sent for it."""
        path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{call_sid}.json"
        with self.lock:
            return [r for r in self.requests if r.method == "POST" and r.path == path]


# -- the server's database -------------------------------------------------------------------
_database_numbers = itertools.count(1)


class PostgresDatabase:
    """A fresh database next to the one the test process was given, dropped at the end."""

    def __init__(self, url: str) -> None:
        import psycopg
        from psycopg.conninfo import make_conninfo

        self._psycopg = psycopg
        self._admin = make_conninfo(url, dbname="postgres")
        self.name = f"voicecall_crash_{os.getpid()}_{next(_database_numbers)}"
        parts = urlsplit(url)
        self.url = urlunsplit((parts.scheme, parts.netloc, "/" + self.name, parts.query, ""))
        self._execute(f'CREATE DATABASE "{self.name}"')

    def _execute(self, sql: str) -> None:
        with self._psycopg.connect(self._admin, autocommit=True) as conn:
            conn.execute(sql)

    def drop(self) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def is_postgres(url: str | None) -> bool:
    return bool(url) and urlsplit(url or "").scheme in ("postgres", "postgresql", "pgsql")


# -- the server's rows -------------------------------------------------------------------------
# Runs inside `manage.py shell -c`: migrate, then one script per stdin line (a JSON string),
# each answering with one marked JSON line; connections are closed between scripts.
_INSPECTOR_LOOP = f"""
import json, sys, traceback
from django.core.management import call_command
from django.db import connections

def answer(value):
    print({MARK!r} + json.dumps(value, default=str), flush=True)

call_command("migrate", verbosity=0)
connections.close_all()
answer({{"ok": "migrated"}})
for line in sys.stdin:
    try:
        exec(json.loads(line), {{"emit": lambda value: answer({{"ok": value}})}})
    except Exception:
        answer({{"error": traceback.format_exc()}})
    finally:
        connections.close_all()
"""


class Inspector:
    """A `manage.py shell` with the server's environment that runs scripts sent to it."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "shell", "-c", _INSPECTOR_LOOP],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("ab"),
            text=True,
        )
        self._answer()  # migrated

    def _answer(self) -> Any:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(MARK):
                reply = json.loads(line[len(MARK) :])
                if "error" in reply:
                    raise AssertionError(f"inspector script failed:\n{reply['error']}")
                return reply["ok"]
        raise AssertionError(
            f"inspector exited ({self.process.wait()}):\n"
            f"{self.log.read_text(errors='replace')[-4000:]}"
        )

    def run(self, code: str) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(code) + "\n")
        self.process.stdin.flush()
        return self._answer()

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


# -- the server ------------------------------------------------------------------------------
class Server:
    """`voicecall serve` on the twilio carrier; start, crash, restart, inspect its rows."""

    def __init__(self, tmp: Path, *, api_origin: str, database_url: str | None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = tmp / "voicecall.json5"
        config.write_text(f"""{{
          provider: "twilio",
          fromNumber: "{OUR_NUMBER}",
          publicUrl: "{PUBLIC_URL}",
          twilio: {{ accountSid: "{ACCOUNT_SID}", authToken: "{AUTH_TOKEN}",
                     apiBaseUrl: "{api_origin}" }},
          serve: {{ port: {self.port} }},
          staleCallReaperSeconds: 0,
          transcriptTimeoutMs: 15000,
          maxConcurrentCalls: 5,
        }}""")
        self.env = {
            **{
                k: v
                for k, v in os.environ.items()
                if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "VOICECALL_CRASH_AT")
            },
            "VOICECALL_CONFIG": str(config),
            "VOICECALL_DATA_DIR": str(tmp / "data"),
            "VOICECALL_SWEEP_INTERVAL_SECONDS": "0.2",
            "VOICECALL_DOTENV": "off",
        }
        if database_url:
            self.env["DATABASE_URL"] = database_url
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tmp / "server.log"
        self._starts = 0
        self._inspector: Inspector | None = None

    # -- processes ---------------------------------------------------------------------------
    def query(self, code: str) -> Any:
        """Run `code` against the server's database; it calls `emit(value)` once to answer.

        The scripts run in one `manage.py shell` per server (the inspector, started on first
        use: it migrates first), so each look costs no Django start-up.
        """
        if self._inspector is None:
            self._inspector = Inspector(self.env, self.log.with_name("inspector.log"))
        return self._inspector.run(code)

    def start(self, *, crash_at: str | None = None) -> None:
        env = dict(self.env)
        if crash_at:
            env["VOICECALL_CRASH_AT"] = crash_at
        self._starts += 1
        with self.log.open("ab") as log:
            log.write(f"\n===== start {self._starts} (crash_at={crash_at}) =====\n".encode())
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "voicecall", "serve"],
            cwd=ROOT,
            env=env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"server exited with {self.process.returncode}:\n{self.log_text()}"
                )
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError(f"server did not start:\n{self.log_text()}")

    def wait_exit(self, timeout: float = 10.0) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"server still running:\n{self.log_text()}") from None

    def stop(self) -> None:
        if self._inspector is not None:
            self._inspector.close()
            self._inspector = None
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""

    # -- the carrier's side ------------------------------------------------------------------
    def deliver(self, query: dict[str, str], form: dict[str, str]) -> httpx.Response:
        """POST a Twilio-signed form webhook; the signature covers publicUrl + the query."""
        query_string = urlencode(query)
        body = urlencode(form).encode()
        signature = twilio_sign(f"{PUBLIC_URL}?{query_string}", body, AUTH_TOKEN)
        return httpx.post(
            f"{self.base}/voice/webhook?{query_string}",
            content=body,
            timeout=15,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
            },
        )

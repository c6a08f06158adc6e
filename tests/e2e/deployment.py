"""A production-shaped deployment on one machine: several `voicecall serve` processes and a
Celery worker sharing one PostgreSQL database and one Redis, with every vendor on loopback.

docs/design.md, "8. Runtime modes and scale": a webhook, an RPC call and the media stream
of one call may land on three different processes. This module starts them; the tests in
tests/e2e/test_many_processes.py drive one call across them.

- PostgreSQL: a database of its own next to the one DATABASE_URL names, created here and
  dropped at the end (FORCE: a killed process may leave a connection behind).
- Redis: an empty DB of the server REDIS_URL names (`redis_claim`), emptied at the end
  (channel layer groups and the Celery queue of this deployment only).
- The carrier is Twilio, its REST API `FakeVendors` (tests/fakes/loopback.py); its
  webhooks are signed here for the public URL the servers hand out, and posted to
  whichever process a test names, as a load balancer would.

Nothing Django-related runs in the pytest process: the deployment is reached over HTTP, and
its database is read with psycopg.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx

from tests.fakes.loopback import FakeRealtimeStt, FakeVendors
from tests.fakes.signing import twilio_sign

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_URL = "https://voice.example.test/voice/webhook"
ACCOUNT_SID = "AC" + "7" * 32
AUTH_TOKEN = "e" * 32  # a fake auth token
API_TOKEN = "e2e-many-processes-api-token-0123456789"
OUR_NUMBER = "+15550100000"
CALLEE = "+15555550123"
# Redis DBs this test may claim (the first empty one), and its marker in the claimed one.
REDIS_DBS = (14, 15, 11, 10, 9)
REDIS_MARKER = "voicecall-e2e-many-processes"
MODEL_REPLY = "We are open until six."


def requirements() -> tuple[str, str] | str:
    """(DATABASE_URL, REDIS_URL) when they name PostgreSQL and Redis; else why not."""
    database = os.environ.get("DATABASE_URL", "")
    redis = os.environ.get("REDIS_URL", "")
    if urlsplit(database).scheme not in ("postgres", "postgresql", "pgsql"):
        return "needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL): .ci/run's second stage"
    if not redis:
        return "needs Redis (REDIS_URL) besides PostgreSQL: .ci/run's second stage"
    return database, redis


# Ports handed out by this process: the kernel may give a port that was just released
# again, and servers given ports before any of them binds would then collide.
_GIVEN_PORTS: set[int] = set()


def free_port() -> int:
    """A loopback port free now and not handed out before by this process."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.add(port)
            return port


def wait_for(
    predicate: Callable[[], Any], *, timeout: float = 30.0, what: str = "condition"
) -> Any:
    """The predicate's first truthy value, polling; AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not reached within {timeout:g}s")
        time.sleep(0.05)


# -- stores ----------------------------------------------------------------------------------
_numbers = itertools.count(1)


class PostgresDatabase:
    """A fresh database on the server DATABASE_URL names; `url` reaches it."""

    def __init__(self, url: str) -> None:
        from psycopg.conninfo import make_conninfo

        self._admin = make_conninfo(url, dbname="postgres")
        self.name = f"voicecall_e2e_many_{os.getpid()}_{next(_numbers)}"
        parts = urlsplit(url)
        self.url = urlunsplit((parts.scheme, parts.netloc, "/" + self.name, parts.query, ""))
        self._conninfo = make_conninfo(url, dbname=self.name)
        self._execute(f'CREATE DATABASE "{self.name}"')

    def _execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self._admin, autocommit=True) as conn:
            conn.execute(sql)

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Read the deployment's tables directly (no Django in the test process)."""
        import psycopg

        with psycopg.connect(self._conninfo, autocommit=True) as conn:
            return list(conn.execute(sql, params).fetchall())

    def drop(self) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def redis_url_for(base: str, db: int) -> str:
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, ""))


def redis_claim(base: str) -> str:
    """The URL of an empty Redis DB, claimed for this deployment with a marker key.

    Others on the machine use fixed DB numbers (CI 0, benches 12 and 13): a DB is taken only
    if nothing is in it, so no one else's channel groups or queues are flushed.
    """
    import redis

    for db in REDIS_DBS:
        url = redis_url_for(base, db)
        client = redis.Redis.from_url(url)
        try:
            if client.dbsize() or not client.set(REDIS_MARKER, str(os.getpid()), nx=True):
                continue
            if client.dbsize() == 1:  # only the marker: no one else writes here
                return url
            client.delete(REDIS_MARKER)
        finally:
            client.close()
    raise AssertionError(f"no empty Redis DB among {REDIS_DBS} on {base}")


def redis_release(url: str) -> None:
    """Empty the claimed DB (channel groups and queues of this deployment, the marker)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


# -- processes -------------------------------------------------------------------------------
class Process:
    """One subprocess of the deployment, logging to its own file."""

    def __init__(self, name: str, log: Path) -> None:
        self.name = name
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self, args: list[str], env: dict[str, str]) -> None:
        with self.log.open("ab") as out:
            out.write(f"\n===== {self.name}: {' '.join(args)} =====\n".encode())
        self.process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT
        )

    def launch(self, env: dict[str, str]) -> None:
        raise NotImplementedError

    def ready(self) -> bool:
        """Up and serving (AssertionError, with its log, if it exited)."""
        raise NotImplementedError

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise AssertionError(f"{self.name} exited:\n{self.log_text()}")

    def kill9(self) -> int:
        """SIGKILL, as the kernel's OOM killer or `kill -9` would; its exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        return self.process.wait(timeout=30)

    # How it is asked to stop: uvicorn's graceful shutdown (no drain); Celery's warm one.
    stop_signal = signal.SIGINT

    def signal_stop(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.send_signal(self.stop_signal)

    def stop(self) -> None:
        """Ask it to stop, then wait (SIGKILL if it does not within 20 s)."""
        if self.process is None:
            return
        self.signal_stop()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log_text(self, tail: int = 8000) -> str:
        return self.log.read_text(errors="replace")[-tail:] if self.log.exists() else ""


class ServeProcess(Process):
    """`manage.py voicecall serve --port P` (uvicorn: HTTP, websockets, the timer sweep)."""

    def __init__(self, name: str, log: Path) -> None:
        super().__init__(name, log)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"

    def launch(self, env: dict[str, str]) -> None:
        self.spawn(
            [sys.executable, "manage.py", "voicecall", "serve", "--port", str(self.port)], env
        )

    def ready(self) -> bool:
        self.check_alive()
        try:
            return httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stream_url(self, public_stream_url: str) -> str:
        """The carrier's media-stream URL, on this process instead of the public host."""
        return f"ws://127.0.0.1:{self.port}{urlsplit(public_stream_url).path}"


class CeleryWorker(Process):
    """`celery -A voicecall_project worker` (the automatic replies' tasks)."""

    def launch(self, env: dict[str, str]) -> None:
        self.spawn(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "voicecall_project",
                "worker",
                "--pool=solo",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--hostname=e2e-many@%h",
            ],
            {**env, "DJANGO_SETTINGS_MODULE": "voicecall_project.settings"},
        )

    def ready(self) -> bool:
        self.check_alive()
        return " ready." in self.log_text()

    stop_signal = signal.SIGTERM


# -- the deployment --------------------------------------------------------------------------
class Deployment:
    """Servers by name, a worker, the fake vendors, the database; the carrier's webhooks."""

    def __init__(self, tmp: Path, *, database_url: str, redis_url: str) -> None:
        self.tmp = tmp
        self.vendors = FakeVendors(account_sid=ACCOUNT_SID, reply=MODEL_REPLY)
        self.stt = FakeRealtimeStt()
        self.database: PostgresDatabase | None = None
        self.redis_url: str | None = None
        self._redis_base = redis_url
        self._database_url = database_url
        self.servers: dict[str, ServeProcess] = {}
        self.worker: CeleryWorker | None = None
        self.env: dict[str, str] = {}
        self._sequence = itertools.count(1)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, servers: tuple[str, ...]) -> None:
        self.vendors.start()
        self.stt.start()
        self.database = PostgresDatabase(self._database_url)
        self.redis_url = redis_claim(self._redis_base)
        config = self.tmp / "voicecall.json"
        config.write_text(json.dumps(self.config(), indent=2))
        self.env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith("VOICECALL_")
                and k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")
            },
            "DATABASE_URL": self.database.url,
            "REDIS_URL": self.redis_url,
            "VOICECALL_CONFIG": str(config),
            "VOICECALL_DATA_DIR": str(self.tmp / "data"),
            "VOICECALL_DOTENV": "off",
            "VOICECALL_API_TOKEN": API_TOKEN,
            # The timers' sweep runs in every server (no beat here), often.
            "VOICECALL_SWEEP_INTERVAL_SECONDS": "0.2",
            # The automatic replies' key (the chat model is FakeVendors).
            "OPENAI_API_KEY": "sk-e2e-test",
            "DATABASE_POOL_SIZE": "6",
        }
        self.manage("migrate", "--verbosity", "0")
        # All at once: each takes seconds to import Django and the app.
        for name in servers:
            self.servers[name] = ServeProcess(name, self.tmp / f"serve-{name}.log")
        self.worker = CeleryWorker("worker", self.tmp / "worker.log")
        processes: list[Process] = [*self.servers.values(), self.worker]
        for process in processes:
            process.launch(self.env)
        for process in processes:
            wait_for(process.ready, timeout=90, what=f"{process.name} ready")

    def config(self) -> dict[str, Any]:
        """The plugin config every process shares (short timers where they matter)."""
        return {
            "provider": "twilio",
            "fromNumber": OUR_NUMBER,
            "toNumber": CALLEE,
            # A public-looking URL (serve refuses a local one for a real carrier); the test
            # posts to 127.0.0.1 and signs for this URL.
            "publicUrl": PUBLIC_URL,
            "twilio": {
                "accountSid": ACCOUNT_SID,
                "authToken": AUTH_TOKEN,
                "apiBaseUrl": self.vendors.origin,
            },
            "maxConcurrentCalls": 5,
            "ringTimeoutMs": 20000,
            "transcriptTimeoutMs": 30000,
            "staleCallReaperSeconds": 60,
            "streaming": {
                "enabled": True,
                "providers": {"openai": {"apiKey": "sk-e2e-test", "baseUrl": self.stt.origin}},
            },
            "tts": {
                "provider": "elevenlabs",
                "providers": {
                    "elevenlabs": {
                        "apiKey": "el-e2e-test",
                        "baseUrl": self.vendors.origin,
                        "outputFormat": "ulaw_8000",
                    }
                },
            },
            "responseModel": "openai/gpt-4o-mini",
            "responseBaseUrl": f"{self.vendors.origin}/v1",
        }

    def processes(self) -> list[Process]:
        return [*self.servers.values(), *([self.worker] if self.worker else [])]

    def stop(self) -> None:
        processes = self.processes()
        for process in processes:  # all at once, then wait for each
            process.signal_stop()
        for process in processes:
            process.stop()
        self.stt.stop()
        self.vendors.stop()
        if self.database is not None:
            self.database.drop()
        if self.redis_url is not None:
            redis_release(self.redis_url)

    def logs(self) -> str:
        processes = self.processes()
        return "\n".join(f"--- {p.name} ---\n{p.log_text(4000)}" for p in processes)

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise AssertionError(f"manage.py {args} failed:\n{result.stderr}")
        return result.stdout

    # -- the API, on any process --------------------------------------------------------------
    def rpc(self, server: str, method: str, timeout: float = 60.0, **params: Any) -> Any:
        """One JSON-RPC call to `server`: the result, or AssertionError with the error."""
        reply = self.rpc_reply(server, method, timeout=timeout, **params)
        if "error" in reply:
            raise AssertionError(f"{method} on {server}: {reply['error']}")
        return reply["result"]

    def rpc_reply(self, server: str, method: str, timeout: float = 60.0, **params: Any) -> Any:
        response = httpx.post(
            f"{self.servers[server].base}/api/rpc",
            json={"jsonrpc": "2.0", "id": next(self._sequence), "method": method, "params": params},
            headers={"Authorization": f"Bearer {API_TOKEN}"},
            timeout=timeout,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def get(self, server: str, path: str) -> Any:
        response = httpx.get(
            f"{self.servers[server].base}{path}",
            headers={"Authorization": f"Bearer {API_TOKEN}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def transcript(self, server: str, call_id: str) -> list[tuple[str, str]]:
        results = self.get(server, f"/api/calls/{call_id}/transcript/?limit=500")["results"]
        return [(line["speaker"], line["text"]) for line in results]

    def call(self, server: str, call_id: str) -> dict[str, Any]:
        return dict(self.get(server, f"/api/calls/{call_id}/"))

    def live_stream_leases(self) -> int:
        """Media-stream sockets the deployment counts now (leases not yet expired)."""
        assert self.database is not None
        [(count,)] = self.database.rows(
            "SELECT count(*) FROM calls_streamlease WHERE expires_at > now()"
        )
        return int(count)

    # -- the carrier's webhooks, to any process -----------------------------------------------
    def webhook(self, server: str, url: str, form: dict[str, str]) -> httpx.Response:
        """POST `form` as Twilio does to `url` (a URL the service handed Twilio, signed as
        such), delivered to `server`."""
        parts = urlsplit(url)
        body = urlencode(form).encode()
        target = f"{self.servers[server].base}{parts.path}" + (
            f"?{parts.query}" if parts.query else ""
        )
        return httpx.post(
            target,
            content=body,
            timeout=30,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": twilio_sign(url, body, AUTH_TOKEN),
            },
        )

    def call_form(self, call_sid: str, status: str, **extra: str) -> dict[str, str]:
        """The fields of a webhook about an outbound API call (a TwiML fetch)."""
        return {
            "AccountSid": ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "CallSid": call_sid,
            "From": OUR_NUMBER,
            "To": CALLEE,
            "Direction": "outbound-api",
            "CallStatus": status,
            **extra,
        }

    def status_form(self, call_sid: str, status: str, **extra: str) -> dict[str, str]:
        """A status callback's fields (call-progress-events, numbered, timestamped)."""
        return self.call_form(
            call_sid,
            status,
            CallbackSource="call-progress-events",
            SequenceNumber=str(next(self._sequence)),
            Timestamp=formatdate(usegmt=True),
            **extra,
        )

"""Signed Twilio status callbacks per second, end to end, against a bare Django view.

One `voicecall serve` process (uvicorn); the load generator runs here, on the other core.
Each callback is distinct (new signature), so every one is verified (HMAC-SHA1 through
the SDK's RequestValidator), recorded as a replay key, deduplicated as a call event,
applied as a conditional state transition and persisted. The baseline is /healthz — a
minimal Django view behind Django's middleware — POSTed the same body in the same run.
The two sides alternate in rounds, so load from other processes on the machine falls on
both alike; the server's own CPU time per request (from /proc) is printed beside the rates.

    .venv/bin/python bench/webhook_throughput.py                  # SQLite
    .venv/bin/python bench/webhook_throughput.py --database postgres://postgres@127.0.0.1:5432/voicecall_bench
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "12345678901234567890123456789012"
SID = "AC00000000000000000000000000000001"
PUBLIC_ORIGIN = "https://bench.voicecall.example"
CONCURRENCY = 6  # below the webhook gate's 8 in-flight requests per peer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(tmp: Path, port: int, database: str | None) -> dict[str, str]:
    config = tmp / "bench.json"
    config.write_text(
        json.dumps(
            {
                "provider": "twilio",
                "fromNumber": "+15550001234",
                "maxConcurrentCalls": 100000,
                "staleCallReaperSeconds": 0,
                "twilio": {
                    "accountSid": SID,
                    "authToken": TOKEN,
                    "apiBaseUrl": "http://127.0.0.1:9",
                },
                # A public-looking URL (serve refuses a local one for real carriers); requests go to
                # 127.0.0.1 and are signed over this URL, as Twilio signs the URL it calls.
                "publicUrl": f"{PUBLIC_ORIGIN}/voice/webhook",
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        VOICECALL_CONFIG=str(config),
        VOICECALL_DATA_DIR=str(tmp),
        VOICECALL_SWEEP="off",
        VOICECALL_DOTENV="off",
        LOG_LEVEL="WARNING",
    )
    if database:
        env["DATABASE_URL"] = database
    return env


def manage(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def seed_calls(env: dict[str, str], count: int) -> list[tuple[str, str]]:
    script = (
        "import json\n"
        "from calls.models import Call\n"
        "Call.objects.all().delete()\n"
        f"calls = [Call(provider='twilio', provider_call_id='CA%032x' % i, direction='outbound',"
        f" mode='conversation', state='initiated', from_number='+15550001234',"
        f" to_number='+15555550123') for i in range({count})]\n"
        "Call.objects.bulk_create(calls, batch_size=500)\n"
        "print(json.dumps([[str(c.public_id), c.provider_call_id] for c in "
        "Call.objects.order_by('id')]))\n"
    )
    return [tuple(pair) for pair in json.loads(manage(env, "shell", "-v0", "-c", script))]


def callbacks(port: int, calls: list[tuple[str, str]]) -> list[tuple[str, bytes, str]]:
    """(url, body, signature) for ringing, answered and completed of every call."""
    validator = RequestValidator(TOKEN)
    requests = []
    for sequence, status in enumerate(("ringing", "in-progress", "completed")):
        for call_id, sid in calls:
            path = f"/voice/webhook?callId={call_id}&type=status"
            signed_url = f"{PUBLIC_ORIGIN}{path}"
            url = f"http://127.0.0.1:{port}{path}"
            params = {
                "AccountSid": SID,
                "CallSid": sid,
                "CallStatus": status,
                "Direction": "outbound-api",
                "From": "+15550001234",
                "To": "+15555550123",
                "SequenceNumber": str(sequence),
                "CallbackSource": "call-progress-events",
            }
            requests.append(
                (url, urlencode(params).encode(), validator.compute_signature(signed_url, params))
            )
    return requests


async def blast(items: list[tuple[str, bytes, str]]) -> tuple[float, dict[int, int]]:
    """Send every request with CONCURRENCY workers; returns (seconds taken, status counts)."""
    queue: asyncio.Queue[tuple[str, bytes, str]] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    statuses: dict[int, int] = {}
    headers = {"content-type": "application/x-www-form-urlencoded"}

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            url, body, signature = queue.get_nowait()
            response = await client.post(
                url, content=body, headers={**headers, "x-twilio-signature": signature}
            )
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
    return elapsed, statuses


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Side:
    """Requests, wall time, server CPU time and statuses accumulated over the rounds."""

    def __init__(self) -> None:
        self.requests = 0
        self.seconds = 0.0
        self.cpu = 0.0
        self.statuses: dict[int, int] = {}

    def add(self, pid: int, items: list[tuple[str, bytes, str]]) -> None:
        cpu = cpu_seconds(pid)
        elapsed, statuses = asyncio.run(blast(items))
        self.cpu += cpu_seconds(pid) - cpu
        self.requests += len(items)
        self.seconds += elapsed
        for status, count in statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + count

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu / self.requests


def rounds_of(
    items: list[tuple[str, bytes, str]], rounds: int
) -> list[list[tuple[str, bytes, str]]]:
    size = -(-len(items) // rounds)
    return [items[i : i + size] for i in range(0, len(items), size)]


def run(database: str | None, calls_count: int, log: Path | None, rounds: int) -> dict[str, Any]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = server_env(Path(tmp), port, database)
        manage(env, "migrate", "-v0")
        calls = seed_calls(env, calls_count)
        server = subprocess.Popen(
            [sys.executable, "manage.py", "voicecall", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb") if log else subprocess.DEVNULL,
        )
        try:
            wait_ready(port)
            work = callbacks(port, calls)
            bare = [(f"http://127.0.0.1:{port}/healthz", body, sig) for _, body, sig in work]
            asyncio.run(blast(bare[:200]))  # warm-up: imports, connections
            bare_side, hook_side = Side(), Side()
            # Callbacks keep their order (ringing, answered, completed) across the rounds.
            for bare_round, hook_round in zip(
                rounds_of(bare, rounds), rounds_of(work, rounds), strict=True
            ):
                bare_side.add(server.pid, bare_round)
                hook_side.add(server.pid, hook_round)
            states = manage(
                env,
                "shell",
                "-v0",
                "-c",
                "from calls.models import Call, CallEvent; "
                "print(Call.objects.filter(state='completed').count(), "
                "CallEvent.objects.count())",
            ).split()
        finally:
            server.terminate()
            server.wait(timeout=10)
    return {
        "bare": bare_side,
        "webhook": hook_side,
        "completed": int(states[0]),
        "events": int(states[1]),
    }


def wait_ready(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit("server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", help="DATABASE_URL (default: a fresh SQLite file)")
    parser.add_argument("--calls", type=int, default=400, help="calls x 3 callbacks each")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two sides")
    parser.add_argument("--server-log", type=Path, help="keep the server's stderr here")
    args = parser.parse_args()
    result = run(args.database, args.calls, args.server_log, args.rounds)
    label = "PostgreSQL" if args.database and args.database.startswith("postgres") else "SQLite"
    print(
        f"database: {label}; {args.calls * 3} requests per side in {args.rounds} rounds, "
        f"concurrency {CONCURRENCY}"
    )
    bare, hook = result["bare"], result["webhook"]
    for name, side in (
        ("bare Django view (/healthz):  ", bare),
        ("signed Twilio status callback:", hook),
    ):
        print(
            f"{name} {side.rate:8.1f} req/s  server CPU {side.cpu_ms:4.2f} ms/request  "
            f"{side.statuses}"
        )
    print(f"ratio webhook/bare: {hook.rate / bare.rate:.2f}")
    print(f"check: {result['completed']} calls completed, {result['events']} events stored")


if __name__ == "__main__":
    main()

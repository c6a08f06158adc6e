"""Shared by bench/speak_latency.py and bench/turn_overhead.py: the vendor fakes, the
servers, a Twilio media-stream client, percentiles.

The fakes run on the benchmark's own event loop (one aiohttp server), so the moment a fake
does something and the moment the stream client sees the result are read from one clock in
one process:

- ElevenLabs `POST /v1/text-to-speech/{voice}/stream?output_format=ulaw_8000`: answers at
  once, `tts_frames` 20 ms frames of a non-silent μ-law tone (the client tells them from the
  playback's keep-alive silence, all 0xFF);
- the OpenAI Realtime transcription socket `GET /v1/realtime?intent=transcription`: reads
  `session.update` and the caller's `input_audio_buffer.append`, and sends VAD events and
  final transcripts when the benchmark says so (`SttSocket`);
- OpenAI chat completions `POST /v1/chat/completions`: answers `{"spoken": reply}` at once
  (or after `chat_ms`);
- anything else (the Twilio REST API: startup asks about live calls): 200 with a JSON body
  saying the call is in progress.

Every request's arrival is stamped (`time.monotonic()`), so a benchmark can split a latency
at the vendor calls. The `voicecall serve` processes are subprocesses with a generated JSON
config, as in bench/webhook_throughput.py.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx
import websockets
from aiohttp import WSMsgType, web
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "12345678901234567890123456789012"  # Twilio auth token
SID = "AC00000000000000000000000000000001"
API_TOKEN = "bench-voice-api-token-0123456789"
PUBLIC_ORIGIN = "https://bench.voicecall.example"
FRAME_BYTES = 160
FRAME = 0.020
SILENCE_B64 = base64.b64encode(b"\xff" * FRAME_BYTES).decode()
CALLER_B64 = base64.b64encode(bytes((0x70 + i % 16) for i in range(FRAME_BYTES))).decode()
TONE = bytes((0x10 + (i * 7) % 0x60) for i in range(FRAME_BYTES))  # never 0xFF
EV_COMPLETED = "conversation.item.input_audio_transcription.completed"


# --- numbers ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest rank, as the server's latency summary computes it (p in 0..100)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))]


def spread(values: Sequence[float], ps: Iterable[float] = (50, 90, 99)) -> str:
    """'p50 p90 p99 max n' as a fixed-width cell (ms)."""
    cells = [f"{percentile(values, p):7.1f}" for p in ps]
    cells.append(f"{max(values, default=math.nan):7.1f}")
    return "".join(cells) + f"{len(values):6d}"


# --- processes -------------------------------------------------------------------------------


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


def server_env(
    tmp: Path,
    vendor_port: int,
    *,
    database: str | None,
    redis: str | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Environment of a `voicecall serve` (and `manage.py`) with a config whose every vendor
    is the fakes: Twilio carrier, a media stream per call, ElevenLabs TTS in 8 kHz μ-law
    (no resampling), OpenAI Realtime STT."""
    vendor = f"http://127.0.0.1:{vendor_port}"
    config: dict[str, Any] = {
        "provider": "twilio",
        "fromNumber": "+15550001234",
        "maxConcurrentCalls": 1000,
        "staleCallReaperSeconds": 0,
        "twilio": {"accountSid": SID, "authToken": TOKEN, "apiBaseUrl": vendor},
        # serve refuses a local public URL for a real carrier; nothing calls it here.
        "publicUrl": f"{PUBLIC_ORIGIN}/voice/webhook",
        "streaming": {
            "enabled": True,
            "providers": {"openai": {"apiKey": "sk-bench", "baseUrl": vendor}},
        },
        "tts": {
            "provider": "elevenlabs",
            "providers": {
                "elevenlabs": {"apiKey": "bench", "baseUrl": vendor, "outputFormat": "ulaw_8000"}
            },
        },
        **(extra or {}),
    }
    path = tmp / "bench.json"
    path.write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        VOICECALL_CONFIG=str(path),
        VOICECALL_DATA_DIR=str(tmp),
        VOICECALL_SWEEP="off",
        VOICECALL_DOTENV="off",
        VOICECALL_API_TOKEN=API_TOKEN,
        LOG_LEVEL="WARNING",
    )
    if database:
        env["DATABASE_URL"] = database
    if redis:
        env["REDIS_URL"] = redis
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


def fresh_database(url: str) -> None:
    """Drop and create the PostgreSQL database of `url`: a run starts from nothing."""
    import psycopg

    name = url.rsplit("/", 1)[1].split("?", 1)[0]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def flush_redis(url: str) -> None:
    """FLUSHDB the Redis database of `url` (its own number: other runs use others)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def seed_call(env: dict[str, str], index: int = 0) -> tuple[str, str, str]:
    """An answered outbound conversation call waiting for its stream (no greeting owed):
    (callId, CallSid, single-use stream token)."""
    sid, token = f"CA{index:032x}", f"bench-stream-token-{index:08d}"
    script = (
        "from calls.models import Call\n"
        f"c = Call.objects.create(provider='twilio', provider_call_id={sid!r},"
        " direction='outbound', mode='conversation', state='answered',"
        f" from_number='+15550001234', to_number='+15555550123', stream_token={token!r})\n"
        "print(c.public_id)\n"
    )
    return manage(env, "shell", "-v0", "-c", script).strip(), sid, token


def spawn(args: list[str], env: dict[str, str], log: Path | None) -> subprocess.Popen[bytes]:
    """A process of the project, its stderr appended to `log` (else dropped)."""
    if log is None:
        return subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    with log.open("ab") as stderr:  # the child has its own copy
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)


def start_server(env: dict[str, str], port: int, log: Path | None) -> subprocess.Popen[bytes]:
    return spawn([sys.executable, "manage.py", "voicecall", "serve", "--port", str(port)], env, log)


def stop(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def wait_ready(port: int, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(timeout=1) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"server on port {port} exited with {proc.returncode}")
            try:
                if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit(f"server on port {port} did not start")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads, and of its children (a Celery worker's
    pool); Linux /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:  # gone
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(int(child)) for child in children)


def host_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values[:8]) - idle, sum(values[:8])


class Load:
    """CPU over a stretch of time, in % of one core: the servers', this benchmark's (client
    and fakes) and everybody else's on the machine — a run measured while others were busy
    says little."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self.own = time.process_time()
        self.host = host_busy()
        self.wall = time.monotonic()

    def shares(self) -> dict[str, float]:
        wall = time.monotonic() - self.wall
        shares = {
            name: (cpu_seconds(pid) - self.cpu[name]) / wall * 100
            for name, pid in self.pids.items()
        }
        shares["bench"] = (time.process_time() - self.own) / wall * 100
        busy, total = host_busy()
        host = (busy - self.host[0]) / max(1, total - self.host[1]) * 100 * (os.cpu_count() or 1)
        shares["others"] = max(0.0, host - sum(shares.values()))
        return shares

    def line(self) -> str:
        cells = ", ".join(f"{name} {share:.0f}%" for name, share in self.shares().items())
        return f"CPU (% of one core, {os.cpu_count()} cores): {cells}"


def api_client() -> httpx.AsyncClient:
    """One keep-alive connection per server, as a gateway would hold."""
    return httpx.AsyncClient(
        headers={"authorization": f"Bearer {API_TOKEN}"},
        limits=httpx.Limits(max_connections=4),
        timeout=30,
    )


def py_spy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Start sampling `pid` for `seconds`, idle threads included (latency, not only CPU):
    a flame graph when `out` ends in .svg, else collapsed stacks. Wait for it with
    `await asyncio.to_thread(proc.wait)`."""
    exe = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen(
        [
            str(exe if exe.exists() else "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, int(seconds))),
            "--rate",
            "500",
            "--nonblocking",
            "--threads",
            "--idle",
            "--format",
            "flamegraph" if out.suffix == ".svg" else "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# --- vendor fakes ----------------------------------------------------------------------------


class SttSocket:
    """One transcription socket the server opened (one per attached stream)."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.appends = 0
        self.items = 0

    async def speech_started(self) -> None:
        self.items += 1
        await self._send(
            {
                "type": "input_audio_buffer.speech_started",
                "audio_start_ms": 0,
                "item_id": f"item_{self.items}",
            }
        )

    async def final(self, text: str) -> tuple[float, float]:
        """The caller stopped (server VAD) and their words, back to back as the service
        sends them once transcription is instant; (monotonic, wall) when the final went."""
        item = f"item_{self.items}"
        await self._send(
            {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 0, "item_id": item}
        )
        event = json.dumps(
            {"type": EV_COMPLETED, "item_id": item, "content_index": 0, "transcript": text}
        )
        sent = time.monotonic(), time.time()
        await self.ws.send_str(event)
        return sent

    async def _send(self, event: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(event))


class Vendors:
    """The fakes, on the running loop. `tts_frames`: audio per TTS request; `reply`: what
    the chat model says."""

    def __init__(
        self, *, tts_frames: int = 5, reply: str = "We are open until six.", chat_ms: float = 0
    ) -> None:
        self.tts_frames = tts_frames
        self.reply = reply
        self.chat_ms = chat_ms  # the chat model's thinking time before it answers
        self.port = 0
        self.sockets: asyncio.Queue[SttSocket] = asyncio.Queue()
        self.tts_at: list[float] = []  # monotonic arrival of every TTS request
        self.chat_at: list[float] = []  # ... and of every chat request
        self.chat_done_at: list[float] = []  # ... and when the model's answer left
        self.counts: collections.Counter[str] = collections.Counter()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=1 << 20)
        app.router.add_post("/v1/text-to-speech/{voice}/stream", self._tts)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/realtime", self._realtime)
        app.router.add_route("*", "/{tail:.*}", self._carrier)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _tts(self, request: web.Request) -> web.Response:
        self.tts_at.append(time.monotonic())
        self.counts["tts"] += 1
        if request.query.get("output_format") != "ulaw_8000":
            return web.json_response({"detail": "bench fake serves ulaw_8000 only"}, status=400)
        await request.read()
        return web.Response(body=TONE * self.tts_frames, content_type="application/octet-stream")

    async def _chat(self, request: web.Request) -> web.Response:
        self.chat_at.append(time.monotonic())
        self.counts["chat"] += 1
        await request.read()
        if self.chat_ms:
            await asyncio.sleep(self.chat_ms / 1000)
        self.chat_done_at.append(time.monotonic())
        content = json.dumps({"spoken": self.reply})
        return web.json_response(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": 0,
                "model": "bench",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": content},
                    }
                ],
            }
        )

    async def _realtime(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=1 << 20)
        await ws.prepare(request)
        self.counts["stt_sockets"] += 1
        await ws.send_str(json.dumps({"type": "session.created", "event_id": "event_0"}))
        stt = SttSocket(ws)
        self.sockets.put_nowait(stt)
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            if message.data.startswith('{"type": "input_audio_buffer.append"'):
                stt.appends += 1
            else:
                self.counts["stt_other"] += 1
        return ws

    async def _carrier(self, request: web.Request) -> web.Response:
        self.counts["carrier"] += 1
        form = await request.post() if request.method == "POST" else {}
        sid = request.match_info["tail"].rpartition("/")[2].removesuffix(".json")
        return web.json_response({"sid": sid, "status": str(form.get("Status") or "in-progress")})

    def after(self, stamps: list[float], t: float) -> float:
        """The first stamp at or after `t` (nan when none)."""
        return next((s for s in stamps if s >= t), math.nan)


# --- the carrier's side of a media stream ----------------------------------------------------


class TwilioStream:
    """One Twilio media stream as the carrier plays it: `connected`, `start` with the call's
    token, caller audio at 50 frames a second (optional), every mark echoed as it arrives.

    `events` gets ("audio", monotonic, wall) at the first non-silent frame of each utterance
    and ("mark", monotonic, wall) at its mark; silence and clears are counted.
    """

    def __init__(self, url: str, call_sid: str, token: str, *, caller_audio: bool) -> None:
        self.url = url
        self.call_sid = call_sid
        self.token = token
        self.caller_audio = caller_audio
        self.stream_sid = "MZ" + call_sid[2:]
        self.events: asyncio.Queue[tuple[str, float, float]] = asyncio.Queue()
        self.speaking = False
        self.frames = 0
        self.silence = 0
        self.clears = 0
        self.ws: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    async def open(self) -> None:
        self.ws = await websockets.connect(self.url, max_size=1 << 20, compression=None)
        await self.ws.send('{"event":"connected","protocol":"Call","version":"1.0.0"}')
        await self.ws.send(
            json.dumps(
                {
                    "event": "start",
                    "sequenceNumber": "1",
                    "streamSid": self.stream_sid,
                    "start": {
                        "streamSid": self.stream_sid,
                        "accountSid": SID,
                        "callSid": self.call_sid,
                        "tracks": ["inbound"],
                        "customParameters": {"token": self.token},
                        "mediaFormat": {
                            "encoding": "audio/x-mulaw",
                            "sampleRate": 8000,
                            "channels": 1,
                        },
                    },
                }
            )
        )
        self._tasks.append(asyncio.create_task(self._read()))
        if self.caller_audio:
            self._tasks.append(asyncio.create_task(self._send_caller_audio()))

    def drain(self) -> None:
        while not self.events.empty():
            self.events.get_nowait()

    async def next(self, kind: str, timeout: float) -> tuple[float, float]:
        """(monotonic, wall) of the next event of `kind` (earlier ones of other kinds are
        dropped); TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            while True:
                got, mono, wall = await self.events.get()
                if got == kind:
                    return mono, wall

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                mono, wall = time.monotonic(), time.time()
                event = json.loads(message)
                kind = event.get("event")
                if kind == "media":
                    if event["media"]["payload"] == SILENCE_B64:
                        self.silence += 1
                        continue
                    self.frames += 1
                    if not self.speaking:
                        self.speaking = True
                        self.events.put_nowait(("audio", mono, wall))
                elif kind == "mark":
                    # Echoed at once: the frames before it came paced, so they have played.
                    self.speaking = False
                    name = event["mark"]["name"]
                    echo = {"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}}
                    await self.ws.send(json.dumps(echo))
                    self.events.put_nowait(("mark", mono, wall))
                elif kind == "clear":
                    self.speaking = False
                    self.clears += 1
        except ConnectionClosed:
            pass

    async def _send_caller_audio(self) -> None:
        due = time.monotonic()
        seq = 2
        try:
            while True:
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self.ws.send(
                    f'{{"event":"media","sequenceNumber":"{seq}","streamSid":"{self.stream_sid}",'
                    f'"media":{{"track":"inbound","chunk":"{seq - 1}",'
                    f'"timestamp":"{(seq - 2) * 20}","payload":"{CALLER_B64}"}}}}'
                )
                seq += 1
                due += FRAME
        except ConnectionClosed:
            pass

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.ws is not None:
            try:
                await self.ws.send(json.dumps({"event": "stop", "streamSid": self.stream_sid}))
                await self.ws.close()
            except ConnectionClosed:
                pass


def use_uvloop() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        pass

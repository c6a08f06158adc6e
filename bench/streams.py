"""Concurrent full-duplex Twilio media streams against one `voicecall serve` process.

One `voicecall serve` process (uvicorn) on a fresh SQLite file per level; the speech vendors
are faked on loopback by bench/stream_fakes.py in a subprocess (ElevenLabs TTS answering
8 kHz μ-law, the OpenAI Realtime transcription socket, the Twilio REST API); the load
generator runs here. Each of N calls is seeded ready for its stream (answered, a single-use
stream token, a greeting); each client opens `/voice/stream`, sends Twilio's `connected` and
`start`, then 50 caller `media` frames a second (forwarded by the server to the STT socket),
and echoes every `mark` once the audio before it would have played. The bot speaks all the
time: the greeting, then one `voicecall.speak` over JSON-RPC per utterance, two queued ahead
(`--speech greeting`: one greeting longer than the run, no RPC at all).

Measured per level over `--seconds` of steady state: server CPU (% of one core); the
lateness of every outbound audio frame against its utterance's 20 ms grid, arrival −
(origin + k·20 ms), the origin being the first frame's arrival or, if that one came late,
the earliest arrival − k·20 ms of any of its frames; frames lost (a grid slot of the window
whose frame had not come 2 s after the window, every slot of a stream that heard nothing in
it); talk (audio frames received / N·50 per
second); streams the server closed; the speak RPC's latency. Frames carry their utterance
and index (the TTS fake tags them), so gaps and failed utterances show without marks.
The baseline, in the same run at the same N, is bench/stream_fakes.py's `pacer`: a bare
`websockets` server sending the same paced frames and marks; its lateness is the machine's
and this load generator's share. `others` is the CPU the rest of the machine used
meanwhile (% of one core): on a shared machine, a level measured while others were busy
says little.

    .venv/bin/python bench/streams.py                          # N = 25 50 100 150 200
    .venv/bin/python bench/streams.py --streams 100 --seconds 30 --speech greeting
    .venv/bin/python bench/streams.py --streams 100 --no-baseline --profile 100
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import voice_kit as kit
import websockets
from voice_kit import (
    API_TOKEN,
    ROOT,
    SID,
    cpu_seconds,
    free_port,
    fresh_database,
    host_busy,
    manage,
    percentile,
    stop,
)
from websockets.exceptions import ConnectionClosed, InvalidStatus

FAKES = Path(__file__).with_name("stream_fakes.py")
FRAME = 0.020  # seconds per μ-law frame
TARGET_P99_MS = 20.0
DRAIN = 2.0  # a frame not in 2 s after the window counts as lost
WARMUP = 3.0
CONNECTS_AT_ONCE = 8
RPC_CONNECTIONS = 16
SPEAK_AHEAD = 2  # utterances queued behind the one playing
SILENCE_B64 = base64.b64encode(b"\xff" * 160).decode()
CALLER_B64 = base64.b64encode(bytes((0x70 + i % 16) for i in range(160))).decode()

Call = tuple[str, str, str, int]  # callId, CallSid, stream token, greeting frames


def untag(frame: bytes) -> tuple[int, int]:
    """(utterance, index) of a frame tagged by bench/stream_fakes.py (`tag`)."""
    return frame[0] | frame[1] << 7 | frame[2] << 14, frame[3] | frame[4] << 7 | frame[5] << 14


def utterance_text(seconds: float) -> str:
    # bench/stream_fakes.py makes the audio as long as the text says.
    return f"Benchmark utterance of {seconds:.2f} seconds."


def server_env(
    tmp: Path, vendor_port: int, tts: str, database: str | None, redis: str | None
) -> dict[str, str]:
    """voice_kit's server, with no admission limit in the way and the chosen TTS vendor."""
    vendor = f"http://127.0.0.1:{vendor_port}"
    if tts == "elevenlabs":
        # 8 kHz μ-law straight from the vendor: no resampling on the server.
        providers = {"elevenlabs": {"apiKey": "bench", "baseUrl": vendor}}
    else:
        # 24 kHz PCM, resampled and encoded by the server.
        providers = {"openai": {"apiKey": "sk-bench", "baseUrl": vendor}}
    extra = {
        "maxConcurrentCalls": 100000,
        "streaming": {
            "enabled": True,
            "maxConnections": 100000,
            "maxPendingConnections": 100000,
            "maxPendingConnectionsPerIp": 100000,
            "providers": {"openai": {"apiKey": "sk-bench", "baseUrl": vendor}},
        },
        "tts": {"provider": tts, "providers": providers},
    }
    return kit.server_env(tmp, vendor_port, database=database, redis=redis, extra=extra)


def seed_calls(env: dict[str, str], greetings: list[float]) -> list[Call]:
    """One answered Twilio call per greeting, each waiting for its stream."""
    rows = [
        [f"CA{i:032x}", f"bench-token-{i:08d}", utterance_text(g)] for i, g in enumerate(greetings)
    ]
    script = (
        "import json, sys\n"
        "from calls.models import Call\n"
        f"rows = json.loads({json.dumps(rows)!r})\n"
        "Call.objects.bulk_create([Call(provider='twilio', provider_call_id=sid,"
        " direction='outbound', mode='conversation', state='answered',"
        " from_number='+15550001234', to_number='+15555550123', stream_token=token,"
        " metadata={'initialMessage': text}) for sid, token, text in rows], batch_size=500)\n"
        "print(json.dumps([[str(c.public_id), c.provider_call_id, c.stream_token] for c in "
        "Call.objects.order_by('id')]))\n"
    )
    seeded = json.loads(manage(env, "shell", "-v0", "-c", script))
    return [(c, s, t, round(g / FRAME)) for (c, s, t), g in zip(seeded, greetings, strict=True)]


def wait_line(proc: subprocess.Popen[str], what: str) -> None:
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit(f"{what} did not start")


def wait_http(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer")


@dataclass
class Utterance:
    """One utterance as received. Its grid is anchored at its earliest frame: the smallest
    arrival − k·20 ms over its frames (the first frame's arrival, unless that one came late:
    the server never sends a frame before its slot, so no frame can be early)."""

    t0: float  # the grid's origin so far
    length: int  # frames it should have
    tag: int = -1  # the TTS request it came from (-1: untagged, told apart by marks)
    ks: list[int] = field(default_factory=list)  # frame indexes received
    marked: bool = False
    offsets: list[float] = field(default_factory=list)  # arrival − k·20 ms, frames in window

    def lateness_ms(self) -> list[float]:
        return [(offset - self.t0) * 1000 for offset in self.offsets]


@dataclass
class Run:
    """One load run (a level against the service or the baseline) and what it measured."""

    n: int
    utterance_frames: int  # frames of every utterance after the greeting
    tagged: bool = True  # frames carry (utterance, index); else marks delimit utterances
    tolerance: int = 0  # frames a resampled utterance may be short
    endless: bool = False  # `--speech greeting`: the one utterance must last the window out
    ramp: float = math.nan  # seconds until every stream was up
    window: tuple[float, float] = (math.inf, math.inf)
    send_lag_ms: list[float] = field(default_factory=list)
    rpc_ms: list[float] = field(default_factory=list)
    rpc_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    utterances: list[Utterance] = field(default_factory=list)
    window_frames: int = 0
    silence_frames: int = 0
    clears: int = 0
    cut: int = 0  # utterances that stopped before their length, with no mark
    closes: collections.Counter[str] = field(default_factory=collections.Counter)
    failed: collections.Counter[str] = field(default_factory=collections.Counter)
    attached: int = 0
    silent: int = 0  # streams up but without one audio frame in the window
    stopping: bool = False

    def in_window(self, t: float) -> bool:
        return self.window[0] <= t < self.window[1]

    def lateness_ms(self) -> list[float]:
        return [late for u in self.utterances for late in u.lateness_ms()]

    def worst(self) -> tuple[float, int]:
        """(ms, utterance tag) of the latest frame."""
        return max(
            ((max(u.lateness_ms()), u.tag) for u in self.utterances if u.offsets),
            default=(math.nan, -1),
        )

    def lost(self) -> tuple[int, int]:
        """(frames lost, frames due): the grid slots of every utterance that fall in the
        window, and those whose frame had not come DRAIN seconds after the window (nor
        ever, if the utterance failed midway). A stream that was up but heard nothing in
        the whole window (its utterance never began) lost every slot of it, and so did a
        greeting (`endless`) that stopped before the window ended."""
        start, end = self.window
        lost = due = self.silent * round((end - start) / FRAME)
        for u in self.utterances:
            length = math.inf if self.endless else u.length
            if not self.endless and u.marked and len(u.ks) >= length - self.tolerance:
                length = len(u.ks)
            first = max(0, math.ceil((start - u.t0) / FRAME))
            stop = int(min(length, math.ceil((end - u.t0) / FRAME)))
            if stop <= first:
                continue
            due += stop - first
            lost += stop - first - sum(1 for k in u.ks if first <= k < stop)
        return lost, due


class Client:
    """One carrier media stream: caller audio out at 50 frames/s, bot audio in, marks echoed."""

    def __init__(
        self, run: Run, index: int, call: Call, server: int, speak: Speaker | None
    ) -> None:
        self.run = run
        self.index = index
        self.server = server  # which of the servers holds this stream
        self.call_id, self.call_sid, self.token, self.greeting_frames = call
        self.stream_sid = f"MZ{index:032x}"
        self.speak = speak
        self.utterance: Utterance | None = None
        self.utterances = 0
        self.attached = asyncio.Event()
        self.heard = 0  # audio frames (not silence) received in the window
        self.ws: Any = None

    def start_frame(self) -> str:
        return json.dumps(
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
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
            }
        )

    async def run_stream(self, url: str, gate: asyncio.Semaphore) -> None:
        try:
            async with gate:
                self.ws = await websockets.connect(
                    url, max_size=1 << 20, compression=None, open_timeout=30
                )
                await self.ws.send('{"event":"connected","protocol":"Call","version":"1.0.0"}')
                await self.ws.send(self.start_frame())
        except (OSError, TimeoutError, InvalidStatus, ConnectionClosed) as exc:
            self.run.failed[type(exc).__name__] += 1
            return
        sender = asyncio.create_task(self.send_caller_audio())
        try:
            async for message in self.ws:
                self.on_message(message, time.monotonic())
        except ConnectionClosed:
            pass
        finally:
            sender.cancel()
        if not self.run.stopping:
            code, reason = self.ws.close_code, self.ws.close_reason
            self.run.closes[f"{code} {reason}".strip() if code else "abnormal"] += 1

    async def send_caller_audio(self) -> None:
        clock = time.monotonic
        due = clock() + random.random() * FRAME  # spread the clients' phases
        seq = 2
        try:
            while True:
                delay = due - clock()
                if delay > 0:
                    await asyncio.sleep(delay)
                now = clock()
                if self.run.in_window(now):
                    self.run.send_lag_ms.append((now - due) * 1000)
                await self.ws.send(
                    f'{{"event":"media","sequenceNumber":"{seq}","streamSid":"{self.stream_sid}",'
                    f'"media":{{"track":"inbound","chunk":"{seq - 1}",'
                    f'"timestamp":"{(seq - 2) * 20}","payload":"{CALLER_B64}"}}}}'
                )
                seq += 1
                due += FRAME
        except ConnectionClosed:
            pass

    def on_message(self, message: str | bytes, now: float) -> None:
        event = json.loads(message)
        kind = event.get("event")
        if kind == "media":
            self.on_audio(event["media"]["payload"], now)
        elif kind == "mark":
            self.on_mark(event["mark"]["name"], now)
        elif kind == "clear":
            self.utterance = None
            if not self.run.stopping:  # a stream being stopped clears what it was saying
                self.run.clears += 1

    def on_audio(self, payload: str, now: float) -> None:
        run = self.run
        if not self.attached.is_set():
            self.attached.set()
            run.attached += 1
            if self.speak is not None:
                for _ in range(SPEAK_AHEAD - 1):
                    self.speak(self)
        if payload == SILENCE_B64:
            run.silence_frames += 1  # playback's keep-alive while synthesis starts
            return
        u = self.utterance
        if run.tagged:
            tag, k = untag(base64.b64decode(payload[:8]))
            if u is None or u.tag != tag:
                if u is not None and not u.marked:
                    run.cut += 1
                u = self.new_utterance(now - k * FRAME, tag)
        else:
            if u is None:
                u = self.new_utterance(now, -1)
            k = len(u.ks)
        u.ks.append(k)
        offset = now - k * FRAME
        u.t0 = min(u.t0, offset)
        if run.in_window(now):
            u.offsets.append(offset)
            run.window_frames += 1
            self.heard += 1

    def new_utterance(self, t0: float, tag: int) -> Utterance:
        length = self.greeting_frames if not self.utterances else self.run.utterance_frames
        self.utterances += 1
        u = self.utterance = Utterance(t0=t0, length=length, tag=tag)
        self.run.utterances.append(u)
        if self.speak is not None:
            self.speak(self)  # keep SPEAK_AHEAD utterances queued behind this one
        return u

    def on_mark(self, name: str, now: float) -> None:
        u = self.utterance
        played = now
        if u is not None:
            u.marked = True
            played = max(now, u.t0 + (max(u.ks, default=-1) + 1) * FRAME)
            if not self.run.tagged:  # the mark ends the utterance
                self.utterance = None
        asyncio.get_running_loop().call_later(played - now, self.echo, name)

    def echo(self, name: str) -> None:
        frame = {"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}}
        asyncio.ensure_future(self._send_quietly(json.dumps(frame)))

    async def _send_quietly(self, text: str) -> None:
        try:
            await self.ws.send(text)
        except ConnectionClosed:
            pass

    async def stop(self) -> None:
        if self.ws is None:
            return
        try:
            await self.ws.send(json.dumps({"event": "stop", "streamSid": self.stream_sid}))
            await self.ws.close()
        except ConnectionClosed:
            pass


class Speaker:
    """Keeps the bot talking: `voicecall.speak` over JSON-RPC, SPEAK_AHEAD utterances ahead."""

    def __init__(self, run: Run, bases: list[str], text: str) -> None:
        self.run = run
        self.text = text
        self.bases = bases  # speak to the process holding the stream
        self.http = httpx.AsyncClient(
            headers={"authorization": f"Bearer {API_TOKEN}"},
            limits=httpx.Limits(max_connections=RPC_CONNECTIONS),
            timeout=30,
        )
        self.tasks: set[asyncio.Task[None]] = set()

    def __call__(self, client: Client) -> None:
        if self.run.stopping:
            return
        task = asyncio.ensure_future(self.speak(self.bases[client.server], client.call_id))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def speak(self, base: str, call_id: str) -> None:
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "voicecall.speak",
            "params": {"callId": call_id, "message": self.text},
        }
        started = time.monotonic()
        try:
            response = await self.http.post(f"{base}/api/rpc", json=body)
            reply = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            self.run.rpc_errors[type(exc).__name__] += 1
            return
        error = reply.get("error") if isinstance(reply, dict) else "bad reply"
        if error:
            message = error.get("message") if isinstance(error, dict) else error
            self.run.rpc_errors[str(message)[:40]] += 1
        elif self.run.in_window(started):
            self.run.rpc_ms.append((time.monotonic() - started) * 1000)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.http.aclose()


async def drive(
    run: Run,
    urls: list[str],
    calls: list[Call],
    seconds: float,
    speaker: Speaker | None,
    pids: dict[str, int],
    on_window: Any = None,
) -> dict[str, float]:
    """Open the streams, wait for them all, measure `seconds` of steady state, close them."""
    gate = asyncio.Semaphore(CONNECTS_AT_ONCE)
    clients = [Client(run, i, call, i % len(urls), speaker) for i, call in enumerate(calls)]
    tasks = [asyncio.create_task(c.run_stream(urls[c.server], gate)) for c in clients]
    opened = time.monotonic()
    try:
        async with asyncio.timeout(ramp_allowance(run.n)):
            await asyncio.gather(*(c.attached.wait() for c in clients))
        run.ramp = time.monotonic() - opened
    except TimeoutError:
        pass
    await asyncio.sleep(WARMUP)
    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    own0 = time.process_time()
    host0 = host_busy()
    start = time.monotonic()
    run.window = (start, start + seconds)
    profiler = on_window() if on_window else None
    await asyncio.sleep(seconds)
    wall = time.monotonic() - start
    cpu = {name: (cpu_seconds(pid) - cpu0[name]) / wall * 100 for name, pid in pids.items()}
    cpu["client"] = (time.process_time() - own0) / wall * 100
    host1 = host_busy()
    host = (host1[0] - host0[0]) / max(1, host1[1] - host0[1]) * 100 * (os.cpu_count() or 1)
    cpu["others"] = max(0.0, host - sum(cpu.values()))  # other people's work on the machine
    await asyncio.sleep(DRAIN)  # late frames of the window still count
    run.silent = sum(1 for c in clients if c.attached.is_set() and not c.heard)
    run.stopping = True
    if speaker is not None:
        await speaker.close()
    await asyncio.gather(*(c.stop() for c in clients), return_exceptions=True)
    await asyncio.gather(*tasks, return_exceptions=True)
    if profiler is not None:
        await profiler
    return cpu


@dataclass
class Row:
    label: str
    n: int
    attached: int
    cpu: dict[str, float]
    p50: float
    p99: float
    worst: float
    lost: int
    due: int
    talk: float
    closes: int
    lag99: float
    rpc: str
    notes: str

    @property
    def meets(self) -> bool:
        ok = self.attached == self.n and self.lost == 0 and not self.closes
        return ok and self.p99 < TARGET_P99_MS


def summarize(label: str, run: Run, cpu: dict[str, float], seconds: float, verbose: bool) -> Row:
    lost, due = run.lost()
    expected = max(1, run.attached) * seconds / FRAME
    rpc = "-"
    if run.rpc_ms or run.rpc_errors:
        rpc = f"{percentile(run.rpc_ms, 50):.0f}/{percentile(run.rpc_ms, 99):.0f}"
    notes = []
    if run.failed:
        notes.append("connect failed " + ", ".join(f"{k}×{v}" for k, v in run.failed.items()))
    if run.closes:
        notes.append("closed " + ", ".join(f"{k}×{v}" for k, v in run.closes.items()))
    if run.rpc_errors:
        notes.append("rpc errors " + ", ".join(f"{k}×{v}" for k, v in run.rpc_errors.items()))
    if run.cut:
        notes.append(f"{run.cut} utterances cut short")
    if run.silent:
        notes.append(f"{run.silent} streams silent all window")
    if run.clears:
        notes.append(f"{run.clears} clears")
    if verbose:
        notes.append(f"up in {run.ramp:.1f} s")
        late, tag = run.worst()
        notes.append(f"worst frame {late:.0f} ms late, in utterance {tag}")
    lateness = run.lateness_ms()
    return Row(
        label=label,
        n=run.n,
        attached=run.attached,
        cpu=cpu,
        p50=percentile(lateness, 50),
        p99=percentile(lateness, 99),
        worst=max(lateness, default=math.nan),
        lost=lost,
        due=due,
        talk=run.window_frames / expected * 100,
        closes=sum(run.closes.values()),
        lag99=percentile(run.send_lag_ms, 99),
        rpc=rpc,
        notes="; ".join(notes),
    )


class Vendors:
    """bench/stream_fakes.py `vendors`, shared by every level."""

    def __init__(self, tts_latency_ms: int) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(FAKES),
                "vendors",
                "--port",
                str(self.port),
                "--tts-latency-ms",
                str(tts_latency_ms),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        wait_line(self.proc, "vendor fakes")

    def stats(self) -> dict[str, int]:
        return dict(httpx.get(f"http://127.0.0.1:{self.port}/stats", timeout=5).json())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def ramp_allowance(n: int) -> float:
    """Seconds the streams get to come up (200 took 5–15 s on 2 vCPU)."""
    return 5 + n / 20


def greetings(args: argparse.Namespace, n: int) -> list[float]:
    """Seconds of each call's greeting: spread over one utterance's length with RPC speech
    (so the streams' speak requests do not all come at once), else long enough to outlast
    the window when the ramp takes all its allowance. No longer than that: every greeting
    is synthesized in one TTS request within the server's 8 s budget (`tts.timeoutMs`),
    all of them at once, and a greeting that stops before the window ends loses frames."""
    if args.speech == "greeting":
        return [ramp_allowance(n) + WARMUP + args.seconds + DRAIN + 2] * n
    return [args.utterance_seconds * (0.1 + 0.9 * (i + 1) / n) for i in range(n)]


def baseline_level(args: argparse.Namespace, n: int, vendors: Vendors) -> Row:
    port = free_port()
    pacer = subprocess.Popen(
        [
            sys.executable,
            str(FAKES),
            "pacer",
            "--port",
            str(port),
            "--utterance-seconds",
            str(args.utterance_seconds),
            "--tts-latency-ms",
            str(args.tts_latency_ms),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        wait_line(pacer, "pacer")
        frames = round(args.utterance_seconds / FRAME)
        run = Run(n=n, utterance_frames=frames)
        calls = [(f"call-{i}", f"CA{i:032x}", "t", frames) for i in range(n)]
        pids = {"server": pacer.pid, "vendors": vendors.proc.pid}
        cpu = asyncio.run(drive(run, [f"ws://127.0.0.1:{port}/"], calls, args.seconds, None, pids))
    finally:
        pacer.terminate()
        pacer.wait(timeout=10)
    return summarize("baseline", run, cpu, args.seconds, args.verbose)


def service_level(
    args: argparse.Namespace, n: int, vendors: Vendors, profile: Path | None = None
) -> tuple[Row, dict[str, Any]]:
    before = vendors.stats()
    servers: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        env = server_env(Path(tmp), vendors.port, args.tts, args.database, args.redis)
        if args.database:
            fresh_database(args.database)
        manage(env, "migrate", "-v0")
        calls = seed_calls(env, greetings(args, n))
        log = args.server_log.open("ab") if args.server_log else subprocess.DEVNULL
        ports = [free_port() for _ in range(args.processes)]
        try:
            for port in ports:
                servers.append(
                    subprocess.Popen(
                        [sys.executable, "manage.py", "voicecall", "serve", "--port", str(port)],
                        cwd=ROOT,
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=log,
                    )
                )
            for port, server in zip(ports, servers, strict=True):
                wait_http(f"http://127.0.0.1:{port}/healthz")
                if args.verbose:
                    print(f"{'':<10}server pid {server.pid}, port {port}", flush=True)
            tagged = args.tts == "elevenlabs"
            frames = round(args.utterance_seconds / FRAME)
            run = Run(
                n=n,
                utterance_frames=frames,
                tagged=tagged,
                tolerance=0 if tagged else 1,
                endless=args.speech == "greeting",
            )
            pids = {f"server{i}": server.pid for i, server in enumerate(servers)}
            pids["vendors"] = vendors.proc.pid

            async def go() -> dict[str, float]:
                speaker = None
                if args.speech == "rpc":
                    bases = [f"http://127.0.0.1:{port}" for port in ports]
                    speaker = Speaker(run, bases, utterance_text(args.utterance_seconds))

                def on_window() -> Any:
                    if profile is None:
                        return None
                    seconds = min(args.seconds, args.profile_seconds)
                    return asyncio.create_task(py_spy(servers[0].pid, seconds, profile))

                urls = [f"ws://127.0.0.1:{port}/voice/stream" for port in ports]
                return await drive(run, urls, calls, args.seconds, speaker, pids, on_window)

            cpu = asyncio.run(go())
            after = vendors.stats()
        finally:
            for server in servers:
                stop(server)
    per_server = [cpu.pop(f"server{i}") for i in range(len(servers))]
    cpu["server"] = sum(per_server)
    label = "voicecall" if len(servers) == 1 else f"{len(servers)} procs"
    row = summarize(label, run, cpu, args.seconds, args.verbose)
    if len(servers) > 1:
        each = " + ".join(f"{c:.0f}%" for c in per_server)
        row.notes = "; ".join(filter(None, [f"server CPU {each}", row.notes]))
    extra = {k: after[k] - before.get(k, 0) for k in after}
    return row, extra


async def py_spy(pid: int, seconds: float, out: Path) -> None:
    """Sample the server for `seconds` (raw collapsed stacks into `out`).

    Blocking sampling (py-spy stops the process for each sample): the non-blocking kind
    cuts many stacks short, and the profiled run's own figures are not the table's.
    """
    exe = Path(sys.executable).with_name("py-spy")
    proc = await asyncio.create_subprocess_exec(
        str(exe if exe.exists() else "py-spy"),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        "100",
        "--function",
        "--full-filenames",
        "--format",
        "raw",
        "--output",
        str(out),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode:
        print(f"py-spy failed: {err.decode(errors='replace').strip()[-300:]}", file=sys.stderr)


def _frame_parts(frame: str) -> tuple[str, str]:
    """'name (path:line)' -> (name, path)."""
    name, _, rest = frame.partition(" (")
    rest = rest.removesuffix(")")
    path, _, line = rest.rpartition(":")
    return name, path if line.isdigit() else rest


def _where(path: str) -> str:
    """A file as the package or project module it belongs to."""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].split(".")[0]
    root = str(ROOT) + "/"
    if path.startswith(root):
        return path[len(root) :]
    for marker in ("/lib/python3", "/lib64/python3"):
        if marker in path:
            tail = path.split(marker, 1)[1].split("/", 1)[-1]
            return "stdlib " + tail.split("/", 1)[0].removesuffix(".py")
    return path


def profile_report(raw: Path, top: int) -> list[str]:
    """Self and inclusive shares of the samples in a py-spy raw file."""
    self_fn: collections.Counter[str] = collections.Counter()
    incl_fn: collections.Counter[str] = collections.Counter()
    self_mod: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        # py-spy may put the process and thread first; frames are "name (path:line)".
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        seen = set()
        for frame in frames:
            name, path = _frame_parts(frame)
            key = f"{name} ({_where(path)})"
            if key not in seen:
                seen.add(key)
                incl_fn[key] += count
        name, path = _frame_parts(frames[-1])
        self_fn[f"{name} ({_where(path)})"] += count
        self_mod[_where(path)] += count
    if not total:
        return ["(no samples)"]
    lines = [f"{total} samples (active threads only)"]
    lines.append("self time by function:")
    lines += [f"  {n / total:6.1%}  {k}" for k, n in self_fn.most_common(top)]
    lines.append("self time by file/package:")
    lines += [f"  {n / total:6.1%}  {k}" for k, n in self_mod.most_common(top)]
    lines.append("inclusive (function on the stack):")
    lines += [f"  {n / total:6.1%}  {k}" for k, n in incl_fn.most_common(top * 2)]
    return lines


def print_table(rows: list[Row], *, header: bool = True) -> None:
    if header:
        print(
            f"{'run':<10}{'N':>5}{'up':>5}{'server':>8}{'p50':>7}{'p99':>7}{'max':>7}"
            f"{'lost':>7}{'talk':>6}{'closed':>7}{'cli lag99':>10}{'speak p50/99':>13}"
            f"{'client':>8}{'fakes':>7}{'others':>8}"
        )
        print(
            f"{'':<10}{'':>5}{'':>5}{'CPU':>8}{'ms':>7}{'ms':>7}{'ms':>7}"
            f"{'frames':>7}{'':>6}{'':>7}{'ms':>10}{'ms':>13}{'CPU':>8}{'CPU':>7}{'CPU':>8}"
        )
    for r in rows:
        c = r.cpu
        print(
            f"{r.label:<10}{r.n:>5}{r.attached:>5}{c.get('server', math.nan):>7.0f}%"
            f"{r.p50:>7.1f}{r.p99:>7.1f}{r.worst:>7.0f}{r.lost:>7}{r.talk:>5.0f}%"
            f"{r.closes:>7}{r.lag99:>10.1f}{r.rpc:>13}{c.get('client', math.nan):>7.0f}%"
            f"{c.get('vendors', math.nan):>6.0f}%{c.get('others', math.nan):>7.0f}%"
            + (f"  {r.notes}" if r.notes else ""),
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--streams",
        type=int,
        nargs="+",
        help="concurrent streams per level (default: 25 50 100 150 200; none with --profile)",
    )
    parser.add_argument("--seconds", type=float, default=20, help="steady state per level")
    parser.add_argument("--utterance-seconds", type=float, default=5.0)
    parser.add_argument(
        "--tts",
        choices=["elevenlabs", "openai"],
        default="elevenlabs",
        help="elevenlabs: 8 kHz μ-law passed through; openai: 24 kHz PCM resampled",
    )
    parser.add_argument("--tts-latency-ms", type=int, default=50)
    parser.add_argument(
        "--speech",
        choices=["rpc", "greeting"],
        default="rpc",
        help="rpc: a voicecall.speak per utterance; greeting: one greeting as long as the run",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="run the levels this many times (noisy machines)"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="serve processes, the streams spread over them (needs --database and --redis)",
    )
    parser.add_argument("--database", help="DATABASE_URL (PostgreSQL; recreated every level)")
    parser.add_argument("--redis", help="REDIS_URL (the channel layer between processes)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the bare pacer runs")
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="run every level (default: stop after one that loses over 5%% of its frames)",
    )
    parser.add_argument(
        "--profile", type=int, metavar="N", help="then one more run at N streams, under py-spy"
    )
    parser.add_argument("--profile-seconds", type=float, default=20)
    parser.add_argument("--profile-out", type=Path, default=Path("/tmp/streams-profile.txt"))
    parser.add_argument("--top", type=int, default=15, help="profile lines per table")
    parser.add_argument("--verbose", action="store_true", help="server pid/port, worst frame")
    parser.add_argument("--server-log", type=Path, help="append the servers' stderr here")
    args = parser.parse_args()
    # Killed: still stop the servers and fakes (the finally blocks).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.processes > 1 and not (args.database and args.redis):
        parser.error("--processes needs --database postgres://… and --redis redis://…")
    if args.streams is None:
        args.streams = [] if args.profile else [25, 50, 100, 150, 200]

    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        pass
    print(
        f"{os.cpu_count()} CPUs; {args.seconds:g} s steady state per level; TTS {args.tts}, "
        f"{args.utterance_seconds:g} s utterances, speech by {args.speech}; "
        f"target p99 < {TARGET_P99_MS:g} ms with no frame lost",
        flush=True,
    )
    vendors = Vendors(args.tts_latency_ms)
    rows: list[Row] = []
    print_table([])
    try:
        for _ in range(args.repeat):
            for n in args.streams:
                if not args.no_baseline:
                    rows.append(baseline_level(args, n, vendors))
                    print_table(rows[-1:], header=False)
                row, extra = service_level(args, n, vendors)
                rows.append(row)
                print_table(rows[-1:], header=False)
                print(
                    f"{'':<10}vendors: {extra.get('tts_requests', 0)} TTS requests, "
                    f"{extra.get('stt_sockets', 0)} STT sockets, "
                    f"{extra.get('stt_appends', 0)} appends",
                    flush=True,
                )
                if not args.keep_going and row.due and row.lost > 0.05 * row.due:
                    print(f"stopping: {row.lost} of {row.due} frames lost at N={n}")
                    break
        if rows:
            # Other people's load only makes a run worse: of repeated runs, the one least
            # disturbed is the best estimate of what the service can do.
            best = {}
            for r in rows:
                key = (r.n, r.label)
                if key not in best or r.cpu.get("others", 0) < best[key].cpu.get("others", 0):
                    best[key] = r
            chosen = sorted(best.values(), key=lambda r: (r.n, r.label))
            meeting = [r.n for r in chosen if r.label != "baseline" and r.meets]
            print("\nleast disturbed run per level:" if args.repeat > 1 else "")
            print_table(chosen)
            print(
                f"largest N meeting p99 < {TARGET_P99_MS:g} ms with no frame lost: "
                f"{max(meeting) if meeting else 'none'}",
                flush=True,
            )
        if args.profile:
            print(f"\nprofiling the server at {args.profile} streams with py-spy", flush=True)
            row, _ = service_level(args, args.profile, vendors, profile=args.profile_out)
            print_table([row])
            print(f"raw stacks: {args.profile_out}")
            print("\n".join(profile_report(args.profile_out, args.top)))
    finally:
        vendors.stop()


if __name__ == "__main__":
    main()

"""`voicecall.speak` on one process → first audio frame of a stream another process holds.

Two `voicecall serve` processes, A and B, on one PostgreSQL database and one Redis (the
channel layer between them). A Twilio media stream (the carrier's side played here: Twilio
JSON frames over a websocket, caller audio at 50 frames a second, marks echoed) attaches
on B. Each sample is one JSON-RPC `voicecall.speak` (`POST /api/rpc`, bearer token, no
`wait`) and is measured from the moment the request is sent to the moment the first
non-silent audio frame of those words reaches the carrier client. Sent to A, the words
cross the channel layer to B; the baseline, in the same run, sends them to B itself.
The two sides alternate in rounds, so load from elsewhere on the machine falls on both.
The TTS fake (ElevenLabs, 8 kHz μ-law) answers at once with `--tts-frames` frames; the next
sample starts once the previous words played, their mark was echoed and `--gap-ms` passed.
The vendors are faked on this process's loop (bench/voice_kit.py).

Printed: p50/p90/p99/max/count of speak → first frame per side, the RPC's own response
time, and whether the issue's target (p50 ≤ 10 ms, p99 ≤ 50 ms, A → B) was met. Nothing is
asserted.

    .venv/bin/python bench/speak_latency.py
    .venv/bin/python bench/speak_latency.py --samples 400 --rounds 4 --profile /tmp/speak.svg
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from voice_kit import (
    Load,
    TwilioStream,
    Vendors,
    api_client,
    flush_redis,
    free_port,
    fresh_database,
    manage,
    percentile,
    py_spy,
    seed_call,
    server_env,
    spread,
    start_server,
    stop,
    use_uvloop,
    wait_ready,
)

DATABASE = "postgres://postgres@127.0.0.1:5432/bench_speak"
REDIS = "redis://127.0.0.1:6379/12"
TARGET_P50_MS, TARGET_P99_MS = 10.0, 50.0


class Side:
    """One sender's samples (ms from the RPC's send): the first frame at the carrier client,
    the TTS request at the fake, the RPC's reply."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.first_frame: list[float] = []
        self.tts: list[float] = []
        self.rpc: list[float] = []
        self.errors: dict[str, int] = {}

    def add(self, got: tuple[float, float, float] | str) -> None:
        if isinstance(got, str):
            self.errors[got] = self.errors.get(got, 0) + 1
            return
        self.first_frame.append(got[0])
        self.tts.append(got[1])
        self.rpc.append(got[2])


async def speak_once(
    http: httpx.AsyncClient,
    base: str,
    call_id: str,
    stream: TwilioStream,
    vendors: Vendors,
    n: int,
) -> tuple[float, float, float] | str:
    """(first frame, TTS request, RPC reply) in ms from the send, or what went wrong."""
    body = {
        "jsonrpc": "2.0",
        "id": n,
        "method": "voicecall.speak",
        "params": {"callId": call_id, "message": f"Benchmark sentence number {n}."},
    }
    stream.drain()
    sent = time.monotonic()
    rpc = asyncio.create_task(http.post(f"{base}/api/rpc", json=body))
    try:
        first, _ = await stream.next("audio", timeout=10)
    except TimeoutError:
        first = None
    try:
        response = await rpc
        replied = time.monotonic()
        reply: Any = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        return type(exc).__name__
    if not isinstance(reply, dict) or reply.get("error"):
        error = reply.get("error") if isinstance(reply, dict) else reply
        return str(error.get("message") if isinstance(error, dict) else error)[:60]
    if first is None:
        return "no audio within 10 s"
    tts = vendors.after(vendors.tts_at, sent)
    try:
        await stream.next("mark", timeout=10)  # the words played: the stream is idle again
    except TimeoutError:
        return "no mark within 10 s"
    return (first - sent) * 1000, (tts - sent) * 1000, (replied - sent) * 1000


@dataclass
class Result:
    sides: dict[str, Side]
    stream: TwilioStream
    load: str


async def run(args: argparse.Namespace) -> Result:
    vendors = Vendors(tts_frames=args.tts_frames)
    await vendors.start()
    servers: list[Any] = []
    with tempfile.TemporaryDirectory() as tmp:
        env = server_env(Path(tmp), vendors.port, database=args.database, redis=args.redis)
        await asyncio.to_thread(fresh_database, args.database)
        await asyncio.to_thread(flush_redis, args.redis)
        await asyncio.to_thread(manage, env, "migrate", "-v0")
        call_id, call_sid, token = await asyncio.to_thread(seed_call, env)
        ports = {"A": free_port(), "B": free_port()}
        try:
            for port in ports.values():
                servers.append(start_server(env, port, args.server_log))
            for port, server in zip(ports.values(), servers, strict=True):
                await wait_ready(port, server)
            stream = TwilioStream(
                f"ws://127.0.0.1:{ports['B']}/voice/stream",
                call_sid,
                token,
                caller_audio=not args.no_caller_audio,
            )
            await stream.open()
            await asyncio.wait_for(vendors.sockets.get(), 10)  # B attached it and opened STT
            sides = {"A": Side("A → B (channel layer)"), "B": Side("B → B (same process)")}
            bases = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
            clients = {name: api_client() for name in ports}
            n = 0
            try:
                for name in ("A", "B"):  # warm-up: imports, pools, the TTS connection
                    for _ in range(args.warmup):
                        n += 1
                        await speak_once(clients[name], bases[name], call_id, stream, vendors, n)
                        await asyncio.sleep(args.gap_ms / 1000)
                profilers = []
                if args.profile:
                    seconds = args.samples * 2 * (args.gap_ms + 150) / 1000
                    for name, server in zip(ports, servers, strict=True):
                        out = args.profile.with_stem(f"{args.profile.stem}-{name}")
                        profilers.append((out, py_spy(server.pid, seconds, out)))
                load = Load({name: server.pid for name, server in zip(ports, servers, strict=True)})
                per_round = max(1, args.samples // args.rounds)
                failed = 0
                for r in range(args.rounds):
                    # Alternating which side goes first, too.
                    for name in ("A", "B") if r % 2 == 0 else ("B", "A"):
                        for _ in range(per_round):
                            n += 1
                            got = await speak_once(
                                clients[name], bases[name], call_id, stream, vendors, n
                            )
                            if args.verbose:
                                print(f"{name} {n}: {got}", flush=True)
                            sides[name].add(got)
                            failed = failed + 1 if isinstance(got, str) else 0
                            if failed >= 5:
                                raise SystemExit(f"5 failures in a row, the last: {got}")
                            # Jitter: samples never fall in step with a periodic task.
                            await asyncio.sleep(args.gap_ms * (0.5 + random.random()) / 1000)
                result = Result(sides, stream, load.line())
                for out, proc in profilers:
                    await asyncio.to_thread(proc.wait)
                    print(f"py-spy profile: {out}")
            finally:
                for client in clients.values():
                    await client.aclose()
                await stream.close()
        finally:
            for server in servers:
                stop(server)
            await vendors.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300, help="speak requests per side")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two sides")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured requests per side")
    parser.add_argument("--gap-ms", type=float, default=100, help="mean pause between samples")
    parser.add_argument("--tts-frames", type=int, default=5, help="audio per utterance (20 ms)")
    parser.add_argument("--no-caller-audio", action="store_true", help="a silent carrier side")
    parser.add_argument("--database", default=DATABASE, help="PostgreSQL URL (recreated)")
    parser.add_argument("--redis", default=REDIS, help="Redis URL, own DB number (flushed)")
    parser.add_argument("--server-log", type=Path, help="append the servers' stderr here")
    parser.add_argument("--verbose", action="store_true", help="print every sample")
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy both servers, idle threads too: X.svg → X-A.svg, X-B.svg (flame graphs), "
        "X.txt → collapsed stacks",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    use_uvloop()
    result = asyncio.run(run(args))
    stream = result.stream
    print(
        f"PostgreSQL + Redis, 2 serve processes, stream on B; {args.samples} samples per side "
        f"in {args.rounds} rounds; TTS fake answers {args.tts_frames} frames at once; caller "
        f"audio {'off' if args.no_caller_audio else 'on'}"
    )
    print(f"{'ms':<46}{'p50':>7}{'p90':>7}{'p99':>7}{'max':>7}{'n':>6}")
    for side in result.sides.values():
        print(f"{side.name + ': speak → first frame':<46}{spread(side.first_frame)}")
        print(f"{'    speak → TTS request at the fake':<46}{spread(side.tts)}")
        print(
            f"{'    TTS request → first frame':<46}"
            f"{spread([f - t for f, t in zip(side.first_frame, side.tts, strict=True)])}"
        )
        print(f"{'    speak → RPC response':<46}{spread(side.rpc)}")
        if side.errors:
            print(f"   errors: {side.errors}")
    print(f"stream: {stream.frames} audio frames, {stream.silence} silence, {stream.clears} clears")
    print(result.load)
    a = result.sides["A"].first_frame
    p50, p99 = percentile(a, 50), percentile(a, 99)
    met = p50 <= TARGET_P50_MS and p99 <= TARGET_P99_MS
    print(
        f"target A → B p50 ≤ {TARGET_P50_MS:g} ms, p99 ≤ {TARGET_P99_MS:g} ms: "
        f"{'met' if met else 'NOT met'} (p50 {p50:.1f}, p99 {p99:.1f})"
    )


if __name__ == "__main__":
    main()

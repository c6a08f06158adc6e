"""The caller's final transcript → the first frame of the automatic reply, and what the
server recorded for the same turns.

One `voicecall serve` process (SQLite and the in-process layer by default, the responder on
a thread of the server; with `--database` PostgreSQL; with `--redis` too, the responder
runs as the Celery task on a worker started here, as in production). A Twilio media stream
(the carrier's side played here: Twilio JSON frames, caller audio at 50 frames a second,
marks echoed) attaches to an answered conversation call. Every turn, the fake OpenAI
Realtime transcription socket says the caller started speaking, `--caller-ms` later that
they stopped and, right behind it, the final transcript; the responder asks the stub chat
model (OpenAI chat completions, answering at once) and speaks its reply through the TTS
fake (ElevenLabs 8 kHz μ-law, answering at once). Measured from the moment the fake sent
the final transcript to the moment the first non-silent frame of the reply reached the
carrier client, split at the chat and TTS requests' arrival at the fakes. The next turn
starts once the reply played and its mark was echoed, and `--gap-ms` passed. The vendors
are faked on this process's loop (bench/voice_kit.py), so both ends are read from one clock.

Then the turn records the server kept (`GET /api/calls/{callId}/turns/`) are printed beside
it: the stages `transcriptMs`, `replyMs`, `firstAudioMs`, `totalMs` (from the caller's stop,
so it includes the VAD's `silenceDurationMs`), the recorded span the outside measure
corresponds to (endpointed → first audio), and what the records do not cover (their wall
clock stamps against the fake's send and the client's arrival). The issue's target: at most
20 ms of our own overhead (p50 of the outside measure; nothing is asserted). With
`--chat-ms N` the stub model thinks N ms first, and the target is judged on the outside
measure less the model's own time (on a stream the model is asked while the caller's line
is written, so that time hides the write; docs/voice-path.md, "Early replies").

    .venv/bin/python bench/turn_overhead.py
    .venv/bin/python bench/turn_overhead.py --database postgres://postgres@127.0.0.1:5432/bench_turns
    .venv/bin/python bench/turn_overhead.py --database postgres://…/bench_turns \
        --redis redis://127.0.0.1:6379/13
    .venv/bin/python bench/turn_overhead.py --chat-ms 150
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

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
    spawn,
    spread,
    start_server,
    stop,
    use_uvloop,
    wait_ready,
)

TARGET_MS = 20.0
SILENCE_MS = 500  # streaming.providers.openai.silenceDurationMs: the VAD's end of turn


@dataclass
class Turn:
    n: int  # the call's turn number from 0: it had min(2n, 40) earlier lines
    sent: float  # monotonic: the fake sent the final transcript
    sent_wall: float
    audio: float  # monotonic: the reply's first frame reached the client
    audio_wall: float
    chat: float  # monotonic: the chat request reached the stub
    chat_done: float  # monotonic: the stub's answer left
    tts: float  # monotonic: the TTS request reached the fake

    @property
    def outside_ms(self) -> float:
        return (self.audio - self.sent) * 1000

    @property
    def own_ms(self) -> float:
        """Ours: the outside measure less the model's own time (`--chat-ms`)."""
        return self.outside_ms - (self.chat_done - self.chat) * 1000


async def one_turn(
    stream: TwilioStream, stt: Any, vendors: Vendors, n: int, caller_ms: float
) -> Turn | str:
    stream.drain()
    await stt.speech_started()
    await asyncio.sleep(caller_ms / 1000)
    sent, sent_wall = await stt.final(f"Question number {n}: when do you close today?")
    try:
        audio, audio_wall = await stream.next("audio", timeout=10)
    except TimeoutError:
        return "no reply audio within 10 s"
    chat = vendors.after(vendors.chat_at, sent)
    chat_done = vendors.after(vendors.chat_done_at, sent)
    tts = vendors.after(vendors.tts_at, sent)
    try:
        await stream.next("mark", timeout=10)  # the reply played: the caller may speak again
    except TimeoutError:
        return "no mark within 10 s"
    return Turn(n, sent, sent_wall, audio, audio_wall, chat, chat_done, tts)


def _ts(value: str | None) -> float:
    return datetime.fromisoformat(value).timestamp() if value else math.nan


def start_worker(env: dict[str, str], log: Path | None) -> subprocess.Popen[bytes]:
    """A Celery worker (the responder's production dispatch with REDIS_URL)."""
    return spawn(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "voicecall_project",
            "worker",
            "--concurrency",
            "2",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env,
        log,
    )


async def run(args: argparse.Namespace) -> tuple[list[Turn], list[dict[str, Any]], dict[str, Any]]:
    vendors = Vendors(tts_frames=args.tts_frames, chat_ms=args.chat_ms)
    await vendors.start()
    vendor = f"http://127.0.0.1:{vendors.port}"
    extra = {
        "responseModel": "openai/bench-model",
        "responseBaseUrl": f"{vendor}/v1",
        "streaming": {
            "enabled": True,
            "providers": {
                "openai": {
                    "apiKey": "sk-bench",
                    "baseUrl": vendor,
                    "silenceDurationMs": SILENCE_MS,
                }
            },
        },
        "tts": {
            "provider": "elevenlabs",
            "providers": {
                "elevenlabs": {"apiKey": "bench", "baseUrl": vendor, "outputFormat": "ulaw_8000"},
                # The responder's key (README, "Automatic replies"); not a TTS fallback.
                "openai": {"apiKey": "sk-bench"},
            },
        },
    }
    procs: list[subprocess.Popen[bytes]] = []
    info: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = server_env(
            Path(tmp), vendors.port, database=args.database, redis=args.redis, extra=extra
        )
        if args.database:
            fresh_database(args.database)
        if args.redis:
            flush_redis(args.redis)
        await asyncio.to_thread(manage, env, "migrate", "-v0")
        call_id, call_sid, token = await asyncio.to_thread(seed_call, env)
        port = free_port()
        try:
            server = start_server(env, port, args.server_log)
            procs.append(server)
            if args.redis:
                procs.append(start_worker(env, args.server_log))
            await wait_ready(port, server)
            stream = TwilioStream(
                f"ws://127.0.0.1:{port}/voice/stream",
                call_sid,
                token,
                caller_audio=not args.no_caller_audio,
            )
            await stream.open()
            stt = await asyncio.wait_for(vendors.sockets.get(), 10)
            turns: list[Turn] = []
            errors: dict[str, int] = {}
            measured: list[bool] = []  # per turn the server saw: kept or warm-up/failed
            try:
                for n in range(args.warmup):
                    await one_turn(stream, stt, vendors, n, args.caller_ms)
                    measured.append(False)
                    await asyncio.sleep(args.gap_ms / 1000)
                load = Load(
                    {"server": server.pid} | ({"worker": procs[1].pid} if args.redis else {})
                )
                profiler = None
                failed = 0
                if args.profile:
                    seconds = args.turns * (args.caller_ms + args.gap_ms + 250) / 1000
                    profiler = py_spy(server.pid, seconds, args.profile)
                for n in range(args.warmup, args.warmup + args.turns):
                    got = await one_turn(stream, stt, vendors, n, args.caller_ms)
                    if isinstance(got, str):
                        errors[got] = errors.get(got, 0) + 1
                        measured.append(False)
                        failed += 1
                        if failed >= 5:
                            raise SystemExit(f"5 failures in a row, the last: {got}")
                    else:
                        failed = 0
                        turns.append(got)
                        measured.append(True)
                    await asyncio.sleep(args.gap_ms * (0.5 + random.random()) / 1000)
                info["load"] = load.line()
                if profiler is not None:
                    await asyncio.to_thread(profiler.wait)
                await asyncio.sleep(0.5)  # the last reply's records are written after its mark
                async with api_client() as http:
                    response = await http.get(f"http://127.0.0.1:{port}/api/calls/{call_id}/turns/")
                    response.raise_for_status()
                    records = [t for t in response.json() if t["initiator"] == "caller"]
            finally:
                await stream.close()
            info.update(errors=errors, frames=stream.frames, silence=stream.silence)
            info.update(clears=stream.clears, appends=stt.appends)
            # Records of the measured turns, in order (warm-up and failed turns dropped).
            kept = [r for r, keep in zip(records, measured, strict=False) if keep]
            info["records"] = len(records)
        finally:
            for proc in procs:
                stop(proc)
            await vendors.stop()
    return turns, kept, info


def row(label: str, values: list[float]) -> None:
    print(f"{label:<48}{spread(values)}")


def report(args: argparse.Namespace, turns: list[Turn], records: list[dict[str, Any]]) -> None:
    print(f"{'ms':<48}{'p50':>7}{'p90':>7}{'p99':>7}{'max':>7}{'n':>6}")
    print("seen from outside")
    outside = [t.outside_ms for t in turns]
    row("  final transcript sent → first reply frame", outside)
    row("    final sent → chat request at the stub", [(t.chat - t.sent) * 1000 for t in turns])
    # The chat request carries the call's earlier lines (up to HISTORY_LIMIT = 40).
    for label, keep in (("< 20", lambda t: t.n < 10), ("= 40", lambda t: t.n >= 20)):
        row(
            f"      of them, with {label} earlier lines",
            [(t.chat - t.sent) * 1000 for t in turns if keep(t)],
        )
    row("    chat request → TTS request at the fake", [(t.tts - t.chat) * 1000 for t in turns])
    if args.chat_ms:
        row("      of them, the model's own time", [(t.chat_done - t.chat) * 1000 for t in turns])
        row("      of them, answer → TTS request", [(t.tts - t.chat_done) * 1000 for t in turns])
    row("    TTS request → first frame at the client", [(t.audio - t.tts) * 1000 for t in turns])
    print("recorded by the server (GET /api/calls/{callId}/turns/)")
    for stage in ("endpointingMs", "transcriptMs", "replyMs", "firstAudioMs", "totalMs"):
        row(f"  {stage}", [r[stage] for r in records if r.get(stage) is not None])
    pairs = list(zip(turns, records, strict=False))
    covered = [
        (_ts(r["firstAudioAt"]) - _ts(r["endpointedAt"])) * 1000
        for _, r in pairs
        if r["firstAudioAt"] and r["endpointedAt"]
    ]
    row("  endpointed → first audio (= totalMs − VAD)", covered)
    print("not covered by the records")
    row(
        "  final sent → endpointedAt",
        [(_ts(r["endpointedAt"]) - t.sent_wall) * 1000 for t, r in pairs if r["endpointedAt"]],
    )
    row(
        "  firstAudioAt → frame at the client",
        [(t.audio_wall - _ts(r["firstAudioAt"])) * 1000 for t, r in pairs if r["firstAudioAt"]],
    )
    if args.chat_ms:
        # The model's own time is not ours: what is left is the overhead the target is about.
        outside = [t.own_ms for t in turns]
        row("  first reply frame − the model's own time", outside)
    p50 = percentile(outside, 50)
    print(
        f"target: ≤ {TARGET_MS:g} ms of our own overhead (p50 final → first frame"
        f"{', less the model' if args.chat_ms else ''}): "
        f"{'met' if p50 <= TARGET_MS else 'NOT met'} (p50 {p50:.1f}, "
        f"p90 {percentile(outside, 90):.1f}, p99 {percentile(outside, 99):.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200, help="measured turns")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured turns first")
    parser.add_argument("--caller-ms", type=float, default=300, help="speech start → final")
    parser.add_argument("--gap-ms", type=float, default=100, help="mean pause after a reply")
    parser.add_argument("--tts-frames", type=int, default=5, help="reply audio (20 ms frames)")
    parser.add_argument(
        "--chat-ms",
        type=float,
        default=0,
        help="the chat model's thinking time (its own time is taken off the target's figure)",
    )
    parser.add_argument("--no-caller-audio", action="store_true", help="a silent carrier side")
    parser.add_argument("--database", help="PostgreSQL URL, recreated (default: SQLite)")
    parser.add_argument(
        "--redis", help="Redis URL, own DB number (flushed): layer + Celery worker responder"
    )
    parser.add_argument("--server-log", type=Path, help="append the server's stderr here")
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy the server, idle threads too: X.svg a flame graph, X.txt collapsed stacks",
    )
    args = parser.parse_args()
    if args.redis and not args.database:
        parser.error("--redis needs --database postgres://…")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    use_uvloop()
    started = time.monotonic()
    turns, records, info = asyncio.run(run(args))
    database = "PostgreSQL" if args.database else "SQLite"
    responder = "Celery worker" if args.redis else "server thread"
    print(
        f"{database}, {'Redis' if args.redis else 'in-process'} layer, responder on a "
        f"{responder}; {len(turns)} turns of {args.turns} in {time.monotonic() - started:.0f} s; "
        f"chat stub answers {f'after {args.chat_ms:g} ms' if args.chat_ms else 'at once'}, "
        f"TTS fake at once ({args.tts_frames} frames); caller audio "
        f"{'off' if args.no_caller_audio else 'on'}; VAD silence {SILENCE_MS} ms"
    )
    if info["errors"]:
        print(f"errors: {info['errors']}")
    if info["records"] != args.turns + args.warmup:
        print(f"note: {info['records']} caller turns recorded for {args.turns + args.warmup} sent")
    report(args, turns, records)
    print(
        f"stream: {info['frames']} audio frames, {info['silence']} silence, {info['clears']} "
        f"clears; {info['appends']} STT appends"
    )
    print(info["load"])


if __name__ == "__main__":
    main()

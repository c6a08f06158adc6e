"""Loopback stand-ins for bench/streams.py, run as a subprocess of it (so their CPU is theirs).

    python bench/stream_fakes.py vendors --port P   # TTS + realtime STT + Twilio REST
    python bench/stream_fakes.py pacer --port P     # the bare baseline media server

`vendors` is one aiohttp server:

- ElevenLabs `POST /v1/text-to-speech/{voice}/stream` (μ-law 8 kHz) and OpenAI
  `POST /v1/audio/speech` (24 kHz PCM16): the audio of an utterance is as long as its text
  says ("… 5.0 seconds …"), streamed in 0.5 s chunks after `--tts-latency-ms`, 10 times
  faster than real time but 2 s at most in all (the server allows a synthesis 8 s);
- the OpenAI Realtime transcription socket `GET /v1/realtime?intent=transcription`: reads
  `session.update` and every `input_audio_buffer.append` (counted, not decoded);
- anything else (the Twilio REST API's hang-ups): 200 with a JSON body.

`GET /stats` returns the counters. `pacer` is the same-run baseline: a raw `websockets`
server that does only what the service's playback does on the wire (paced 20 ms media
frames of utterances as long as the TTS fake's, a mark after each, the next utterance once
it is echoed) and reads the caller's frames, with no Django, Channels, STT or TTS.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import re
import sys
import time
from typing import Any

FRAME_BYTES = 160
FRAME_SECONDS = 0.02
CHUNK_SECONDS = 0.5
SPEED = 10.0  # synthesis runs this many times faster than real time
MAX_SYNTHESIS_SECONDS = 2.0
DEFAULT_SECONDS = 2.0
_SECONDS = re.compile(r"(\d+(?:\.\d+)?) seconds")

# A non-silent μ-law pattern (silence is 0xFF), so the client can tell speech from the
# playback's keep-alive silence.
ULAW_TONE = bytes((0x10 + (i * 7) % 0x60) for i in range(FRAME_BYTES))
# 24 kHz PCM16 LE of a 440 Hz tone, one 20 ms frame (480 samples).
PCM_TONE = b"".join(
    int(8000 * math.sin(2 * math.pi * 440 * i / 24000)).to_bytes(2, "little", signed=True)
    for i in range(480)
)


# The first TAG_BYTES of every μ-law frame say which TTS request it came from and its index
# in it, 7 bits a byte (never 0xFF): the client tells utterances apart and finds gaps
# without relying on marks (a failed utterance sends none); bench/streams.py `untag`.
TAG_BYTES = 6


def tag(utterance: int, k: int) -> bytes:
    return bytes(
        (utterance & 0x7F, utterance >> 7 & 0x7F, utterance >> 14 & 0x7F,
         k & 0x7F, k >> 7 & 0x7F, k >> 14 & 0x7F)
    )  # fmt: skip


def utterance_seconds(text: str) -> float:
    match = _SECONDS.search(text)
    return float(match.group(1)) if match else DEFAULT_SECONDS


async def vendors(port: int, tts_latency_ms: int) -> None:
    from aiohttp import WSMsgType, web

    stats: dict[str, int] = {
        "tts_requests": 0,
        "stt_sockets": 0,
        "stt_open": 0,
        "stt_appends": 0,
        "stt_bytes": 0,
        "stt_other": 0,
        "carrier_requests": 0,
    }

    async def tts(request: web.Request, tagged: bool) -> web.StreamResponse:
        body = await request.json()
        stats["tts_requests"] += 1
        utterance = stats["tts_requests"]
        seconds = utterance_seconds(str(body.get("text") or body.get("input") or ""))
        frames = round(seconds / FRAME_SECONDS)
        response = web.StreamResponse(headers={"content-type": "application/octet-stream"})
        per_chunk = round(CHUNK_SECONDS / FRAME_SECONDS)
        # SPEED times real time, but never over MAX_SYNTHESIS_SECONDS in all: the server's
        # budget (tts.timeoutMs, 8 s) counts the whole synthesis of an utterance.
        pause = min(CHUNK_SECONDS / SPEED, MAX_SYNTHESIS_SECONDS * per_chunk / max(1, frames))
        try:
            await response.prepare(request)
            await asyncio.sleep(tts_latency_ms / 1000)
            for start in range(0, frames, per_chunk):
                ks = range(start, min(start + per_chunk, frames))
                if tagged:
                    chunk = b"".join(tag(utterance, k) + ULAW_TONE[TAG_BYTES:] for k in ks)
                else:
                    chunk = PCM_TONE * len(ks)
                await response.write(chunk)
                await asyncio.sleep(pause)
            await response.write_eof()
        except ConnectionResetError:
            pass  # the stream closed (barge-in, hang-up, the end of the run)
        return response

    async def elevenlabs(request: web.Request) -> web.StreamResponse:
        if request.query.get("output_format") != "ulaw_8000":
            return web.json_response({"detail": "bench fake serves ulaw_8000 only"}, status=400)
        return await tts(request, tagged=True)

    async def openai_speech(request: web.Request) -> web.StreamResponse:
        return await tts(request, tagged=False)

    async def realtime(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=1 << 20, autoping=True)
        await ws.prepare(request)
        stats["stt_sockets"] += 1
        stats["stt_open"] += 1
        await ws.send_str(json.dumps({"type": "session.created", "event_id": "event_0"}))
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                data = message.data
                # Cheap on purpose: the appends are most of this process's work.
                if data.startswith('{"type": "input_audio_buffer.append"'):
                    stats["stt_appends"] += 1
                    stats["stt_bytes"] += (
                        (len(data) - 50) * 3 // 4
                    )  # base64 between the 48-char head and "}
                else:
                    stats["stt_other"] += 1
        finally:
            stats["stt_open"] -= 1
        return ws

    async def carrier(request: web.Request) -> web.Response:
        # Twilio's call resource: startup asks about every live call (it is in progress),
        # a hang-up POSTs Status=completed.
        stats["carrier_requests"] += 1
        form = await request.post() if request.method == "POST" else {}
        status = str(form.get("Status") or "in-progress")
        sid = request.match_info["tail"].rpartition("/")[2].removesuffix(".json")
        return web.json_response({"sid": sid, "status": status})

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(stats)

    app = web.Application(client_max_size=1 << 20)
    app.router.add_post("/v1/text-to-speech/{voice}/stream", elevenlabs)
    app.router.add_post("/v1/audio/speech", openai_speech)
    app.router.add_get("/v1/realtime", realtime)
    app.router.add_get("/stats", get_stats)
    app.router.add_route("*", "/{tail:.*}", carrier)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


async def pacer(port: int, utterance: float, tts_latency_ms: int) -> None:
    """The baseline: the service's outbound wire behaviour and nothing else."""
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    frames_per_utterance = round(utterance / FRAME_SECONDS)
    tone = ULAW_TONE[TAG_BYTES:]

    async def handler(ws: ServerConnection) -> None:
        echoed: asyncio.Queue[str] = asyncio.Queue()
        started = asyncio.Event()
        sid = ""

        async def reader() -> None:
            nonlocal sid
            async for message in ws:
                event = json.loads(message)
                kind = event.get("event")
                if kind == "start":
                    sid = event["start"]["streamSid"]
                    started.set()
                elif kind == "mark":
                    echoed.put_nowait(event["mark"]["name"])

        reading = asyncio.create_task(reader())
        try:
            await started.wait()
            count = 0
            while True:
                count += 1
                await asyncio.sleep(tts_latency_ms / 1000)
                first = time.monotonic()
                for k in range(frames_per_utterance):
                    delay = first + k * FRAME_SECONDS - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    payload = base64.b64encode(tag(count, k) + tone).decode()
                    media = {"event": "media", "streamSid": sid, "media": {"payload": payload}}
                    await ws.send(json.dumps(media, separators=(",", ":")))
                name = f"tts-{count}"
                mark = {"event": "mark", "streamSid": sid, "mark": {"name": name}}
                await ws.send(json.dumps(mark, separators=(",", ":")))
                async with asyncio.timeout(utterance + 2):
                    while await echoed.get() != name:
                        pass
        except (ConnectionClosed, TimeoutError):
            pass
        finally:
            reading.cancel()

    async with serve(handler, "127.0.0.1", port, max_size=1 << 16, backlog=1024):
        print("ready", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["vendors", "pacer"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--utterance-seconds", type=float, default=5.0)
    parser.add_argument("--tts-latency-ms", type=int, default=50)
    args = parser.parse_args()
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is in requirements (uvicorn[standard])
        runner = asyncio.run
    if args.role == "vendors":
        runner(vendors(args.port, args.tts_latency_ms))
    else:
        runner(pacer(args.port, args.utterance_seconds, args.tts_latency_ms))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)

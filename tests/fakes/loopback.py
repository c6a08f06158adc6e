"""Vendors on loopback for end-to-end tests of `voicecall serve` subprocesses.

Nothing here imports Django: the servers under test are other processes, reached over
127.0.0.1 only.

- `FakeVendors`: one HTTP server playing three vendors — the Twilio REST API's Call
  resource (`twilio.apiBaseUrl`), ElevenLabs streaming TTS answering 8 kHz μ-law
  (`tts.providers.elevenlabs.baseUrl`), and OpenAI chat completions for the automatic
  replies (`responseBaseUrl`). The "audio" of an utterance is its own text as bytes, so the
  carrier's end of a media stream can tell which words it was played.
- `FakeRealtimeStt`: the OpenAI Realtime transcription socket
  (`streaming.providers.openai.baseUrl`). It records what each session sends and, when the
  test says so, reports the caller's words as the service does (speech started, stopped,
  transcription completed).
- `TwilioMediaStream`: Twilio's end of one `<Connect><Stream>` socket: `connected` and
  `start` with the stream token, caller `media` frames, and every `mark` echoed as it
  arrives (the audio before it has been played), as Twilio does.
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.sync.server import Server, ServerConnection, serve

SILENCE = 0xFF  # μ-law silence: the playback's keep-alive frames and padding
FRAME_BYTES = 160  # 20 ms of 8 kHz μ-law
UTTERANCE_FRAMES = 10  # every synthesized utterance plays for 200 ms


def spoken_audio(text: str) -> bytes:
    """The fake TTS's μ-law for `text`: the text itself, repeated over 200 ms (never 0xFF)."""
    unit = (text + " / ").encode()
    size = UTTERANCE_FRAMES * FRAME_BYTES
    return (unit * (size // len(unit) + 1))[:size]


# -- HTTP vendors ----------------------------------------------------------------------------
@dataclass
class TwilioCall:
    """One call the fake Twilio API created: its create form and every update POSTed."""

    sid: str
    create: dict[str, str]
    status: str = "queued"
    updates: list[dict[str, str]] = field(default_factory=list)


class FakeVendors:
    """Twilio REST (Calls), ElevenLabs TTS and OpenAI chat completions on one loopback port."""

    def __init__(self, *, account_sid: str, reply: str) -> None:
        self.account_sid = account_sid
        self.reply = reply  # what the chat model answers the caller
        self.calls: dict[str, TwilioCall] = {}
        self.tts_texts: list[str] = []
        self.chat_requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def origin(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> None:
        vendors = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, content_type, data = vendors.answer(self.command, self.path, body)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, name="fake-vendors", daemon=True).start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    # -- routing ------------------------------------------------------------------------------
    def answer(self, method: str, target: str, body: bytes) -> tuple[int, str, bytes]:
        parts = urlsplit(target)
        path = parts.path
        calls = f"/2010-04-01/Accounts/{self.account_sid}/Calls"
        if path == calls + ".json" and method == "POST":
            return self._create(body)
        if path.startswith(calls + "/") and path.endswith(".json"):
            return self._call(method, path[len(calls) + 1 : -len(".json")], body)
        if path.startswith("/v1/text-to-speech/") and method == "POST":
            if parse_qs(parts.query).get("output_format") != ["ulaw_8000"]:
                return _json(400, {"detail": "this fake speaks ulaw_8000 only"})
            text = str(json.loads(body).get("text") or "")
            with self.lock:
                self.tts_texts.append(text)
            return 200, "application/octet-stream", spoken_audio(text)
        if path == "/v1/chat/completions" and method == "POST":
            return self._chat(body)
        return _json(404, {"code": 20404, "message": "not found", "status": 404})

    def _create(self, body: bytes) -> tuple[int, str, bytes]:
        form = _form(body)
        sid = "CA" + uuid.uuid4().hex
        with self.lock:
            self.calls[sid] = TwilioCall(sid=sid, create=form)
        return _json(
            201,
            {
                "sid": sid,
                "account_sid": self.account_sid,
                "status": "queued",
                "to": form.get("To"),
                "from": form.get("From"),
                "direction": "outbound-api",
            },
        )

    def _call(self, method: str, sid: str, body: bytes) -> tuple[int, str, bytes]:
        with self.lock:
            call = self.calls.get(sid)
            if call is None:
                return _json(
                    404, {"code": 20404, "message": "The requested resource was not found"}
                )
            if method == "POST":
                form = _form(body)
                call.updates.append(form)
                if form.get("Status") in ("completed", "canceled"):
                    call.status = "completed"
            return _json(200, {"sid": sid, "account_sid": self.account_sid, "status": call.status})

    def _chat(self, body: bytes) -> tuple[int, str, bytes]:
        with self.lock:
            self.chat_requests.append(json.loads(body))
        return _json(
            200,
            {
                "id": "chatcmpl-e2e",
                "object": "chat.completion",
                "created": 0,
                "model": "fake",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {
                            "role": "assistant",
                            "content": json.dumps({"spoken": self.reply}),
                        },
                    }
                ],
            },
        )

    # -- what the test reads ------------------------------------------------------------------
    def call(self, sid: str) -> TwilioCall:
        with self.lock:
            return self.calls[sid]

    def only_call(self) -> TwilioCall | None:
        with self.lock:
            return next(iter(self.calls.values())) if len(self.calls) == 1 else None

    def hang_ups(self, sid: str) -> list[dict[str, str]]:
        """The REST hang-ups the service sent for the call (`Status=completed`)."""
        with self.lock:
            return [u for u in self.calls[sid].updates if u.get("Status") == "completed"]

    def set_status(self, sid: str, status: str) -> None:
        with self.lock:
            self.calls[sid].status = status


def _form(body: bytes) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}


def _json(status: int, value: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(value).encode()


# -- the realtime transcription socket -------------------------------------------------------
class SttSession:
    """One transcription socket a server opened: what it sent, and the caller's words."""

    def __init__(self, conn: ServerConnection) -> None:
        self.conn = conn
        self.path = conn.request.path if conn.request is not None else ""
        self.events: list[str] = []  # types of the client events, in order
        self.session_update: dict[str, Any] | None = None
        self.audio_bytes = 0  # caller audio received in input_audio_buffer.append
        self.closed = threading.Event()
        self._items = itertools.count(1)

    def say(self, text: str) -> None:
        """The caller said `text`: VAD start and stop, then the completed transcription."""
        item = f"item_{next(self._items)}"
        for event in (
            {"type": "input_audio_buffer.speech_started", "item_id": item},
            {"type": "input_audio_buffer.speech_stopped", "item_id": item},
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item,
                "content_index": 0,
                "transcript": text,
            },
        ):
            self.conn.send(json.dumps(event))


class FakeRealtimeStt:
    """`GET /v1/realtime?intent=transcription` on loopback; one `SttSession` per socket."""

    def __init__(self) -> None:
        self.sessions: list[SttSession] = []
        self.lock = threading.Lock()
        self._server: Server | None = None

    @property
    def origin(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.socket.getsockname()[1]}"

    def start(self) -> None:
        self._server = serve(self._handle, "127.0.0.1", 0, max_size=1 << 22)
        threading.Thread(target=self._server.serve_forever, name="fake-stt", daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()

    def _handle(self, conn: ServerConnection) -> None:
        session = SttSession(conn)
        with self.lock:
            self.sessions.append(session)
        try:
            conn.send(json.dumps({"type": "session.created", "event_id": "event_0"}))
            for message in conn:
                event = json.loads(message)
                kind = str(event.get("type"))
                session.events.append(kind)
                if kind == "session.update":
                    session.session_update = event
                elif kind == "input_audio_buffer.append":
                    session.audio_bytes += len(base64.b64decode(event.get("audio") or ""))
        except ConnectionClosed:
            pass
        finally:
            session.closed.set()

    def open_sessions(self) -> list[SttSession]:
        with self.lock:
            return [s for s in self.sessions if not s.closed.is_set()]


# -- the carrier's end of a media stream -----------------------------------------------------
class TwilioMediaStream:
    """Twilio's side of one bidirectional media stream to `url` (ws://…/voice/stream).

    A reader thread collects the audio the server plays (keep-alive silence dropped) and
    echoes each `mark` at once: the frames before it have arrived, paced at real time by
    the server, so they have been played.
    """

    def __init__(self, url: str, *, account_sid: str, call_sid: str, token: str) -> None:
        self.url = url
        self.account_sid = account_sid
        self.call_sid = call_sid
        self.token = token
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.audio = bytearray()  # what the caller heard, silence removed
        self.marks: list[str] = []  # marks echoed, in order
        self.clears = 0
        self.closed = threading.Event()
        self.close_error: BaseException | None = None
        self.lock = threading.Lock()
        self._conn: ClientConnection | None = None
        self._chunks = itertools.count(1)

    def open(self) -> None:
        self._conn = connect(self.url, open_timeout=10, legacy=True)
        self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        self._send(
            {
                "event": "start",
                "sequenceNumber": "1",
                "streamSid": self.stream_sid,
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "customParameters": {"token": self.token},
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
            }
        )
        threading.Thread(target=self._read, name="fake-twilio-stream", daemon=True).start()

    def send_caller_audio(self, frames: int) -> None:
        """`frames` 20 ms frames of (non-silent) caller audio on the inbound track."""
        payload = base64.b64encode(bytes(0x10 + i % 0x40 for i in range(FRAME_BYTES))).decode()
        for _ in range(frames):
            chunk = next(self._chunks)
            self._send(
                {
                    "event": "media",
                    "streamSid": self.stream_sid,
                    "media": {
                        "track": "inbound",
                        "chunk": str(chunk),
                        "timestamp": str(chunk * 20),
                        "payload": payload,
                    },
                }
            )

    def heard(self, text: str) -> bool:
        """The caller was played the fake TTS's audio of `text`."""
        with self.lock:
            return text.encode() in self.audio

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def _send(self, frame: dict[str, Any]) -> None:
        assert self._conn is not None
        self._conn.send(json.dumps(frame))

    def _read(self) -> None:
        assert self._conn is not None
        try:
            for message in self._conn:
                frame = json.loads(message)
                kind = frame.get("event")
                if kind == "media":
                    audio = base64.b64decode(frame["media"]["payload"])
                    with self.lock:
                        self.audio.extend(b for b in audio if b != SILENCE)
                elif kind == "mark":
                    with self.lock:  # counted before the server can learn of the echo
                        self.marks.append(frame["mark"]["name"])
                    self._send(
                        {"event": "mark", "streamSid": self.stream_sid, "mark": frame["mark"]}
                    )
                elif kind == "clear":
                    with self.lock:
                        self.clears += 1
        except ConnectionClosed as exc:
            self.close_error = exc
        finally:
            self.closed.set()

"""The gateway's own agent as responder (calls/services/agent_reply.py, chosen in
calls/services/auto_reply_worker.py): what it is sent, each reply kind, every failure.

docs/plugin-behaviour.md, "The gateway's agent as responder". The gateway is an
httpx.MockTransport (and, once, a real loopback HTTP server); its signature is checked by
the verification example printed in that section, read from the page and run here.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from calls import tasks
from calls.call_metadata import LAST_AUTO_REPLY_LATENCY_MS as LATENCY_KEY
from calls.models import Call, TranscriptEntry, Turn
from calls.services import agent_reply
from calls.services import auto_reply as responder
from calls.services.agent_reply import TRANSCRIPT_LIMIT, agent_request
from calls.services.auto_reply import responder_enabled, responder_run
from calls.services.events import event_apply
from calls.services.lifecycle import transcript_add
from calls.services.turn_records import turn_stages
from providers.base import EventType, NormalizedEvent
from providers.mock import MockProvider
from tests.fakes.llm import FakeLLM

pytestmark = pytest.mark.django_db

SECRET = "s3cret-shared-with-the-gateway"
GATEWAY = {"responder": {"url": "https://agent.example/voice/reply", "secret": SECRET}}
CALLER = "+15550001111"
OUR_NUMBER = "+15550000000"
TARGET = "+15555550177"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugin-behaviour.md"


def _docs_verifier() -> Callable[..., bool]:
    """The five-line `verify` printed in the docs, exactly as a gateway would paste it."""
    page = DOCS.read_text()
    section = page.split("## The gateway's agent as responder", 1)[1].split("\n## ", 1)[0]
    source = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert source is not None
    namespace: dict[str, Any] = {}
    exec(source.group(1), namespace)  # our own docs: running them is the check
    return namespace["verify"]


def test_the_readme_prints_the_same_verifier_as_the_docs() -> None:
    readme = (DOCS.parents[1] / "README.md").read_text()
    section = DOCS.read_text().split("## The gateway's agent as responder", 1)[1]
    printed = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert printed is not None and f"```python\n{printed.group(1)}```" in readme


class FakeGateway:
    """The gateway's endpoint: records each request, answers `body` with `status`."""

    def __init__(self) -> None:
        self.body: Any = {"spoken": "We open at nine."}
        self.status = 200
        self.during: Callable[[], None] | None = None  # runs while the agent "thinks"
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.during:
            self.during()
        if isinstance(self.body, bytes):
            return httpx.Response(self.status, content=self.body)
        return httpx.Response(self.status, json=self.body)

    def payload(self, index: int = -1) -> dict[str, Any]:
        return json.loads(self.requests[index].content)


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> FakeGateway:
    fake = FakeGateway()
    client = httpx.Client(transport=httpx.MockTransport(fake))
    monkeypatch.setattr(agent_reply, "HTTP_CLIENT", client)
    agent_reply._cached_webhook.cache_clear()
    return fake


@pytest.fixture
def sync_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replies run inline, before the event handling returns."""
    monkeypatch.setattr(
        responder,
        "DISPATCH",
        lambda call_id, entry_id: responder_run(call_id=call_id, entry_id=entry_id),
    )


@pytest.fixture
def answering(
    configure: Any, mock_carrier: MockProvider, gateway: FakeGateway, sync_dispatch: None
) -> MockProvider:
    configure(GATEWAY)
    return mock_carrier


def _inbound(make_call: Any, **fields: Any) -> Call:
    values = {"direction": "inbound", "state": "listening", "from_number": CALLER}
    return make_call(**{**values, "to_number": OUR_NUMBER, **fields})


def _speech(call: Call, text: str) -> None:
    event_apply(
        provider="mock",
        event=NormalizedEvent(
            type=EventType.SPEECH, id=str(uuid.uuid4()), call_id=call.call_id, transcript=text
        ),
    )


def _spoken(carrier: MockProvider) -> list[str]:
    return [fields["text"] for op, fields in carrier.sent if op == "play_text"]


def _bot_lines(call: Call) -> list[str]:
    return list(call.transcript.filter(speaker="bot").values_list("text", flat=True))


# --- the request -----------------------------------------------------------------------


def test_the_agent_gets_the_call_its_transcript_and_the_latest_words(
    answering: MockProvider, gateway: FakeGateway, make_call: Any
) -> None:
    call = _inbound(make_call)
    greeting = transcript_add(call=call, speaker="bot", text="Hello! How can I help you today?")
    transcript_add(call=call, speaker="user", text="are you", is_final=False)

    _speech(call, "Are you open today?")

    payload = gateway.payload()
    line = call.transcript.get(speaker="user", is_final=True)
    assert payload == {
        "callId": call.call_id,
        "direction": "inbound",
        "from": CALLER,
        "to": OUR_NUMBER,
        "transcript": [
            {"speaker": "bot", "text": greeting.text, "at": greeting.created_at.isoformat()},
            {"speaker": "user", "text": "Are you open today?", "at": line.created_at.isoformat()},
        ],
        "latest": "Are you open today?",
        "timestamp": payload["timestamp"],
    }
    assert payload["transcript"][0]["at"].endswith("+00:00")
    request = gateway.requests[0]
    assert str(request.url) == GATEWAY["responder"]["url"]
    assert request.headers["x-voicecall-timestamp"] == str(payload["timestamp"])


def test_the_transcript_is_the_calls_last_lines_up_to_the_one_answered(make_call: Any) -> None:
    call = _inbound(make_call)
    other = _inbound(make_call)
    transcript_add(call=other, speaker="user", text="another call's words")
    for n in range(TRANSCRIPT_LIMIT + 3):
        transcript_add(call=call, speaker="user", text=f"line {n}")
    answered = transcript_add(call=call, speaker="user", text="now?")
    transcript_add(call=call, speaker="bot", text="said after it")

    payload = agent_request(call, answered)

    texts = [line["text"] for line in payload["transcript"]]
    assert len(texts) == TRANSCRIPT_LIMIT
    assert texts[0] == "line 4" and texts[-1] == "now?"
    assert payload["latest"] == "now?"


def test_the_words_as_said_stand_in_for_a_redacted_stored_line(make_call: Any) -> None:
    call = _inbound(make_call)
    answered = transcript_add(call=call, speaker="user", text="Call me on [phone].")
    answered.text = "Call me on +15550009999."  # what the responder was handed as said

    payload = agent_request(call, answered)

    assert payload["transcript"][-1]["text"] == payload["latest"] == answered.text


def test_the_documented_verifier_accepts_our_request_and_refuses_tampering(
    answering: MockProvider, gateway: FakeGateway, make_call: Any, monkeypatch: Any
) -> None:
    verify = _docs_verifier()
    _speech(_inbound(make_call), "Are you open today?")
    request = gateway.requests[0]

    assert verify(request.content, request.headers, SECRET) is True
    assert verify(request.content, request.headers, "another secret") is False
    tampered = request.content.replace(b"open", b"shut")
    assert verify(tampered, request.headers, SECRET) is False
    # A new timestamp in the header alone does not pass: the signed one is in the body.
    later = httpx.Headers(request.headers)
    later["X-Voicecall-Timestamp"] = str(int(later["X-Voicecall-Timestamp"]) + 600)
    assert verify(request.content, later, SECRET) is False
    unsigned = httpx.Headers({"X-Voicecall-Timestamp": later["X-Voicecall-Timestamp"]})
    assert verify(request.content, unsigned, SECRET) is False
    # A captured request replayed after the five minutes is too old.
    sent = json.loads(request.content)["timestamp"]
    monkeypatch.setattr("time.time", lambda: sent + 301)
    assert verify(request.content, request.headers, SECRET) is False


# --- each reply kind -------------------------------------------------------------------


def test_spoken_words_are_said_recorded_and_timed_like_the_llms(
    answering: MockProvider, gateway: FakeGateway, make_call: Any, fake_clock: Any
) -> None:
    call = _inbound(make_call)
    gateway.during = lambda: fake_clock.advance(seconds=1.25)

    _speech(call, "Are you open today?")

    assert _spoken(answering) == ["We open at nine."]
    assert _bot_lines(call) == ["We open at nine."]
    call.refresh_from_db()
    assert call.state == "listening"
    assert call.metadata[LATENCY_KEY] == 1250
    turn = Turn.objects.get(call=call)
    line = call.transcript.get(speaker="bot")
    assert turn.reply_utterance_id == line.utterance_id
    assert turn_stages(turn)["replyMs"] == 1250


def test_an_empty_spoken_reply_stays_quiet(
    answering: MockProvider, gateway: FakeGateway, make_call: Any
) -> None:
    gateway.body = {"spoken": ""}
    call = _inbound(make_call)

    _speech(call, "hmm")

    assert len(gateway.requests) == 1
    assert _spoken(answering) == [] and _bot_lines(call) == []
    call.refresh_from_db()
    assert call.state == "listening" and LATENCY_KEY not in call.metadata


def test_spoken_words_are_cut_at_max_text_length(
    configure: Any, answering: MockProvider, gateway: FakeGateway, make_call: Any
) -> None:
    configure({**GATEWAY, "tts": {"maxTextLength": 10}})
    gateway.body = {"spoken": "We open at nine tomorrow."}

    _speech(_inbound(make_call), "When?")

    assert _spoken(answering) == ["We open at"]  # 10 characters, at a word boundary


def test_end_hangs_up_the_call(
    answering: MockProvider, gateway: FakeGateway, make_call: Any
) -> None:
    gateway.body = {"action": "end"}
    call = _inbound(make_call)

    _speech(call, "That's all, bye.")

    call.refresh_from_db()
    assert (call.state, call.end_reason) == ("hangup-bot", "hangup-bot")
    assert [op for op, _ in answering.sent] == ["hang_up"]
    assert _bot_lines(call) == []


def test_transfer_hands_the_call_over(
    answering: MockProvider, gateway: FakeGateway, make_call: Any
) -> None:
    gateway.body = {"action": "transfer", "to": TARGET, "message": "Connecting you."}
    call = _inbound(make_call)

    _speech(call, "Can I talk to a person?")

    call.refresh_from_db()
    assert call.state == "transferred"
    transfers = [fields for op, fields in answering.sent if op == "transfer"]
    assert [(t["to"], t["message"], t["caller_id"]) for t in transfers] == [
        (TARGET, "Connecting you.", OUR_NUMBER)
    ]


@pytest.mark.parametrize("to", ["+447700900123", "0800 123", ""])
def test_a_refused_transfer_target_is_logged_and_the_call_stays_up(
    configure: Any,
    answering: MockProvider,
    gateway: FakeGateway,
    make_call: Any,
    caplog: pytest.LogCaptureFixture,
    to: str,
) -> None:
    configure({**GATEWAY, "outbound": {"allowTo": ["+1"]}})
    gateway.body = {"action": "transfer", "to": to}
    call = _inbound(make_call)

    with caplog.at_level(logging.WARNING):
        _speech(call, "Put me through to London.")

    call.refresh_from_db()
    assert call.state == "listening"
    assert answering.sent == []
    assert "agent's transfer refused" in caplog.text


# --- failures: the call stays up and quiet ---------------------------------------------


def _timeout() -> None:
    raise httpx.ReadTimeout("the agent is thinking")


@pytest.mark.parametrize(
    ("status", "body", "during", "logged"),
    [
        (200, {}, _timeout, "Agent webhook timed out"),
        (503, {"spoken": "Hi"}, None, "Agent webhook HTTP 503"),
        (404, {"spoken": "Hi"}, None, "Agent webhook HTTP 404"),
        (200, b"{'spoken': 'Hi'}", None, "not JSON"),
        (200, {"spoken": "Hi", "voice": "nova"}, None, "not one of the documented shapes"),
        (200, {"spoken": ["Hi"]}, None, '"spoken" is not a string'),
    ],
)
def test_a_failing_gateway_leaves_the_call_up_and_quiet(
    answering: MockProvider,
    gateway: FakeGateway,
    make_call: Any,
    caplog: pytest.LogCaptureFixture,
    status: int,
    body: Any,
    during: Callable[[], None] | None,
    logged: str,
) -> None:
    gateway.status, gateway.body, gateway.during = status, body, during
    call = _inbound(make_call)

    with caplog.at_level(logging.WARNING):
        _speech(call, "Hello?")

    assert answering.sent == [] and _bot_lines(call) == []
    call.refresh_from_db()
    assert call.state == "listening" and LATENCY_KEY not in call.metadata
    assert "automatic reply failed" in caplog.text and logged in caplog.text


@pytest.mark.parametrize(
    "body",
    [{"spoken": "We open at nine."}, {"action": "end"}, {"action": "transfer", "to": TARGET}],
)
def test_a_reply_superseded_while_the_agent_thinks_is_dropped(
    answering: MockProvider,
    gateway: FakeGateway,
    make_call: Any,
    caplog: pytest.LogCaptureFixture,
    body: dict[str, Any],
) -> None:
    gateway.body = body
    call = _inbound(make_call)
    gateway.during = lambda: transcript_add(call=call, speaker="user", text="actually, wait")

    with caplog.at_level(logging.INFO):
        _speech(call, "What are your hours?")

    assert len(gateway.requests) == 1
    assert answering.sent == [] and _bot_lines(call) == []
    call.refresh_from_db()
    assert call.state == "listening"
    assert "Discarding superseded automatic reply" in caplog.text


# --- choosing the gateway ----------------------------------------------------------------


def test_the_gateway_wins_over_a_response_model(
    configure: Any, answering: MockProvider, gateway: FakeGateway, llm: FakeLLM, make_call: Any
) -> None:
    configure(
        {
            **GATEWAY,
            "responseModel": "openai/gpt-4o-mini",
            "tts": {"providers": {"openai": {"apiKey": "sk-config"}}},
            "numbers": {OUR_NUMBER: {"responseModel": "openai/gpt-4.1-mini"}},
        }
    )

    _speech(_inbound(make_call, metadata={"numberRouteKey": OUR_NUMBER}), "Hi")

    assert llm.requests == []
    assert len(gateway.requests) == 1
    assert _spoken(answering) == ["We open at nine."]


def test_the_gateway_needs_no_model_key(configure: Any, settings: Any) -> None:
    settings.OPENAI_API_KEY = ""
    configure(GATEWAY)

    assert responder_enabled() is True


def test_every_reply_reuses_one_client_per_process(configure: Any) -> None:
    agent_reply._cached_webhook.cache_clear()
    cfg = configure(GATEWAY)
    first = agent_reply._cached_webhook(
        cfg.responder.url, SECRET, cfg.responder.timeout_ms / 1000, None
    )
    again = agent_reply._cached_webhook(
        cfg.responder.url, SECRET, cfg.responder.timeout_ms / 1000, None
    )
    assert first is again and first._http is again._http
    agent_reply._cached_webhook.cache_clear()


def test_the_celery_task_asks_the_gateway_too(
    configure: Any,
    mock_carrier: MockProvider,
    gateway: FakeGateway,
    make_call: Any,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"  # dispatch as the Celery task (eager here)
    configure(GATEWAY)
    queued: list[tuple[Any, ...]] = []
    delay = tasks.respond_to_caller.delay
    call = _inbound(make_call)

    def record(*args: Any) -> Any:
        queued.append(args)
        return delay(*args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tasks.respond_to_caller, "delay", record)
        with django_capture_on_commit_callbacks(execute=True):
            _speech(call, "Are you open today?")

    line = call.transcript.get(speaker="user")
    assert queued == [(call.call_id, line.pk)]
    assert gateway.payload()["latest"] == "Are you open today?"
    assert _spoken(mock_carrier) == ["We open at nine."]


# --- over real HTTP ----------------------------------------------------------------------


class _LoopbackGateway:
    """A real HTTP server on 127.0.0.1: records (headers, body); answers `reply`, or holds
    the answer until `release` is set."""

    def __init__(self) -> None:
        self.seen: list[tuple[Mapping[str, str], bytes]] = []
        self.reply = b'{"spoken": "We open at nine."}'
        self.hold = False
        self.release = threading.Event()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                gateway.seen.append((self.headers, body))
                if gateway.hold:
                    gateway.release.wait(10)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(gateway.reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/voice/reply"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def loopback(
    configure: Any,
    mock_carrier: MockProvider,
    sync_dispatch: None,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[_LoopbackGateway]:
    server = _LoopbackGateway()
    # A real transport: the suite's network guard only lets explicit transports through.
    monkeypatch.setattr(agent_reply, "HTTP_CLIENT", httpx.Client(transport=httpx.HTTPTransport()))
    agent_reply._cached_webhook.cache_clear()
    configure({"responder": {"url": server.url, "secret": SECRET, "timeoutMs": 200}})
    yield server
    server.close()
    agent_reply._cached_webhook.cache_clear()


def test_a_real_request_passes_the_documented_verifier(
    loopback: _LoopbackGateway, mock_carrier: MockProvider, make_call: Any
) -> None:
    _speech(_inbound(make_call), "Are you open today?")

    headers, body = loopback.seen[0]
    assert _docs_verifier()(body, headers, SECRET) is True
    assert json.loads(body)["latest"] == "Are you open today?"
    assert _spoken(mock_carrier) == ["We open at nine."]


def test_a_gateway_slower_than_timeout_ms_leaves_the_call_quiet(
    loopback: _LoopbackGateway,
    mock_carrier: MockProvider,
    make_call: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    loopback.hold = True
    call = _inbound(make_call)

    with caplog.at_level(logging.WARNING):
        _speech(call, "Hello?")

    assert len(loopback.seen) == 1
    assert mock_carrier.sent == [] and _bot_lines(call) == []
    assert "Agent webhook timed out" in caplog.text
    assert TranscriptEntry.objects.filter(call=call, speaker="user").count() == 1

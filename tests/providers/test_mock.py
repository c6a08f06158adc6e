"""The mock carrier: its webhook JSON and the simulated remote carrier.

docs/carriers.md, "Mock carrier".
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Any

import httpx
import pytest

from providers import mock
from providers.base import CallTarget, EventType, PlaceCall, WebhookRequest
from providers.errors import WebhookInvalid
from providers.mock import MockProvider


def _request(body: Any) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return WebhookRequest(
        method="POST",
        url="http://127.0.0.1:3334/voice/webhook",
        path="/voice/webhook",
        query={},
        headers={},
        body=raw,
    )


def test_defaults_fill_absent_fields_and_explicit_falsy_values_are_kept() -> None:
    provider = MockProvider(settings={})
    [ended, speech] = provider.parse_webhook(
        _request(
            {
                "events": [
                    {"type": "call.ended", "callId": "mock-1"},
                    {"type": "call.speech", "callId": "mock-1", "isFinal": False, "transcript": ""},
                ]
            }
        )
    )
    assert ended.type == EventType.ENDED and ended.reason == "completed"
    assert speech.is_final is False and speech.transcript == ""
    assert ended.provider_call_id == "mock-1"


@pytest.mark.parametrize(
    "body",
    [
        b"{nope",
        [1],
        {"events": "x"},
        {"event": {"type": "x"}},
        {"event": {"type": "call.ringing"}},
        {"event": {"type": "call.ringing", "callId": "a", "timestamp": "yesterday"}},
    ],
)
def test_bad_bodies_are_webhook_invalid(body: Any) -> None:
    with pytest.raises(WebhookInvalid):
        MockProvider(settings={}).parse_webhook(_request(body))


def test_the_same_body_has_the_same_replay_key() -> None:
    provider = MockProvider(settings={})
    body = {"event": {"type": "call.ringing", "callId": "a"}}
    assert (
        provider.verify_webhook(_request(body)).request_key
        == provider.verify_webhook(_request(body)).request_key
    )


class Recorder(MockProvider):
    """Captures what the simulated carrier would POST to our webhook."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(settings={"simulate": True, **settings})
        self.posted: list[dict[str, Any]] = []
        self.posted_event = threading.Event()

    def _post(self, url: str, event: dict[str, Any]) -> None:
        self.posted.append(event)
        self.posted_event.set()


def _wait_for(recorder: Recorder, count: int) -> list[str]:
    deadline = time.monotonic() + 5
    while len(recorder.posted) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return [event["type"] for event in recorder.posted]


def test_a_simulated_call_rings_then_answers() -> None:
    carrier = Recorder(ringDelayMs=10, answerDelayMs=10)
    carrier.place_call(
        PlaceCall(
            call_id="c1",
            to_number="+15555550123",
            from_number="+15550000000",
            webhook_url="http://x",
            mode="notify",
        )
    )
    assert _wait_for(carrier, 2) == ["call.ringing", "call.answered"]


def test_the_simulated_caller_replies_then_hangs_up_when_left_idle() -> None:
    carrier = Recorder(replyDelayMs=10, callerIdleHangupMs=30, callerReplies=["Sure."])
    target = CallTarget(
        call_id="c1", provider_call_id="mock-c1", webhook_url="http://x", turn_token="t1"
    )
    carrier.start_listening(target)
    assert _wait_for(carrier, 2) == ["call.speech", "call.ended"]
    assert carrier.posted[0]["transcript"] == "Sure." and carrier.posted[0]["turnToken"] == "t1"
    assert carrier.posted[1]["reason"] == "hangup-user"


def test_speaking_to_the_simulated_caller_again_keeps_them_on_the_line() -> None:
    carrier = Recorder(replyDelayMs=10, callerIdleHangupMs=600, callerReplies=["One", "Two"])
    target = CallTarget(call_id="c1", provider_call_id="mock-c1", webhook_url="http://x")
    carrier.start_listening(target)
    _wait_for(carrier, 1)
    carrier.play_text(target, "And then?", listen_after=True)
    _wait_for(carrier, 2)
    time.sleep(0.3)  # nothing else arrives: the idle hang-up was pushed back
    assert [e["type"] for e in carrier.posted] == ["call.speech", "call.speech"]
    assert [e["transcript"] for e in carrier.posted] == ["One", "Two"]
    carrier.close()


def test_the_simulated_carrier_reports_its_words_said() -> None:
    carrier = Recorder()
    assert carrier.speech_done_signal is True
    target = CallTarget(
        call_id="c1", provider_call_id="mock-c1", webhook_url="http://x", utterance_id="u-1"
    )
    carrier.play_text(target, "Your table is ready", listen_after=False)
    assert _wait_for(carrier, 1) == ["call.spoken"]
    assert carrier.posted[0]["utteranceId"] == "u-1"
    [event] = carrier.parse_webhook(_request({"event": carrier.posted[0]}))
    assert (event.type, event.utterance_id, event.interrupted) == (
        EventType.SPOKEN,
        "u-1",
        False,
    )
    carrier.close()


def test_without_simulation_nothing_reports_words_said() -> None:
    # Nothing calls back: the services write the bot line when the words are sent.
    assert MockProvider(settings={"simulate": False}).speech_done_signal is False


def test_an_utterance_id_must_be_a_string() -> None:
    body = {"event": {"type": "call.spoken", "callId": "a", "utteranceId": 7}}
    with pytest.raises(WebhookInvalid, match="utteranceId"):
        MockProvider(settings={}).parse_webhook(_request(body))


def test_the_simulated_carrier_confirms_an_answer_command() -> None:
    carrier = Recorder()
    target = CallTarget(call_id="c1", provider_call_id="mock-in-1", webhook_url="http://x")
    carrier.answer_call(target)
    assert _wait_for(carrier, 1) == ["call.answered"]
    assert carrier.posted[0]["callId"] == "mock-in-1"
    carrier.close()


def test_without_simulation_an_answer_command_is_only_recorded() -> None:
    carrier = MockProvider(settings={"simulate": False})
    carrier.answer_call(CallTarget(call_id="c1", provider_call_id="mock-in-1"))
    assert carrier.sent == [("answer_call", {"provider_call_id": "mock-in-1"})]
    assert not carrier._timers  # nothing will call back


class _Webhook:
    """A loopback webhook that answers the statuses in `answers`, then 200; the simulated
    carrier's posts reach it (the suite's guard lets only loopback through, explicitly)."""

    def __init__(self, answers: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
        def post(url: str, **kwargs: Any) -> httpx.Response:
            with httpx.Client(transport=httpx.HTTPTransport()) as client:
                return client.post(url, **kwargs)

        monkeypatch.setattr(mock.httpx, "post", post)
        self.answers = answers
        self.bodies: list[dict[str, Any]] = []
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                hook.bodies.append(json.loads(self.rfile.read(length)))
                status = hook.answers.pop(0) if hook.answers else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/voice/webhook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(("answers", "deliveries"), [([429, 503], 3), ([429] * 12, 9)])
def test_a_report_refused_for_load_is_delivered_again(
    answers: list[int], deliveries: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every simulated report comes from 127.0.0.1: a busy service's per-peer limit refuses
    # some with 429, and a lost call.spoken left a `speak` with `wait` hanging.
    monkeypatch.setattr(mock, "RETRY_FIRST_DELAY_S", 0.01)
    monkeypatch.setattr(mock, "RETRY_MAX_DELAY_S", 0.02)
    hook = _Webhook(answers, monkeypatch)
    try:
        MockProvider(settings={"simulate": True})._post(hook.url, {"type": "call.spoken"})
        assert [body["event"]["type"] for body in hook.bodies] == ["call.spoken"] * deliveries
    finally:
        hook.close()


def test_a_report_refused_as_bad_is_not_sent_again(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = _Webhook([400], monkeypatch)
    try:
        MockProvider(settings={"simulate": True})._post(hook.url, {"type": "call.spoken"})
        assert len(hook.bodies) == 1
        assert "gave up on call.spoken after 1 attempt(s): 400" in caplog.text
    finally:
        hook.close()

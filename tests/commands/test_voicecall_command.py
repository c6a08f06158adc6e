"""`manage.py voicecall …`: every subcommand in-process, and live-call commands over the API."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from io import StringIO
from typing import Any

import httpx
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from calls.carrier import set_provider
from calls.cli import client, setup_checks
from calls.config import reset_config
from calls.models import ApiToken, Call, CallEvent, TranscriptEntry
from calls.services.events import event_apply
from calls.services.tokens import token_authenticate
from providers.base import EventType, NormalizedEvent
from providers.mock import MockProvider

TO = "+15555550123"
TWILIO = {
    "provider": "twilio",
    "fromNumber": "+15550001234",
    "twilio": {"accountSid": "AC123", "authToken": "t"},
}


def run(*args: str) -> str:
    out = StringIO()
    call_command("voicecall", *args, stdout=out)
    return out.getvalue()


def run_json(*args: str) -> Any:
    return json.loads(run(*args))


def fails(*args: str) -> tuple[str, str]:
    """(CommandError message, what was printed before it)."""
    out = StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("voicecall", *args, stdout=out)
    return str(caught.value), out.getvalue()


@pytest.fixture(autouse=True)
def no_server(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Nothing listens on the server port, so live-call commands run in-process."""
    probed: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        probed.append(str(request.url))
        raise httpx.ConnectError("connection refused", request=request)

    monkeypatch.setattr(client, "TRANSPORT_FACTORY", lambda: httpx.MockTransport(refuse))
    return probed


@pytest.fixture
def carrier(configure: Any) -> Callable[..., MockProvider]:
    """carrier({...config...}) installs the config and a non-simulating mock carrier."""

    def install(raw: dict[str, Any] | None = None) -> MockProvider:
        configure(raw or {})
        provider = MockProvider(settings={"simulate": False})
        set_provider(provider)
        return provider

    return install


# -- call / start -----------------------------------------------------------------------


def test_call_places_a_conversation_call_in_process(mock_carrier, db, no_server):
    out = run_json("call", "--to", TO, "-m", "Hello there")
    call = Call.objects.get(public_id=out["callId"])
    assert out == {"callId": call.call_id}
    assert (call.to_number, call.mode) == (TO, "conversation")
    assert call.metadata["initialMessage"] == "Hello there"
    assert mock_carrier.sent[0] == ("place_call", {"to": TO, "mode": "conversation"})
    assert no_server == ["http://127.0.0.1:3334/healthz"]


def test_call_defaults_to_the_configured_to_number(carrier, db):
    carrier({"toNumber": "+15555550199"})
    out = run_json("call", "-m", "Hi")
    assert Call.objects.get(public_id=out["callId"]).to_number == "+15555550199"


def test_call_without_to_or_to_number_fails(mock_carrier, db):
    message, _ = fails("call", "-m", "Hi")
    assert message == "Missing --to and no toNumber configured"
    assert not Call.objects.exists()


def test_call_with_an_unknown_mode_is_refused_as_rpc_and_rest_refuse_it(carrier, db):
    carrier({"outbound": {"defaultMode": "notify"}})
    message, _ = fails("call", "-t", TO, "-m", "Hi", "--mode", "shout")
    assert message == 'mode must be "notify" or "conversation"'
    assert not Call.objects.exists()


def test_call_with_a_blank_message_fails_with_message_required(mock_carrier, db):
    message, _ = fails("call", "-t", TO, "-m", "   ")
    assert message == "message required"
    assert mock_carrier.sent == []


def test_start_passes_mode_and_dtmf_sequence(mock_carrier, db):
    out = run_json("start", "--to", TO, "--dtmf-sequence", "12w#")
    call = Call.objects.get(public_id=out["callId"])
    assert call.mode == "conversation"
    assert call.metadata["dtmfSequence"] == "12w#"
    assert "initialMessage" not in call.metadata


def test_start_requires_to(mock_carrier, db):
    message, _ = fails("start", "--message", "Hi")
    assert "--to" in message


# -- continue / speak / dtmf / end / status ---------------------------------------------


def _reply_when_listening(pk: int, text: str) -> None:
    """Act as the caller: answer the turn once the call waits for one."""
    try:
        give_up = time.monotonic() + 10
        while time.monotonic() < give_up:
            token = Call.objects.filter(pk=pk).values_list("turn_token", flat=True).first()
            if token:
                call = Call.objects.get(pk=pk)
                event_apply(
                    provider="mock",
                    event=NormalizedEvent(
                        type=EventType.SPEECH,
                        id="reply-1",
                        call_id=call.call_id,
                        transcript=text,
                        turn_token=token,
                    ),
                )
                return
            time.sleep(0.02)
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_continue_in_process_prints_the_callers_reply(carrier, make_call):
    sent = carrier({"transcriptTimeoutMs": 5000}).sent
    call = make_call()
    caller = threading.Thread(target=_reply_when_listening, args=(call.pk, "yes please"))
    caller.start()
    out = run_json("continue", "--call-id", call.call_id, "--message", "Book it?")
    caller.join(timeout=5)
    assert out == {"success": True, "transcript": "yes please"}
    assert ("play_text", {"text": "Book it?", "listen_after": True}) in sent
    call.refresh_from_db()
    assert call.metadata["turnCount"] == 1


@pytest.mark.django_db(transaction=True)
def test_continue_on_an_ended_call_fails_with_the_services_error(mock_carrier, make_call):
    call = make_call(state="completed")
    message, out = fails("continue", "--call-id", call.call_id, "--message", "Hello?")
    assert message == "Call has ended"
    assert out == ""


def test_speak_plays_text_into_the_call(mock_carrier, make_call):
    call = make_call()
    assert run_json("speak", "--call-id", call.call_id, "--message", "One moment") == {
        "success": True,
        "utteranceId": TranscriptEntry.objects.get(call=call).utterance_id,
    }
    assert mock_carrier.sent == [("play_text", {"text": "One moment", "listen_after": False})]
    assert TranscriptEntry.objects.get(call=call).text == "One moment"


@pytest.mark.parametrize(
    "sub, extra", [("speak", ["--message", "Hi"]), ("end", []), ("dtmf", ["--digits", "1"])]
)
def test_live_call_commands_on_an_unknown_call_fail_with_call_not_found(
    mock_carrier, db, sub, extra
):
    message, _ = fails(sub, "--call-id", "no-such-call", *extra)
    assert message == "Call not found"


def test_dtmf_sends_digits(mock_carrier, make_call):
    call = make_call()
    assert run_json("dtmf", "--call-id", call.call_id, "--digits", "12#") == {"success": True}
    assert mock_carrier.sent == [("send_dtmf", {"digits": "12#"})]


def test_dtmf_rejects_digits_outside_the_allowed_set(mock_carrier, make_call):
    message, _ = fails("dtmf", "--call-id", make_call().call_id, "--digits", "12x")
    assert message.startswith("digits may only contain")
    assert mock_carrier.sent == []


def test_end_hangs_up(mock_carrier, make_call):
    call = make_call()
    assert run_json("end", "--call-id", call.call_id) == {"success": True}
    call.refresh_from_db()
    assert call.state == "hangup-bot"
    assert mock_carrier.sent[0][0] == "hang_up"


def test_status_shows_one_call_all_active_calls_or_not_found(mock_carrier, make_call):
    live, done = make_call(), make_call(state="completed")
    one = run_json("status", "--call-id", live.call_id, "--json")
    assert one["found"] is True and one["call"]["callId"] == live.call_id
    listing = run_json("status")
    assert [c["callId"] for c in listing["calls"]] == [live.call_id]
    assert done.call_id not in run("status")
    assert run_json("status", "--call-id", "nope") == {"found": False}


# -- tail / latency ---------------------------------------------------------------------


def _event(call: Call, kind: str, key: str, **payload: Any) -> CallEvent:
    return CallEvent.objects.create(call=call, type=kind, dedupe_key=key, payload=payload)


def test_tail_no_follow_prints_the_last_events_as_json_lines(make_call):
    call = make_call()
    _event(call, "call.ringing", "a")
    _event(call, "call.answered", "b")
    _event(call, "call.speech", "c", transcript="hello")
    lines = run("tail", "--no-follow", "--since", "2").splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["type"] for e in events] == ["call.answered", "call.speech"]
    assert events[1]["callId"] == call.call_id
    assert events[1]["payload"] == {"transcript": "hello"}
    assert events[1]["at"].endswith("Z")


def test_tail_filters_by_call(make_call):
    mine, other = make_call(), make_call()
    _event(mine, "call.ringing", "a")
    _event(other, "call.answered", "b")
    events = [
        json.loads(x) for x in run("tail", "--no-follow", "--call-id", mine.call_id).splitlines()
    ]
    assert [e["callId"] for e in events] == [mine.call_id]
    assert fails("tail", "--no-follow", "--call-id", "nope")[0] == "Call not found"


def test_tail_follows_events_recorded_after_it_started(make_call, fake_clock):
    call = make_call()
    _event(call, "call.ringing", "old-1")
    _event(call, "call.answered", "old-2")
    added: list[CallEvent] = []

    def record_new_event(_clock: Any) -> None:
        if not added:
            added.append(_event(call, "call.speech", "new", transcript="hi"))

    fake_clock.on_sleep.append(record_new_event)
    lines = run("tail", "--since", "1", "--max-events", "2", "--poll", "10").splitlines()
    assert [json.loads(x)["type"] for x in lines] == ["call.answered", "call.speech"]


def test_latency_reports_nearest_rank_percentiles(make_call):
    start = timezone.now()
    for minutes, latency in enumerate([400, 100, 300, 200]):
        make_call(
            started_at=start + timedelta(minutes=minutes),
            metadata={"lastTurnLatencyMs": latency, "lastTurnListenWaitMs": 50},
        )
    make_call(started_at=start - timedelta(hours=1), metadata={})
    stats = run_json("latency")
    assert stats["recordsScanned"] == 5
    assert stats["turnLatency"] == {
        "count": 4,
        "minMs": 100,
        "maxMs": 400,
        "avgMs": 250,
        "p50Ms": 200,
        "p95Ms": 400,
    }
    assert run_json("latency", "--last", "2")["turnLatency"]["maxMs"] == 300


# -- setup / smoke ----------------------------------------------------------------------


def test_setup_json_is_ok_for_the_mock_provider(configure):
    configure({})
    report = run_json("setup", "--json")
    assert report["ok"] is True
    assert [c["id"] for c in report["checks"]] == [
        "plugin-enabled",
        "provider",
        "provider-config",
        "webhook-exposure",
        "mode",
        "tts",
        "stt",
        "realtime",
    ]
    assert all(c["ok"] for c in report["checks"])


STREAMING = {
    **TWILIO,
    "publicUrl": "https://voice.example.com/voice/webhook",
    "streaming": {"enabled": True, "providers": {"openai": {"apiKey": "sk-stt"}}},
    "tts": {"provider": "elevenlabs", "providers": {"elevenlabs": {"apiKey": "xi-key"}}},
}


def _checks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in report["checks"]}


class Vendors:
    """OpenAI and ElevenLabs at their HTTP boundary: which keys they accept."""

    def __init__(self, accepted: set[str], down: set[str] = frozenset()) -> None:
        self.accepted, self.down = accepted, down
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        key = request.headers.get("xi-api-key") or request.headers.get("authorization", "")
        key = key.removeprefix("Bearer ")
        return httpx.Response(200 if key in self.accepted else 401, json={"data": []})


@pytest.fixture
def vendors(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Vendors]:
    def install(accepted: set[str], down: set[str] = frozenset()) -> Vendors:
        fake = Vendors(accepted, down)
        monkeypatch.setattr(
            setup_checks, "PROBE_CLIENT", httpx.Client(transport=httpx.MockTransport(fake))
        )
        return fake

    return install


def test_setup_names_the_speech_vendors_a_streaming_call_will_ask(configure, vendors):
    configure(STREAMING)
    fake = vendors(set())
    checks = _checks(setup_checks.setup_report())
    assert checks["tts"] == {
        "id": "tts",
        "ok": True,
        "message": "elevenlabs: key set (--probe to try it)",
    }
    assert checks["stt"]["ok"] is True and checks["stt"]["message"].startswith("openai: key set")
    assert checks["realtime"] == {"id": "realtime", "ok": True, "message": "off"}
    assert fake.requests == []  # nothing leaves the machine without --probe


def test_setup_fails_when_a_streaming_vendor_has_no_key(configure, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    configure({**STREAMING, "streaming": {"enabled": True}})
    message, out = fails("setup", "--json")
    checks = _checks(json.loads(out))
    assert checks["stt"]["ok"] is False
    assert "streaming.providers.openai.apiKey is required" in checks["stt"]["message"]
    assert checks["tts"]["ok"] is True
    assert message == "Voice Call setup needs attention."


def test_setup_probe_tries_each_key_at_its_vendor(configure, vendors):
    configure(STREAMING)
    fake = vendors({"xi-key"})
    message, out = fails("setup", "--json", "--probe")
    checks = _checks(json.loads(out))
    assert checks["tts"] == {"id": "tts", "ok": True, "message": "elevenlabs: key accepted"}
    assert checks["stt"] == {
        "id": "stt",
        "ok": False,
        "message": "openai refused the key (HTTP 401)",
    }
    assert sorted(str(r.url) for r in fake.requests) == [
        "https://api.elevenlabs.io/v1/models",
        "https://api.openai.com/v1/models",
    ]
    assert "sk-stt" not in out and "xi-key" not in out  # a key is never printed


def test_setup_probe_reports_an_unreachable_vendor(configure, vendors):
    configure(STREAMING)
    vendors({"xi-key", "sk-stt"}, down={"api.openai.com"})
    _, out = fails("setup", "--json", "--probe")
    checks = _checks(json.loads(out))
    assert checks["stt"]["message"] == "openai unreachable at api.openai.com: ConnectError"
    assert checks["tts"]["ok"] is True


def test_setup_probe_asks_the_realtime_model_s_vendor(configure, vendors):
    configure(
        {
            **TWILIO,
            "publicUrl": "https://voice.example.com/voice/webhook",
            "inboundPolicy": "open",
            "realtime": {
                "enabled": True,
                "providers": {"openai": {"apiKey": "sk-rt", "baseUrl": "https://proxy.test/v1"}},
            },
        }
    )
    fake = vendors({"sk-rt"})
    checks = _checks(setup_checks.setup_report(probe=True))
    assert checks["realtime"] == {"id": "realtime", "ok": True, "message": "openai: key accepted"}
    assert checks["tts"]["ok"] and "realtime model" in checks["tts"]["message"]
    assert [str(r.url) for r in fake.requests] == ["https://proxy.test/v1/models"]


def test_setup_fails_for_twilio_with_a_loopback_public_url(configure):
    configure({**TWILIO, "publicUrl": "http://127.0.0.1:3334/voice/webhook"})
    message, out = fails("setup", "--json")
    report = json.loads(out)
    checks = {c["id"]: c for c in report["checks"]}
    assert report["ok"] is False
    assert checks["webhook-exposure"]["ok"] is False
    assert "127.0.0.1" in checks["webhook-exposure"]["message"]
    assert checks["provider"] == {"id": "provider", "ok": True, "message": "Provider: twilio"}
    assert message == "Voice Call setup needs attention."


@pytest.mark.parametrize(
    "exposure, ok",
    [
        ({"publicUrl": "https://voice.example.com/voice/webhook"}, True),
        ({"publicUrl": "https://10.1.2.3/voice/webhook"}, False),
        ({"publicUrl": "https://localhost/voice/webhook"}, False),
        ({"tunnel": {"provider": "ngrok"}}, True),
        ({}, False),
    ],
)
def test_setup_webhook_exposure_for_a_real_carrier(configure, exposure, ok):
    configure({**TWILIO, **exposure})
    report = setup_checks.setup_report()
    assert next(c for c in report["checks"] if c["id"] == "webhook-exposure")["ok"] is ok


def test_setup_text_lists_ok_and_fail_lines(configure):
    configure({**TWILIO, "publicUrl": "http://192.168.1.5:3334/voice/webhook"})
    _, out = fails("setup")
    lines = out.splitlines()
    assert lines[0] == "Voice Call setup: needs attention"
    assert "OK provider: Provider: twilio" in lines
    assert any(line.startswith("FAIL webhook-exposure: ") for line in lines)


def test_setup_shows_config_errors_when_the_config_does_not_load(settings, tmp_path):
    path = tmp_path / "voicecall.json5"
    path.write_text(
        json.dumps(
            {
                "provider": "twilio",
                "fromNumber": "+15550001234",
                "twilio": {"accountSid": "AC123"},
                "streaming": {"enabled": True},
                "realtime": {"enabled": True},
            }
        )
    )
    settings.VOICECALL_CONFIG = str(path)
    reset_config()  # load from the file, not the test default
    _, out = fails("setup", "--json")
    checks = {c["id"]: c for c in json.loads(out)["checks"]}
    assert checks["provider"]["message"] == "Provider: twilio"
    assert checks["provider-config"]["ok"] is False
    assert "twilio.authToken is required" in checks["provider-config"]["message"]
    assert checks["mode"]["ok"] is False


def test_smoke_without_to_skips_the_live_call(mock_carrier):
    out = run("smoke")
    assert out.splitlines()[0] == "Voice Call setup: OK"
    assert out.splitlines()[-1] == "live-call: skipped (pass --to and --yes to place one)"
    assert mock_carrier.sent == []


def test_smoke_with_to_but_no_yes_is_a_dry_run(mock_carrier, db):
    result = run_json("smoke", "--to", TO, "--json")
    assert result["liveCall"] is False
    assert result["wouldCall"] == {
        "to": TO,
        "message": "OpenClaw voice call smoke test.",
        "mode": "notify",
    }
    assert not Call.objects.exists()


def test_smoke_with_to_and_yes_places_a_notify_call(mock_carrier, db):
    result = run_json("smoke", "-t", TO, "--yes", "--json")
    call = Call.objects.get(public_id=result["callId"])
    assert (result["ok"], result["liveCall"], result["setup"]["ok"]) == (True, True, True)
    assert call.mode == "notify"
    assert call.metadata["initialMessage"] == "OpenClaw voice call smoke test."


def test_smoke_with_failing_setup_places_nothing_and_exits_non_zero(configure, db):
    configure({**TWILIO, "publicUrl": "http://127.0.0.1:3334/voice/webhook"})
    _, out = fails("smoke", "-t", TO, "--yes", "--json")
    assert json.loads(out)["ok"] is False
    assert not Call.objects.exists()


# -- token ------------------------------------------------------------------------------


def test_token_create_prints_the_secret_once_and_it_authenticates(db):
    created = run_json("token", "create", "--name", "gateway", "--ttl-hours", "2")
    token = token_authenticate(created["token"])
    assert isinstance(token, ApiToken) and token.pk == created["id"]
    assert created["name"] == "gateway"
    assert token.expires_at is not None
    assert token.expires_at - timezone.now() > timedelta(hours=1, minutes=59)


def test_token_create_rejects_a_non_positive_ttl(db):
    message, _ = fails("token", "create", "--name", "x", "--ttl-hours", "0")
    assert message == "--ttl-hours must be a positive number"
    assert not ApiToken.objects.exists()


def test_token_list_shows_rows_without_secrets(db):
    secret = run_json("token", "create", "--name", "gateway")["token"]
    out = run("token", "list")
    rows = json.loads(out)
    assert [(r["name"], r["usable"]) for r in rows] == [("gateway", True)]
    assert secret not in out


def test_token_revoke_disables_the_token(db):
    created = run_json("token", "create", "--name", "gateway")
    row = run_json("token", "revoke", str(created["id"]))
    assert row["revokedAt"] is not None and row["usable"] is False
    assert token_authenticate(created["token"]) is None
    message, _ = fails("token", "revoke", "999")
    assert message == "Token 999 not found"


# -- remote mode (a server answers /healthz) --------------------------------------------


class FakeServer:
    """Answers /healthz and /api/rpc; `answer(body)` builds each RPC response."""

    def __init__(self, answer: Callable[[dict[str, Any]], httpx.Response]) -> None:
        self.answer = answer
        self.rpc: list[tuple[dict[str, Any], httpx.Request]] = []
        self.urls: list[str] = []
        self.bearer_at_request: list[Any] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(str(request.url))
        if request.url.path == "/healthz":
            return httpx.Response(200, json={"ok": True, "service": "voicecall"})
        body = json.loads(request.content)
        secret = request.headers["Authorization"].removeprefix("Bearer ")
        self.bearer_at_request.append(token_authenticate(secret))
        self.rpc.append((body, request))
        return self.answer(body)


def result(value: dict[str, Any]) -> Callable[[dict[str, Any]], httpx.Response]:
    return lambda body: httpx.Response(
        200, json={"jsonrpc": "2.0", "id": body["id"], "result": value}
    )


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeServer]:
    def start(answer: Callable[[dict[str, Any]], httpx.Response]) -> FakeServer:
        fake = FakeServer(answer)
        monkeypatch.setattr(client, "TRANSPORT_FACTORY", lambda: httpx.MockTransport(fake.handle))
        return fake

    return start


@pytest.fixture(autouse=True)
def _cli_token_dir(settings, tmp_path):
    """The CLI keeps its token in the data dir: a fresh one per test."""
    settings.DATA_DIR = tmp_path


def test_remote_call_sends_json_rpc_with_a_minted_bearer_token(server, mock_carrier, db):
    fake = server(result({"callId": "remote-1", "initiated": True}))
    assert run_json("call", "--to", TO, "-m", "Hi", "--mode", "notify") == {"callId": "remote-1"}
    body, request = fake.rpc[0]
    assert {k: body[k] for k in ("jsonrpc", "method", "params")} == {
        "jsonrpc": "2.0",
        "method": "voicecall.initiate",
        "params": {"to": TO, "message": "Hi", "mode": "notify"},
    }
    assert str(request.url) == "http://127.0.0.1:3334/api/rpc"
    minted = fake.bearer_at_request[0]
    assert isinstance(minted, ApiToken) and minted.name == "cli (this host)"
    assert not Call.objects.exists() and mock_carrier.sent == []


def test_every_command_reuses_the_one_local_cli_token(server, db, tmp_path):
    fake = server(result({"success": True}))
    run_json("end", "--call-id", "abc")
    run_json("end", "--call-id", "def")
    assert ApiToken.objects.count() == 1  # not a row per command
    assert fake.bearer_at_request[0] == fake.bearer_at_request[1]
    kept = tmp_path / "cli-token"
    assert kept.stat().st_mode & 0o777 == 0o600


def test_a_revoked_local_cli_token_is_replaced(server, db):
    fake = server(result({"success": True}))
    run_json("end", "--call-id", "abc")
    first = ApiToken.objects.get()
    first.revoked_at = timezone.now()
    first.save()
    run_json("end", "--call-id", "abc")
    assert ApiToken.objects.count() == 2
    assert fake.bearer_at_request[1] != first and fake.bearer_at_request[1].revoked_at is None


def test_remote_mode_uses_voicecall_api_token_from_env(server, monkeypatch, db):
    monkeypatch.setenv("VOICECALL_API_TOKEN", "static-secret")
    fake = server(result({"success": True}))
    run_json("end", "--call-id", "abc")
    assert fake.rpc[0][1].headers["Authorization"] == "Bearer static-secret"
    assert fake.rpc[0][0]["params"] == {"callId": "abc"}
    assert not ApiToken.objects.exists()


def test_remote_mode_finds_the_server_from_config_or_env(server, configure, monkeypatch, db):
    configure({"serve": {"bind": "0.0.0.0", "port": 4010}})
    fake = server(result({"found": False}))
    run("status")
    assert fake.urls[0] == "http://127.0.0.1:4010/healthz"
    monkeypatch.setenv("VOICECALL_SERVER_URL", "https://voice.example.com/")
    run("status")
    assert fake.urls[-1] == "https://voice.example.com/api/rpc"


def test_remote_json_rpc_error_becomes_its_message(server, db):
    server(
        lambda body: httpx.Response(
            200,
            json={
                "jsonrpc": "2.0",
                "id": body["id"],
                "error": {
                    "code": -32000,
                    "message": "Call not found",
                    "data": {"code": "NOT_FOUND"},
                },
            },
        )
    )
    message, _ = fails("speak", "--call-id", "x", "--message", "Hi")
    assert message == "Call not found"


def test_remote_server_error_names_the_server_and_does_not_fall_back(server, mock_carrier, db):
    server(lambda body: httpx.Response(500, text="boom"))
    message, _ = fails("call", "--to", TO, "-m", "Hi")
    assert "http://127.0.0.1:3334" in message
    assert "HTTP 500" in message
    assert not Call.objects.exists() and mock_carrier.sent == []


def test_remote_unreadable_answer_names_the_server(server, db):
    server(lambda body: httpx.Response(200, text="<html>proxy</html>"))
    message, _ = fails("status")
    assert message == (
        "The voicecall server at http://127.0.0.1:3334 sent an unreadable "
        "answer to voicecall.status."
    )


def test_a_server_that_accepts_but_does_not_answer_healthz_is_an_error(
    monkeypatch, mock_carrier, db
):
    def stall(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    monkeypatch.setattr(client, "TRANSPORT_FACTORY", lambda: httpx.MockTransport(stall))
    message, _ = fails("call", "--to", TO, "-m", "Hi")
    assert message == (
        "The voicecall server at http://127.0.0.1:3334 did not answer /healthz (ReadTimeout)."
    )
    assert not Call.objects.exists()


def test_remote_continue_polls_the_background_turn(server, monkeypatch, db):
    monkeypatch.setattr(client, "CONTINUE_POLL_S", 0)
    answers = iter(
        [
            {"operationId": "op-1"},
            {"operationId": "op-1", "status": "pending"},
            {"operationId": "op-1", "status": "done", "success": True, "transcript": "sounds good"},
        ]
    )
    fake = server(lambda body: result(next(answers))(body))
    out = run_json("continue", "--call-id", "c-1", "--message", "Ok?")
    assert out == {"success": True, "transcript": "sounds good"}
    assert [b["method"] for b, _ in fake.rpc] == [
        "voicecall.continue.start",
        "voicecall.continue.result",
        "voicecall.continue.result",
    ]
    assert fake.rpc[1][0]["params"] == {"operationId": "op-1"}


def test_remote_continue_failure_becomes_its_error(server, db):
    answers = iter(
        [
            {"operationId": "op-1"},
            {
                "operationId": "op-1",
                "status": "failed",
                "success": False,
                "error": "Timed out waiting for transcript after 180000ms",
            },
        ]
    )
    server(lambda body: result(next(answers))(body))
    message, _ = fails("continue", "--call-id", "c-1", "--message", "Ok?")
    assert message == "Timed out waiting for transcript after 180000ms"


def test_remote_continue_falls_back_when_the_server_lacks_background_turns(server, db):
    def answer(body: dict[str, Any]) -> httpx.Response:
        if body["method"] == "voicecall.continue.start":
            return httpx.Response(
                200,
                json={
                    "jsonrpc": "2.0",
                    "id": body["id"],
                    "error": {"code": -32601, "message": "Method not found"},
                },
            )
        return result({"success": True, "transcript": "fine"})(body)

    fake = server(answer)
    assert run_json("continue", "--call-id", "c-1", "--message", "Ok?")["transcript"] == "fine"
    assert fake.rpc[-1][0]["method"] == "voicecall.continue"


@pytest.mark.django_db
def test_admin_user_creates_one_superuser_with_a_private_password_file(settings, tmp_path):
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    settings.DATA_DIR = tmp_path
    out = StringIO()
    call_command("voicecall", "admin-user", stdout=out)
    password = (tmp_path / "admin-password.txt").read_text().strip()
    user = get_user_model().objects.get(username="admin")
    assert user.is_superuser and user.check_password(password)
    assert password in out.getvalue()
    assert (tmp_path / "admin-password.txt").stat().st_mode & 0o077 == 0
    call_command("voicecall", "admin-user", stdout=StringIO())
    assert get_user_model().objects.count() == 1


def test_token_create_without_a_name_names_it_after_this_shell(monkeypatch, db):
    monkeypatch.setattr("getpass.getuser", lambda: "ops")
    monkeypatch.setattr("socket.gethostname", lambda: "desk-1")
    created = run_json("token", "create")
    assert created["name"] == "ops@desk-1"
    listed = run_json("token", "list")
    assert [t["name"] for t in listed] == ["ops@desk-1"]

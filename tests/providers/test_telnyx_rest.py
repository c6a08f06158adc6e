"""Telnyx Call Control REST over httpx.MockTransport: exact bodies, paths, auth, errors, status."""

from __future__ import annotations

import base64
import uuid
from dataclasses import replace
from typing import Any

import httpx
import pytest

from providers.base import CallTarget, PlaceCall
from providers.errors import ProviderError, ProviderNotConfigured, ProviderUnavailable
from providers.registry import build_provider
from providers.telnyx import TelnyxProvider
from tests.fakes.telnyx.helpers import (
    API_KEY,
    CALL_CONTROL_ID,
    CONNECTION_ID,
    HOOK_URL,
    Carrier,
    provider,
    settings,
)

CALL_ID = "0b7c8e52-6d0c-4a55-9d43-5c1f00000001"
TURN = "5f0c6a7e9d2b4c1a8e3f000000000009"
CALL_PATH = "/v2/calls/v3:TEST-call-control-id-0001"
TARGET = CallTarget(
    call_id=CALL_ID, provider_call_id=CALL_CONTROL_ID, webhook_url=f"{HOOK_URL}?callId={CALL_ID}"
)
TURN_TARGET = CallTarget(call_id=CALL_ID, provider_call_id=CALL_CONTROL_ID, turn_token=TURN)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _dial(**fields: Any) -> PlaceCall:
    base: dict[str, Any] = {
        "call_id": CALL_ID,
        "to_number": "+14155550100",
        "from_number": "+14155550199",
        "webhook_url": f"{HOOK_URL}?callId={CALL_ID}",
        "mode": "conversation",
    }
    return PlaceCall(**{**base, **fields})


def _error(status: int, code: str | None, detail: str) -> httpx.Response:
    error: dict[str, Any] = {"title": "Error", "detail": detail}
    if code is not None:
        error["code"] = code
    return httpx.Response(status, json={"errors": [error]})


def _command_ids(carrier: Carrier) -> list[str]:
    return [carrier.json(i)["command_id"] for i in range(len(carrier.requests))]


DIALED = httpx.Response(
    200,
    json={
        "data": {
            "call_control_id": CALL_CONTROL_ID,
            "call_leg_id": "leg",
            "call_session_id": "session",
            "is_alive": False,
            "record_type": "call",
        }
    },
)


# -- construction ------------------------------------------------------------------------------
def test_missing_credentials_name_both_keys() -> None:
    with pytest.raises(ProviderNotConfigured) as info:
        TelnyxProvider(settings=settings(apiKey="", connectionId=None))
    assert "telnyx.apiKey" in str(info.value) and "telnyx.connectionId" in str(info.value)


def test_nested_telnyx_block_is_read() -> None:
    nested = {"telnyx": {"apiKey": API_KEY, "connectionId": CONNECTION_ID}}
    built = TelnyxProvider(settings={**settings(apiKey=None, connectionId=None), **nested})
    assert built.name == "telnyx"
    built.close()


def test_registry_builds_the_adapter() -> None:
    built = build_provider("telnyx", settings=settings())
    assert isinstance(built, TelnyxProvider)
    assert (
        built.name,
        built.supports_preconnect_dtmf,
        built.rejects_in_reply,
        built.speech_by_fetch,
    ) == ("telnyx", True, False, False)
    built.close()


# -- place_call --------------------------------------------------------------------------------
def test_place_call_posts_the_dial() -> None:
    carrier = Carrier(DIALED)
    result = provider(carrier).place_call(_dial(ring_timeout_s=25))
    request = carrier.requests[0]
    assert (request.method, str(request.url)) == ("POST", "https://api.telnyx.com/v2/calls")
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["content-type"] == "application/json"
    body = carrier.json()
    uuid.UUID(body.pop("command_id"))
    assert body == {
        "connection_id": CONNECTION_ID,
        "to": "+14155550100",
        "from": "+14155550199",
        "webhook_url": f"{HOOK_URL}?callId={CALL_ID}",
        "webhook_url_method": "POST",
        "client_state": _b64(CALL_ID),
        "timeout_secs": 25,
    }
    assert result.provider_call_id == CALL_CONTROL_ID
    assert (result.message_delivered, result.dtmf_delivered) == (False, False)


@pytest.mark.parametrize(("ring", "sent"), [(1, 5), (30, 30), (900, 600)])
def test_ring_timeout_is_clamped_to_the_documented_range(ring: int, sent: int) -> None:
    carrier = Carrier(DIALED)
    provider(carrier).place_call(_dial(ring_timeout_s=ring))
    assert carrier.json()["timeout_secs"] == sent


def test_api_base_url_override() -> None:
    carrier = Carrier(DIALED)
    provider(carrier, apiBaseUrl="http://127.0.0.1:9999/telnyx/").place_call(_dial())
    assert str(carrier.requests[0].url) == "http://127.0.0.1:9999/telnyx/v2/calls"


def test_dial_without_call_control_id_is_an_error() -> None:
    carrier = Carrier(httpx.Response(200, json={"data": {}}))
    with pytest.raises(ProviderError, match="call_control_id"):
        provider(carrier).place_call(_dial())


# -- errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "retryable"),
    [(400, False), (401, False), (422, False), (429, True), (500, True), (503, True)],
)
def test_api_errors_map_to_provider_error(status: int, retryable: bool) -> None:
    carrier = Carrier(_error(status, "10015", "Invalid value for connection_id"))
    with pytest.raises(ProviderError) as info:
        provider(carrier).place_call(_dial())
    assert str(info.value) == f"Telnyx API error: {status} Invalid value for connection_id"
    assert info.value.retryable is retryable
    assert info.value.provider_code == "10015"


def test_error_without_json_body_uses_the_text() -> None:
    carrier = Carrier(httpx.Response(502, text="Bad gateway from upstream"))
    with pytest.raises(ProviderError, match="Telnyx API error: 502 Bad gateway from upstream"):
        provider(carrier).place_call(_dial())


def test_error_detail_falls_back_to_title() -> None:
    carrier = Carrier(httpx.Response(403, json={"errors": [{"code": 10010, "title": "Forbidden"}]}))
    with pytest.raises(ProviderError) as info:
        provider(carrier).send_dtmf(TARGET, "1")
    assert str(info.value) == "Telnyx API error: 403 Forbidden"
    assert info.value.provider_code == "10010"


def test_transport_error_is_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ProviderUnavailable) as info:
        provider(Carrier(refuse)).place_call(_dial())
    assert info.value.retryable and API_KEY not in str(info.value)


# -- commands ------------------------------------------------------------------------------------
def test_hang_up_posts_a_fresh_command_id_each_time() -> None:
    carrier = Carrier()
    adapter = provider(carrier)
    adapter.hang_up(TARGET)
    adapter.hang_up(TARGET)
    assert carrier.paths() == [f"{CALL_PATH}/actions/hangup"] * 2
    first, second = _command_ids(carrier)
    assert first != second and uuid.UUID(first) and uuid.UUID(second)
    assert carrier.json(0) == {"command_id": first}
    assert carrier.requests[0].headers["authorization"] == f"Bearer {API_KEY}"


@pytest.mark.parametrize(
    "answer", [_error(404, None, "Call not found"), _error(422, "90018", "Call has already ended")]
)
def test_hang_up_of_a_gone_call_is_not_an_error(answer: httpx.Response) -> None:
    provider(Carrier(answer)).hang_up(TARGET)


def test_hang_up_other_422_raises() -> None:
    with pytest.raises(ProviderError):
        provider(Carrier(_error(422, "90015", "Invalid command"))).hang_up(TARGET)


def test_answer_carries_our_call_id() -> None:
    carrier = Carrier()
    provider(carrier).answer_call(TARGET)
    assert carrier.paths() == [f"{CALL_PATH}/actions/answer"]
    body = carrier.json()
    assert set(body) == {"command_id", "client_state"}
    assert base64.b64decode(body["client_state"]).decode() == CALL_ID


def test_play_text_speaks_with_defaults() -> None:
    carrier = Carrier()
    provider(carrier).play_text(TARGET, "Hello there", listen_after=False)
    assert carrier.paths() == [f"{CALL_PATH}/actions/speak"]
    body = carrier.json()
    uuid.UUID(body.pop("command_id"))
    assert body == {
        "payload": "Hello there",
        "voice": "female",
        "language": "en-US",
        "client_state": _b64(CALL_ID),
    }


def test_play_text_listening_starts_transcription_for_the_turn() -> None:
    carrier = Carrier()
    provider(carrier).play_text(TURN_TARGET, "What is your name?", listen_after=True)
    assert carrier.paths() == [
        f"{CALL_PATH}/actions/speak",
        f"{CALL_PATH}/actions/transcription_start",
    ]
    assert carrier.json(0)["client_state"] == _b64(f"{CALL_ID}:{TURN}")
    body = carrier.json(1)
    uuid.UUID(body.pop("command_id"))
    assert body == {
        "transcription_engine": "Google",
        "transcription_engine_config": {"language": "en", "interim_results": False},
        "transcription_tracks": "inbound",
        "client_state": _b64(f"{CALL_ID}:{TURN}"),
    }
    assert len(set(_command_ids(carrier))) == 2


def test_a_speak_names_its_utterance_for_call_speak_ended_to_echo() -> None:
    carrier = Carrier()
    target = replace(TURN_TARGET, utterance_id="utt-3")
    provider(carrier).play_text(target, "What is your name?", listen_after=True)
    # The listening sent with it carries the same state: whichever Telnyx echoes in
    # call.speak.ended names the words.
    assert carrier.json(0)["client_state"] == _b64(f"{CALL_ID}:{TURN}:utt-3")
    assert carrier.json(1)["client_state"] == _b64(f"{CALL_ID}:{TURN}:utt-3")
    provider(carrier).play_text(replace(TARGET, utterance_id="utt-4"), "Hi", listen_after=False)
    assert carrier.json()["client_state"] == _b64(f"{CALL_ID}::utt-4")


def test_play_text_tolerates_transcription_already_running() -> None:
    carrier = Carrier(
        httpx.Response(200, json={"data": {"result": "ok"}}),
        _error(422, "90055", "Transcription already in progress"),
    )
    provider(carrier).play_text(TURN_TARGET, "Next?", listen_after=True)
    assert len(carrier.requests) == 2


def test_play_text_on_an_ended_call_raises() -> None:
    carrier = Carrier(_error(422, "90018", "Call has already ended"))
    with pytest.raises(ProviderError) as info:
        provider(carrier).play_text(TARGET, "Hello", listen_after=True)
    assert info.value.provider_code == "90018" and len(carrier.requests) == 1


def test_play_text_refuses_text_over_the_speak_limit() -> None:
    carrier = Carrier()
    with pytest.raises(ProviderError, match="3000"):
        provider(carrier).play_text(TARGET, "x" * 3001, listen_after=False)
    assert carrier.requests == []


@pytest.mark.parametrize(
    ("tts", "voice"),
    [
        ({"provider": "openai", "providers": {"openai": {"voice": "alloy"}}}, "female"),
        (
            {"provider": "polly", "providers": {"polly": {"voice": "AWS.Polly.Joanna-Neural"}}},
            "AWS.Polly.Joanna-Neural",
        ),
        (
            {
                "provider": "x",
                "providers": {"x": {"speakerVoice": "Telnyx.KokoroTTS.af", "voice": "male"}},
            },
            "Telnyx.KokoroTTS.af",
        ),
        ({"provider": "x", "providers": {"x": {"voiceId": "Polly.Matthew"}}}, "AWS.Polly.Matthew"),
        ({"provider": "x", "providers": {"x": {"voice": "Male"}}}, "male"),
        ({"provider": "missing", "providers": {}}, "female"),
    ],
)
def test_voice_comes_from_the_tts_provider_block(tts: dict[str, Any], voice: str) -> None:
    carrier = Carrier()
    provider(carrier, tts=tts).play_text(TARGET, "Hi", listen_after=False)
    assert carrier.json()["voice"] == voice


def test_language_from_the_target() -> None:
    carrier = Carrier()
    target = CallTarget(
        call_id=CALL_ID,
        provider_call_id=CALL_CONTROL_ID,
        turn_token=TURN,
        extra={"language": "de-DE"},
    )
    provider(carrier).play_text(target, "Hallo", listen_after=True)
    assert carrier.json(0)["language"] == "de-DE"
    assert carrier.json(1)["transcription_engine_config"]["language"] == "de"


def test_start_listening_carries_the_turn_and_raises_refusals() -> None:
    carrier = Carrier()
    provider(carrier).start_listening(TURN_TARGET)
    assert carrier.paths() == [f"{CALL_PATH}/actions/transcription_start"]
    assert base64.b64decode(carrier.json()["client_state"]).decode() == f"{CALL_ID}:{TURN}"
    with pytest.raises(ProviderError):
        provider(Carrier(_error(422, "90055", "already"))).start_listening(TURN_TARGET)


def test_stop_listening_resets_the_turn_and_never_raises() -> None:
    carrier = Carrier()
    provider(carrier).stop_listening(TURN_TARGET)
    assert carrier.paths() == [f"{CALL_PATH}/actions/transcription_stop"]
    assert set(carrier.json()) == {"command_id", "client_state"}
    assert carrier.json()["client_state"] == _b64(CALL_ID)
    provider(Carrier(_error(404, None, "not found"))).stop_listening(TURN_TARGET)
    provider(Carrier(_error(500, None, "boom"))).stop_listening(TURN_TARGET)


@pytest.mark.parametrize(
    ("digits", "sent"),
    [("123#", "123#"), ("1w2W3", "1w2W3"), ("1,2p3P4", "1WW2WW3WW4"), ("*9", "*9")],
)
def test_send_dtmf_maps_pauses(digits: str, sent: str) -> None:
    carrier = Carrier()
    provider(carrier).send_dtmf(TARGET, digits)
    assert carrier.paths() == [f"{CALL_PATH}/actions/send_dtmf"]
    body = carrier.json()
    uuid.UUID(body.pop("command_id"))
    assert body == {"digits": sent}


def test_commands_without_a_carrier_id_fail_before_any_request() -> None:
    carrier = Carrier()
    with pytest.raises(ProviderError, match="not connected"):
        provider(carrier).send_dtmf(CallTarget(call_id=CALL_ID, provider_call_id=""), "1")
    assert carrier.requests == []


def test_call_control_id_is_escaped_in_the_path() -> None:
    carrier = Carrier()
    provider(carrier).hang_up(CallTarget(call_id=CALL_ID, provider_call_id="v3:a/b?c"))
    assert carrier.paths() == ["/v2/calls/v3:a%2Fb%3Fc/actions/hangup"]


# -- get_call_status -------------------------------------------------------------------------------
def _status(*answers: httpx.Response) -> Any:
    carrier = Carrier(*answers)
    status = provider(carrier).get_call_status(CALL_CONTROL_ID)
    assert [r.method for r in carrier.requests] == ["GET"]
    assert carrier.paths() == [CALL_PATH]
    return status


def test_status_alive() -> None:
    status = _status(httpx.Response(200, json={"data": {"is_alive": True}}))
    assert (status.status, status.is_terminal, status.is_unknown) == ("in-progress", False, False)


def test_status_not_alive_is_terminal() -> None:
    status = _status(httpx.Response(200, json={"data": {"is_alive": False}}))
    assert (status.is_terminal, status.end_reason) == (True, "completed")


def test_status_404_is_not_found() -> None:
    status = _status(_error(404, None, "Call not found"))
    assert (status.status, status.is_terminal, status.end_reason) == (
        "not-found",
        True,
        "completed",
    )


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, json={"data": {}}),
        httpx.Response(200, text="not json"),
        _error(500, None, "boom"),
        _error(429, None, "slow down"),
    ],
)
def test_status_unknown(answer: httpx.Response) -> None:
    status = _status(answer)
    assert (status.is_terminal, status.is_unknown) == (False, True)


def test_status_network_failure_is_unknown_never_raised() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    status = provider(Carrier(refuse)).get_call_status(CALL_CONTROL_ID)
    assert (status.is_terminal, status.is_unknown) == (False, True)

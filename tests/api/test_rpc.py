"""POST /api/rpc: the JSON-RPC 2.0 surface, through real HTTP requests.

docs/plugin-behaviour.md, "RPC methods".
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from calls.carrier import set_provider
from calls.models import Call, ContinueOperation
from calls.services.events import event_apply
from providers.base import EventType, NormalizedEvent
from providers.errors import ProviderError
from providers.mock import MockProvider

pytestmark = pytest.mark.django_db

TO = "+15555550123"


def rpc(api: APIClient, method: str, params: Any = None, request_id: Any = 1) -> dict[str, Any]:
    """One JSON-RPC call; asserts the transport-level contract (HTTP 200, same id, 2.0)."""
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        body["params"] = params
    response = api.post("/api/rpc", body, format="json")
    assert response.status_code == 200, response.content
    reply = response.json()
    assert reply["jsonrpc"] == "2.0"
    assert reply["id"] == request_id
    return reply


def error_of(reply: dict[str, Any]) -> str:
    assert "result" not in reply, reply
    return reply["error"]["message"]


def ops(carrier: Any, name: str) -> list[dict[str, Any]]:
    return [fields for op, fields in carrier.sent if op == name]


def post_raw(api: APIClient, body: bytes | str) -> Any:
    return api.generic("POST", "/api/rpc", body, content_type="application/json")


def carrier_for(configure: Any, raw: dict[str, Any]) -> MockProvider:
    """Install `raw` as the config and a fresh non-simulating mock carrier; returns it."""
    configure(raw)
    carrier = MockProvider(settings={"simulate": False})
    set_provider(carrier)
    return carrier


# --- voicecall.initiate ------------------------------------------------------------------


def test_initiate_places_a_call_and_returns_its_call_id(api: APIClient, mock_carrier: Any) -> None:
    reply = rpc(api, "voicecall.initiate", {"to": TO, "message": "Your parcel is here"})

    assert reply["result"]["initiated"] is True
    call = Call.objects.get(public_id=reply["result"]["callId"])
    assert call.to_number == TO
    assert call.direction == "outbound"
    assert call.state == "initiated"
    assert call.mode == "notify"  # outbound.defaultMode
    assert call.metadata["initialMessage"] == "Your parcel is here"
    assert call.provider_call_id == f"mock-{call.call_id}"
    assert ops(mock_carrier, "place_call") == [{"to": TO, "mode": "notify"}]


def test_initiate_honours_an_explicit_conversation_mode(api: APIClient, mock_carrier: Any) -> None:
    reply = rpc(api, "voicecall.initiate", {"to": TO, "message": "Hi", "mode": "conversation"})

    assert Call.objects.get(public_id=reply["result"]["callId"]).mode == "conversation"


def test_initiate_without_a_message_is_refused_with_message_required(
    api: APIClient, mock_carrier: Any
) -> None:
    reply = rpc(api, "voicecall.initiate", {"to": TO})

    assert error_of(reply) == "message required"
    assert reply["error"]["code"] == -32602
    assert reply["error"]["data"]["code"] == "INVALID_REQUEST"
    assert Call.objects.count() == 0
    assert mock_carrier.sent == []


def test_initiate_with_a_blank_message_is_refused_with_message_required(
    api: APIClient, mock_carrier: Any
) -> None:
    assert error_of(rpc(api, "voicecall.initiate", {"to": TO, "message": "   "})) == (
        "message required"
    )


def test_initiate_without_to_and_without_to_number_is_refused_with_to_required(
    api: APIClient, mock_carrier: Any
) -> None:
    reply = rpc(api, "voicecall.initiate", {"message": "Hi"})

    assert error_of(reply) == "to required"
    assert Call.objects.count() == 0
    assert mock_carrier.sent == []


def test_initiate_without_to_calls_the_configured_to_number(api: APIClient, configure: Any) -> None:
    mock_carrier = carrier_for(configure, {"toNumber": "+15550009999"})

    reply = rpc(api, "voicecall.initiate", {"message": "Hi"})

    assert Call.objects.get(public_id=reply["result"]["callId"]).to_number == "+15550009999"
    assert ops(mock_carrier, "place_call")[0]["to"] == "+15550009999"


def test_initiate_to_a_number_that_is_not_e164_is_refused_naming_e164(
    api: APIClient, mock_carrier: Any
) -> None:
    reply = rpc(api, "voicecall.initiate", {"to": "555-0123", "message": "Hi"})

    assert "E.164" in error_of(reply)
    assert Call.objects.count() == 0
    assert mock_carrier.sent == []


def test_initiate_with_a_bad_mode_is_refused(api: APIClient, mock_carrier: Any) -> None:
    reply = rpc(api, "voicecall.initiate", {"to": TO, "message": "Hi", "mode": "shout"})

    assert error_of(reply) == 'mode must be "notify" or "conversation"'
    assert Call.objects.count() == 0


def test_initiate_with_a_non_string_message_is_refused_as_invalid_params(
    api: APIClient, mock_carrier: Any
) -> None:
    reply = rpc(api, "voicecall.initiate", {"to": TO, "message": ["Hi"]})

    assert error_of(reply) == "message must be a string"
    assert reply["error"]["code"] == -32602


def test_a_second_initiate_over_max_concurrent_calls_is_refused(
    api: APIClient, mock_carrier: Any
) -> None:
    first = rpc(api, "voicecall.initiate", {"to": TO, "message": "One"})
    assert first["result"]["initiated"] is True

    second = rpc(api, "voicecall.initiate", {"to": "+15555550124", "message": "Two"})

    assert error_of(second) == "Maximum concurrent calls (1) reached"
    assert second["error"]["data"]["code"] == "UNAVAILABLE"
    assert Call.objects.count() == 1
    assert len(ops(mock_carrier, "place_call")) == 1


def test_an_ended_call_frees_its_concurrency_slot(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    make_call(state="completed", end_reason="completed")

    assert rpc(api, "voicecall.initiate", {"to": TO, "message": "Hi"})["result"]["initiated"]


def test_an_inbound_call_counts_against_max_concurrent_calls(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    make_call(direction="inbound", state="listening")

    reply = rpc(api, "voicecall.initiate", {"to": TO, "message": "Hi"})

    assert error_of(reply) == "Maximum concurrent calls (1) reached"


def test_initiate_to_a_number_outside_outbound_allow_to_is_refused_before_dialling(
    api: APIClient, configure: Any
) -> None:
    carrier = carrier_for(configure, {"outbound": {"allowTo": ["+44", "+15555550123"]}})

    refused = rpc(api, "voicecall.initiate", {"to": "+19005550100", "message": "Hi"})

    assert "outbound.allowTo" in error_of(refused)
    assert "+19005550100" in error_of(refused)
    assert ops(carrier, "place_call") == []
    assert Call.objects.count() == 0


@pytest.mark.parametrize("to", ["+15555550123", "+442071234567"])
def test_initiate_to_an_allowed_number_or_prefix_is_dialled(
    api: APIClient, configure: Any, to: str
) -> None:
    carrier = carrier_for(configure, {"outbound": {"allowTo": ["+44", "+15555550123"]}})

    assert rpc(api, "voicecall.initiate", {"to": to, "message": "Hi"})["result"]["initiated"]
    assert ops(carrier, "place_call") == [{"to": to, "mode": "notify"}]


def test_initiate_with_bad_dtmf_digits_is_refused(api: APIClient, mock_carrier: Any) -> None:
    reply = rpc(api, "voicecall.start", {"to": TO, "mode": "conversation", "dtmfSequence": "12x"})

    assert error_of(reply) == "digits may only contain digits, *, #, comma, w, p"
    assert Call.objects.count() == 0


def test_a_dtmf_sequence_requires_conversation_mode(api: APIClient, mock_carrier: Any) -> None:
    reply = rpc(api, "voicecall.start", {"to": TO, "mode": "notify", "dtmfSequence": "12"})

    assert error_of(reply) == "dtmfSequence requires conversation mode"
    assert Call.objects.count() == 0


def test_a_carrier_refusing_to_dial_fails_the_call_and_returns_its_error(
    api: APIClient, mock_carrier: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(request: Any) -> Any:
        raise ProviderError("carrier says no")

    monkeypatch.setattr(mock_carrier, "place_call", refuse)

    reply = rpc(api, "voicecall.initiate", {"to": TO, "message": "Hi"})

    assert error_of(reply) == "carrier says no"
    call = Call.objects.get()
    assert call.state == "failed"
    assert call.end_reason == "failed"
    assert call.metadata["error"] == "carrier says no"
    # The failed call no longer holds the only concurrency slot.
    monkeypatch.undo()
    assert rpc(api, "voicecall.initiate", {"to": TO, "message": "Hi"})["result"]["initiated"]


# --- voicecall.start ---------------------------------------------------------------------


def test_start_without_to_is_refused_with_to_required_even_with_a_to_number(
    api: APIClient, configure: Any
) -> None:
    carrier = carrier_for(configure, {"toNumber": "+15550009999"})

    assert error_of(rpc(api, "voicecall.start", {"message": "Hi"})) == "to required"
    assert Call.objects.count() == 0
    assert carrier.sent == []


def test_start_places_a_call_without_a_message(api: APIClient, mock_carrier: Any) -> None:
    reply = rpc(api, "voicecall.start", {"to": TO, "mode": "conversation"})

    call = Call.objects.get(public_id=reply["result"]["callId"])
    assert reply["result"]["initiated"] is True
    assert call.mode == "conversation"
    assert "initialMessage" not in call.metadata


def test_start_records_the_session_key(api: APIClient, mock_carrier: Any) -> None:
    reply = rpc(api, "voicecall.start", {"to": TO, "sessionKey": "agent:main:voice:1"})

    assert Call.objects.get(public_id=reply["result"]["callId"]).session_key == (
        "agent:main:voice:1"
    )


# --- voicecall.continue ------------------------------------------------------------------


@pytest.mark.parametrize(
    "params", [{}, {"callId": "x"}, {"message": "hi"}, {"callId": " ", "message": "hi"}]
)
def test_continue_without_call_id_or_message_is_refused(
    api: APIClient, mock_carrier: Any, params: dict[str, Any]
) -> None:
    assert error_of(rpc(api, "voicecall.continue", params)) == "callId and message required"


def test_continue_on_an_unknown_call_is_refused_with_call_not_found(
    api: APIClient, mock_carrier: Any
) -> None:
    reply = rpc(api, "voicecall.continue", {"callId": str(uuid.uuid4()), "message": "Hi"})

    assert error_of(reply) == "Call not found"
    assert reply["error"]["data"]["code"] == "NOT_FOUND"


def test_a_second_concurrent_continue_is_refused_with_already_waiting_for_transcript(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="listening")
    Call.objects.filter(pk=call.pk).update(turn_token="first-waiter")

    reply = rpc(api, "voicecall.continue", {"callId": call.call_id, "message": "Hello?"})

    assert error_of(reply) == "Already waiting for transcript"
    assert mock_carrier.sent == []  # nothing spoken over the first turn
    call.refresh_from_db()
    assert call.turn_token == "first-waiter"  # the first waiter keeps its turn


def test_continue_on_an_ended_call_is_refused_with_call_has_ended(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="hangup-user", end_reason="hangup-user")

    reply = rpc(api, "voicecall.continue", {"callId": call.call_id, "message": "Hello?"})

    assert error_of(reply) == "Call has ended"


def _deliver_reply_when_listening(
    call_pk: int, call_id: str, transcript: str, failures: list[BaseException]
) -> None:
    """The caller answering, as another process would: once the prompt was spoken and the
    call listens for this turn, apply the speech carrying the turn's token."""
    try:
        deadline = time.monotonic() + 10
        token = None
        while token is None:
            if time.monotonic() > deadline:
                raise AssertionError("continue never started listening")
            state, turn = Call.objects.filter(pk=call_pk).values_list("state", "turn_token").get()
            if state == "listening" and turn:
                token = turn
            else:
                time.sleep(0.02)
        event_apply(
            provider="mock",
            event=NormalizedEvent(
                type=EventType.SPEECH,
                id=f"speech-{uuid.uuid4()}",
                call_id=call_id,
                transcript=transcript,
                turn_token=token,
            ),
        )
    except BaseException as exc:
        failures.append(exc)
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_continue_speaks_listens_and_returns_the_callers_reply(
    api: APIClient, configure: Any, make_call: Any
) -> None:
    carrier = carrier_for(configure, {"transcriptTimeoutMs": 15000})
    call = make_call(state="answered")
    failures: list[BaseException] = []
    caller = threading.Thread(
        target=_deliver_reply_when_listening, args=(call.pk, call.call_id, "yes please", failures)
    )
    caller.start()

    reply = rpc(api, "voicecall.continue", {"callId": call.call_id, "message": "Shall I book it?"})
    caller.join(timeout=15)

    assert failures == []
    assert reply["result"] == {"success": True, "transcript": "yes please"}
    call.refresh_from_db()
    assert call.metadata["turnCount"] == 1
    assert isinstance(call.metadata["lastTurnLatencyMs"], int)
    assert isinstance(call.metadata["lastTurnListenWaitMs"], int)
    assert "lastTurnCompletedAt" in call.metadata
    assert call.turn_token is None  # the turn lock is released
    assert [(e.speaker, e.text) for e in call.transcript.all()] == [
        ("bot", "Shall I book it?"),
        ("user", "yes please"),
    ]
    spoken = ops(carrier, "play_text")
    assert [s["text"] for s in spoken] == ["Shall I book it?"]
    listening = ops(carrier, "start_listening")
    assert len(listening) == 1 and listening[0]["turn_token"]


def test_continue_times_out_when_the_caller_never_answers(
    api: APIClient, configure: Any, make_call: Any, fake_clock: Any
) -> None:
    carrier = carrier_for(configure, {"transcriptTimeoutMs": 1500})
    call = make_call(state="answered")
    started = fake_clock.now()

    reply = rpc(api, "voicecall.continue", {"callId": call.call_id, "message": "Hello?"})

    assert error_of(reply) == "Timed out waiting for transcript after 1500ms"
    assert (fake_clock.now() - started).total_seconds() >= 1.5
    call.refresh_from_db()
    assert call.turn_token is None  # a timed-out turn does not block the next one
    assert "turnCount" not in call.metadata
    assert not call.transcript.filter(speaker="user").exists()
    assert len(ops(carrier, "start_listening")) == 1  # it did listen before giving up


def test_continue_reports_the_end_when_the_caller_hangs_up_while_waiting(
    api: APIClient, configure: Any, make_call: Any, fake_clock: Any
) -> None:
    carrier_for(configure, {"transcriptTimeoutMs": 60000})
    call = make_call(state="answered")

    def hang_up(clock: Any) -> None:
        event_apply(
            provider="mock",
            event=NormalizedEvent(
                type=EventType.ENDED, id="end-1", call_id=call.call_id, reason="hangup-user"
            ),
        )

    fake_clock.on_sleep.append(hang_up)

    reply = rpc(api, "voicecall.continue", {"callId": call.call_id, "message": "Hello?"})

    assert error_of(reply) == "Call ended: hangup-user"


# --- voicecall.continue.start / .result ---------------------------------------------------


def test_continue_result_without_an_operation_id_is_refused(api: APIClient) -> None:
    reply = rpc(api, "voicecall.continue.result", {})

    assert error_of(reply) == "operationId required"
    assert reply["error"]["code"] == -32602


@pytest.mark.parametrize("operation_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_continue_result_for_an_unknown_operation_is_refused(
    api: APIClient, operation_id: str
) -> None:
    reply = rpc(api, "voicecall.continue.result", {"operationId": operation_id})

    assert error_of(reply) == "Operation not found"


def test_continue_start_without_call_id_or_message_is_refused(api: APIClient) -> None:
    reply = rpc(api, "voicecall.continue.start", {"callId": str(uuid.uuid4())})

    assert error_of(reply) == "callId and message required"
    assert ContinueOperation.objects.count() == 0


def test_continue_start_on_an_unknown_call_is_refused_with_call_not_found(api: APIClient) -> None:
    reply = rpc(api, "voicecall.continue.start", {"callId": str(uuid.uuid4()), "message": "Hi"})

    assert error_of(reply) == "Call not found"
    assert ContinueOperation.objects.count() == 0


def test_continue_result_of_a_pending_operation_says_pending(
    api: APIClient, make_call: Any
) -> None:
    operation = ContinueOperation.objects.create(call=make_call(), message="Hi")

    reply = rpc(api, "voicecall.continue.result", {"operationId": str(operation.operation_id)})

    assert reply["result"] == {"operationId": str(operation.operation_id), "status": "pending"}


def _poll_result(api: APIClient, operation_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        result = rpc(api, "voicecall.continue.result", {"operationId": operation_id})["result"]
        if result["status"] != "pending" or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


@pytest.mark.django_db(transaction=True)
def test_continue_start_runs_the_turn_in_the_background_and_result_returns_the_reply(
    api: APIClient, configure: Any, make_call: Any
) -> None:
    carrier_for(configure, {"transcriptTimeoutMs": 15000})
    call = make_call(state="answered")

    started = rpc(api, "voicecall.continue.start", {"callId": call.call_id, "message": "Ready?"})
    operation_id = started["result"]["operationId"]
    failures: list[BaseException] = []
    caller = threading.Thread(
        target=_deliver_reply_when_listening, args=(call.pk, call.call_id, "ready", failures)
    )
    caller.start()
    result = _poll_result(api, operation_id)
    caller.join(timeout=15)

    assert failures == []
    assert result == {
        "operationId": operation_id,
        "status": "done",
        "success": True,
        "transcript": "ready",
    }


@pytest.mark.django_db(transaction=True)
def test_continue_start_on_an_ended_call_ends_as_a_failed_operation(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="completed", end_reason="completed")

    started = rpc(api, "voicecall.continue.start", {"callId": call.call_id, "message": "Hi"})
    result = _poll_result(api, started["result"]["operationId"])

    assert result["status"] == "failed"
    assert result["success"] is False
    assert result["error"] == "Call has ended"


# --- voicecall.speak -----------------------------------------------------------------------


def test_speak_plays_the_text_and_records_a_bot_transcript_line(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="listening")

    reply = rpc(api, "voicecall.speak", {"callId": call.call_id, "message": "One moment"})

    assert reply["result"] == {
        "success": True,
        "utteranceId": call.transcript.get().utterance_id,
    }
    assert [f["text"] for f in ops(mock_carrier, "play_text")] == ["One moment"]
    assert list(call.transcript.values_list("speaker", "text")) == [("bot", "One moment")]
    call.refresh_from_db()
    assert call.state == "speaking"


def test_speak_accepts_the_provider_call_id(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call()

    reply = rpc(api, "voicecall.speak", {"callId": call.provider_call_id, "message": "Hi"})

    assert reply["result"]["success"] is True
    assert call.transcript.get().utterance_id == reply["result"]["utteranceId"]


def test_speak_refuses_a_wait_that_is_not_a_boolean(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call()
    reply = rpc(api, "voicecall.speak", {"callId": call.call_id, "message": "Hi", "wait": "yes"})
    assert reply["error"]["message"] == "wait must be a boolean"
    assert not call.transcript.exists() and mock_carrier.sent == []


def test_speak_on_an_ended_call_is_refused_with_call_has_ended(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="hangup-user", end_reason="hangup-user")

    reply = rpc(api, "voicecall.speak", {"callId": call.call_id, "message": "Hi"})

    assert error_of(reply) == "Call has ended"
    assert ops(mock_carrier, "play_text") == []
    assert call.transcript.count() == 0


def test_speak_on_a_call_without_a_carrier_id_is_refused_with_call_not_connected(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="initiated", provider_call_id=None)

    reply = rpc(api, "voicecall.speak", {"callId": call.call_id, "message": "Hi"})

    assert error_of(reply) == "Call not connected"
    assert ops(mock_carrier, "play_text") == []


def test_speak_without_a_message_is_refused(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call()

    assert error_of(rpc(api, "voicecall.speak", {"callId": call.call_id})) == (
        "callId and message required"
    )


def test_speak_on_an_unknown_call_is_refused_with_call_not_found(
    api: APIClient, mock_carrier: Any
) -> None:
    reply = rpc(api, "voicecall.speak", {"callId": "CA-nope", "message": "Hi"})

    assert error_of(reply) == "Call not found"


# --- voicecall.dtmf ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params", [{"callId": "x"}, {"digits": "1"}, {"callId": "x", "digits": ""}]
)
def test_dtmf_without_call_id_or_digits_is_refused(
    api: APIClient, mock_carrier: Any, params: dict[str, Any]
) -> None:
    assert error_of(rpc(api, "voicecall.dtmf", params)) == "callId and digits required"


@pytest.mark.parametrize("digits", ["12a", "1 2", "+1", "ww-"])
def test_dtmf_with_characters_other_than_digits_star_hash_comma_w_p_is_refused(
    api: APIClient, mock_carrier: Any, make_call: Any, digits: str
) -> None:
    call = make_call()

    reply = rpc(api, "voicecall.dtmf", {"callId": call.call_id, "digits": digits})

    assert error_of(reply) == "digits may only contain digits, *, #, comma, w, p"
    assert ops(mock_carrier, "send_dtmf") == []


def test_dtmf_sends_the_digits_into_the_call(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call()

    reply = rpc(api, "voicecall.dtmf", {"callId": call.call_id, "digits": "1w2p*#,9"})

    assert reply["result"] == {"success": True}
    assert ops(mock_carrier, "send_dtmf") == [{"digits": "1w2p*#,9"}]


def test_dtmf_on_an_ended_call_is_refused(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="completed", end_reason="completed")

    assert error_of(rpc(api, "voicecall.dtmf", {"callId": call.call_id, "digits": "1"})) == (
        "Call has ended"
    )
    assert ops(mock_carrier, "send_dtmf") == []


# --- voicecall.end -------------------------------------------------------------------------


def test_end_hangs_up_and_finalizes_the_call_as_hangup_bot(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="listening")

    reply = rpc(api, "voicecall.end", {"callId": call.call_id})

    assert reply["result"] == {"success": True}
    call.refresh_from_db()
    assert call.state == "hangup-bot"
    assert call.end_reason == "hangup-bot"
    assert call.ended_at is not None
    assert ops(mock_carrier, "hang_up") == [{"provider_call_id": call.provider_call_id}]


def test_end_on_an_already_ended_call_succeeds_without_hanging_up_again(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="hangup-user", end_reason="hangup-user")

    reply = rpc(api, "voicecall.end", {"callId": call.call_id})

    assert reply["result"] == {"success": True}
    assert ops(mock_carrier, "hang_up") == []
    call.refresh_from_db()
    assert call.state == "hangup-user"  # terminal states stick


def test_end_twice_hangs_up_once(api: APIClient, mock_carrier: Any, make_call: Any) -> None:
    call = make_call()

    rpc(api, "voicecall.end", {"callId": call.call_id})
    rpc(api, "voicecall.end", {"callId": call.call_id})

    assert len(ops(mock_carrier, "hang_up")) == 1


def test_a_failed_carrier_hang_up_leaves_the_call_live_and_a_retry_ends_it(
    api: APIClient, mock_carrier: Any, make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    call = make_call(state="listening")

    def refuse(target: Any) -> None:
        raise ProviderError("hang-up refused")

    monkeypatch.setattr(mock_carrier, "hang_up", refuse)
    failed = rpc(api, "voicecall.end", {"callId": call.call_id})
    call.refresh_from_db()
    assert error_of(failed) == "hang-up refused"
    assert call.state == "listening"
    assert call.ended_at is None

    monkeypatch.undo()
    retried = rpc(api, "voicecall.end", {"callId": call.call_id})

    assert retried["result"] == {"success": True}
    call.refresh_from_db()
    assert call.state == "hangup-bot"
    assert len(ops(mock_carrier, "hang_up")) == 1


def test_end_on_an_unknown_call_is_refused_with_call_not_found(
    api: APIClient, mock_carrier: Any
) -> None:
    assert error_of(rpc(api, "voicecall.end", {"callId": str(uuid.uuid4())})) == "Call not found"


def test_end_on_a_call_without_a_carrier_id_is_refused_with_call_not_connected(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="initiated", provider_call_id=None)

    reply = rpc(api, "voicecall.end", {"callId": call.call_id})

    assert error_of(reply) == "Call not connected"
    call.refresh_from_db()
    assert call.state == "initiated"


def test_end_without_a_call_id_is_refused_with_call_id_required(
    api: APIClient, mock_carrier: Any
) -> None:
    assert error_of(rpc(api, "voicecall.end", {})) == "callId required"


# --- voicecall.status ----------------------------------------------------------------------


def test_status_finds_a_call_by_call_id(api: APIClient, make_call: Any) -> None:
    call = make_call(state="listening")

    reply = rpc(api, "voicecall.status", {"callId": call.call_id})

    assert reply["result"]["found"] is True
    status = reply["result"]["call"]
    assert status["callId"] == call.call_id
    assert status["providerCallId"] == call.provider_call_id
    assert status["provider"] == "mock"
    assert status["direction"] == "outbound"
    assert status["state"] == "listening"
    assert status["startedAt"].endswith("Z")


def test_status_finds_a_call_by_provider_call_id_also_as_sid(
    api: APIClient, make_call: Any
) -> None:
    call = make_call()

    by_id = rpc(api, "voicecall.status", {"callId": call.provider_call_id})
    by_sid = rpc(api, "voicecall.status", {"sid": call.provider_call_id})

    assert by_id["result"]["call"]["callId"] == call.call_id
    assert by_sid["result"]["call"]["callId"] == call.call_id


def test_status_of_an_ended_call_carries_its_end(api: APIClient, make_call: Any) -> None:
    call = make_call(state="busy", end_reason="busy")

    status = rpc(api, "voicecall.status", {"callId": call.call_id})["result"]["call"]

    assert status["state"] == "busy"
    assert status["endReason"] == "busy"


@pytest.mark.parametrize("call_id", [str(uuid.uuid4()), "CA-unknown"])
def test_status_of_an_unknown_call_is_found_false(api: APIClient, call_id: str) -> None:
    assert rpc(api, "voicecall.status", {"callId": call_id})["result"] == {"found": False}


def test_status_without_an_id_lists_the_active_calls(api: APIClient, make_call: Any) -> None:
    live = make_call(state="listening")
    make_call(state="completed", end_reason="completed")

    for params in ({}, None):
        result = rpc(api, "voicecall.status", params)["result"]
        assert result["found"] is True
        assert [c["callId"] for c in result["calls"]] == [live.call_id]


# --- protocol ------------------------------------------------------------------------------


def test_malformed_json_is_a_parse_error_with_http_200(api: APIClient) -> None:
    response = post_raw(api, b'{"jsonrpc": "2.0", "method": ')

    assert response.status_code == 200
    reply = response.json()
    assert reply["error"]["code"] == -32700
    assert reply["id"] is None


def test_a_body_that_is_not_utf8_is_a_parse_error(api: APIClient) -> None:
    response = post_raw(api, b"\xff\xfe\x00")

    assert response.status_code == 200
    assert response.json()["error"]["code"] == -32700


@pytest.mark.parametrize(
    "body",
    [
        42,
        "voicecall.status",
        {"id": 1, "method": "voicecall.status"},
        {"jsonrpc": "1.0", "id": 1, "method": "voicecall.status"},
        {"jsonrpc": "2.0", "id": 1},
        {"jsonrpc": "2.0", "id": 1, "method": 7},
        [],
    ],
)
def test_a_request_that_is_not_a_json_rpc_2_object_is_an_invalid_request(
    api: APIClient, body: Any
) -> None:
    response = post_raw(api, json.dumps(body))

    assert response.status_code == 200
    assert response.json()["error"]["code"] == -32600


def test_an_unknown_method_is_method_not_found(api: APIClient) -> None:
    reply = rpc(api, "voicecall.teleport", {}, request_id="abc")

    assert reply["error"]["code"] == -32601
    assert "voicecall.teleport" in reply["error"]["message"]


def test_params_that_are_not_an_object_are_invalid_params(api: APIClient) -> None:
    reply = rpc(api, "voicecall.status", ["callId"])

    assert reply["error"]["code"] == -32602


def test_a_notification_without_an_id_is_run_and_answered_204(
    api: APIClient, mock_carrier: Any
) -> None:
    response = api.post(
        "/api/rpc",
        {"jsonrpc": "2.0", "method": "voicecall.initiate", "params": {"to": TO, "message": "Hi"}},
        format="json",
    )

    assert response.status_code == 204
    assert response.content == b""
    assert Call.objects.count() == 1  # notifications still run


def test_a_request_with_a_null_id_is_answered(api: APIClient) -> None:
    reply = rpc(api, "voicecall.status", {}, request_id=None)

    assert reply["result"]["found"] is True


def test_a_batch_answers_each_request_in_order_and_skips_notifications(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call()
    batch = [
        {
            "jsonrpc": "2.0",
            "id": "a",
            "method": "voicecall.status",
            "params": {"callId": call.call_id},
        },
        {
            "jsonrpc": "2.0",
            "method": "voicecall.speak",
            "params": {"callId": call.call_id, "message": "From a notification"},
        },
        {"jsonrpc": "2.0", "id": "b", "method": "voicecall.nope"},
        "not a request",
        {"jsonrpc": "2.0", "id": "c", "method": "voicecall.end", "params": {}},
    ]

    response = post_raw(api, json.dumps(batch))

    assert response.status_code == 200
    replies = response.json()
    assert [r["id"] for r in replies] == ["a", "b", None, "c"]
    assert replies[0]["result"]["call"]["callId"] == call.call_id
    assert replies[1]["error"]["code"] == -32601
    assert replies[2]["error"]["code"] == -32600
    assert replies[3]["error"]["message"] == "callId required"
    assert [f["text"] for f in ops(mock_carrier, "play_text")] == ["From a notification"]


def test_a_batch_of_only_notifications_is_answered_204(api: APIClient) -> None:
    response = post_raw(
        api,
        json.dumps(
            [
                {"jsonrpc": "2.0", "method": "voicecall.status"},
                {"jsonrpc": "2.0", "method": "voicecall.status"},
            ]
        ),
    )

    assert response.status_code == 204

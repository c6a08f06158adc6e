"""REST resources under /api/calls/: list, create, detail, actions, sub-lists.

docs/design.md, "6. HTTP and websocket surface".
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from calls.carrier import set_provider
from calls.models import Call
from calls.services.events import event_apply
from providers.base import EventType, NormalizedEvent
from providers.mock import MockProvider

pytestmark = pytest.mark.django_db

TO = "+15555550123"


def ops(carrier: MockProvider, name: str) -> list[dict[str, Any]]:
    return [fields for op, fields in carrier.sent if op == name]


def carrier_for(configure: Any, raw: dict[str, Any]) -> MockProvider:
    configure(raw)
    carrier = MockProvider(settings={"simulate": False})
    set_provider(carrier)
    return carrier


# --- list --------------------------------------------------------------------------------


def test_an_empty_list_has_the_pagination_shape(api: APIClient) -> None:
    response = api.get("/api/calls/")

    assert response.status_code == 200
    assert response.json() == {"count": 0, "next": None, "previous": None, "results": []}


def test_the_list_shows_calls_newest_first_with_their_status_view(
    api: APIClient, make_call: Any
) -> None:
    now = timezone.now()
    old = make_call(started_at=now - timedelta(minutes=5), metadata={"mode": "notify"})
    new = make_call(started_at=now)

    results = api.get("/api/calls/").json()["results"]

    assert [r["callId"] for r in results] == [new.call_id, old.call_id]
    assert results[1]["providerCallId"] == old.provider_call_id
    assert results[1]["metadata"] == {"mode": "notify"}
    assert {"callId", "provider", "direction", "state", "mode", "from", "to", "startedAt"} <= set(
        results[0]
    )


def test_the_list_is_paginated_with_limit_and_offset(api: APIClient, make_call: Any) -> None:
    now = timezone.now()
    made = [make_call(started_at=now - timedelta(minutes=i)) for i in range(3)]

    first = api.get("/api/calls/?limit=2").json()
    second = api.get("/api/calls/?limit=2&offset=2").json()

    assert first["count"] == 3
    assert [r["callId"] for r in first["results"]] == [made[0].call_id, made[1].call_id]
    assert "offset=2" in first["next"]
    assert first["previous"] is None
    assert [r["callId"] for r in second["results"]] == [made[2].call_id]
    assert second["next"] is None
    assert second["previous"] is not None


def test_the_list_filters_by_state(api: APIClient, make_call: Any) -> None:
    listening = make_call(state="listening")
    make_call(state="completed", end_reason="completed")

    results = api.get("/api/calls/?state=listening").json()["results"]

    assert [r["callId"] for r in results] == [listening.call_id]


def test_the_list_filters_by_direction(api: APIClient, make_call: Any) -> None:
    inbound = make_call(direction="inbound")
    make_call(direction="outbound")

    results = api.get("/api/calls/?direction=inbound").json()["results"]

    assert [r["callId"] for r in results] == [inbound.call_id]


def test_the_list_filters_by_provider(api: APIClient, make_call: Any) -> None:
    twilio = make_call(provider="twilio", provider_call_id="CA123")
    make_call(provider="mock")

    results = api.get("/api/calls/?provider=twilio").json()["results"]

    assert [r["callId"] for r in results] == [twilio.call_id]


def test_the_list_filters_active_and_finished_calls(api: APIClient, make_call: Any) -> None:
    live = make_call(state="speaking")
    done = make_call(state="no-answer", end_reason="no-answer")

    active = api.get("/api/calls/?active=true").json()["results"]
    finished = api.get("/api/calls/?active=false").json()["results"]

    assert [r["callId"] for r in active] == [live.call_id]
    assert [r["callId"] for r in finished] == [done.call_id]


def test_filters_combine(api: APIClient, make_call: Any) -> None:
    wanted = make_call(direction="inbound", state="completed", end_reason="completed")
    make_call(direction="outbound", state="completed", end_reason="completed")
    make_call(direction="inbound", state="listening")

    results = api.get("/api/calls/?direction=inbound&state=completed").json()["results"]

    assert [r["callId"] for r in results] == [wanted.call_id]


@pytest.mark.parametrize("query", ["state=exploded", "direction=sideways"])
def test_an_unknown_filter_value_is_a_400_with_an_error(api: APIClient, query: str) -> None:
    response = api.get(f"/api/calls/?{query}")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "INVALID_REQUEST"
    assert body["error"].startswith(query.split("=")[0] + ":")


# --- create ------------------------------------------------------------------------------


def test_create_places_a_call_and_answers_201_with_it(api: APIClient, mock_carrier: Any) -> None:
    response = api.post(
        "/api/calls/",
        {"to": TO, "message": "Hello there", "mode": "conversation", "sessionKey": "s-1"},
        format="json",
    )

    assert response.status_code == 201
    body = response.json()
    call = Call.objects.get(public_id=body["callId"])
    assert body["state"] == "initiated"
    assert body["direction"] == "outbound"
    assert body["mode"] == "conversation"
    assert body["to"] == TO
    assert body["providerCallId"] == call.provider_call_id == f"mock-{call.call_id}"
    assert body["sessionKey"] == "agent:main:s-1"  # put in the owner agent's namespace
    assert body["metadata"]["initialMessage"] == "Hello there"
    assert ops(mock_carrier, "place_call") == [{"to": TO, "mode": "conversation"}]


def test_create_without_to_calls_the_configured_to_number(api: APIClient, configure: Any) -> None:
    carrier = carrier_for(configure, {"toNumber": "+15550009999"})

    response = api.post("/api/calls/", {"message": "Hi"}, format="json")

    assert response.status_code == 201
    assert response.json()["to"] == "+15550009999"
    assert ops(carrier, "place_call")[0]["to"] == "+15550009999"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"message": "Hi"}, "to required"),
        ({"to": "5550123", "message": "Hi"}, "to: Expected E.164 format, e.g. +15550001234"),
        ({"to": TO, "message": "Hi", "mode": "loud"}, "mode: "),
        (
            {"to": TO, "message": "Hi", "mode": "notify", "dtmfSequence": "1"},
            "dtmfSequence requires conversation mode",
        ),
        (
            {"to": TO, "message": "Hi", "mode": "conversation", "dtmfSequence": "1x"},
            "digits may only contain digits, *, #, comma, w, p",
        ),
    ],
)
def test_create_with_invalid_input_is_a_400_with_an_error_and_dials_nothing(
    api: APIClient, mock_carrier: Any, body: dict[str, Any], error: str
) -> None:
    response = api.post("/api/calls/", body, format="json")

    assert response.status_code == 400
    assert response.json()["error"].startswith(error)
    assert response.json()["code"] == "INVALID_REQUEST"
    assert Call.objects.count() == 0
    assert mock_carrier.sent == []


def test_create_with_a_body_that_is_not_an_object_is_a_400(
    api: APIClient, mock_carrier: Any
) -> None:
    response = api.post("/api/calls/", [TO], format="json")

    assert response.status_code == 400
    assert "error" in response.json()
    assert Call.objects.count() == 0


def test_create_over_max_concurrent_calls_is_a_429(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    make_call(state="listening")

    response = api.post("/api/calls/", {"to": TO, "message": "Hi"}, format="json")

    assert response.status_code == 429
    assert response.json()["error"] == "Maximum concurrent calls (1) reached"
    assert mock_carrier.sent == []


def test_create_to_a_destination_outside_allow_to_is_refused(
    api: APIClient, configure: Any
) -> None:
    carrier = carrier_for(configure, {"outbound": {"allowTo": ["+44"]}})

    response = api.post("/api/calls/", {"to": TO, "message": "Hi"}, format="json")

    assert response.status_code == 400
    assert "outbound.allowTo" in response.json()["error"]
    assert carrier.sent == []
    assert Call.objects.count() == 0


# --- detail ------------------------------------------------------------------------------


def test_detail_shows_one_call_by_call_id_or_provider_call_id(
    api: APIClient, make_call: Any
) -> None:
    call = make_call(state="listening", metadata={"turnCount": 2})

    by_id = api.get(f"/api/calls/{call.call_id}/")
    by_carrier_id = api.get(f"/api/calls/{call.provider_call_id}/")

    assert by_id.status_code == 200
    assert by_id.json()["callId"] == call.call_id
    assert by_id.json()["state"] == "listening"
    assert by_id.json()["metadata"] == {"turnCount": 2}
    assert by_carrier_id.json()["callId"] == call.call_id


@pytest.mark.parametrize("call_id", [str(uuid.uuid4()), "CA-unknown"])
def test_detail_of_an_unknown_call_is_a_404_call_not_found(api: APIClient, call_id: str) -> None:
    response = api.get(f"/api/calls/{call_id}/")

    assert response.status_code == 404
    assert response.json() == {"error": "Call not found", "code": "NOT_FOUND"}


# --- continue ----------------------------------------------------------------------------


def _reply_on_first_poll(fake_clock: Any, call: Call, transcript: str) -> None:
    """While `continue` polls for the transcript, the caller answers this turn."""

    def answer(clock: Any) -> None:
        fake_clock.on_sleep.remove(answer)
        token = Call.objects.values_list("turn_token", flat=True).get(pk=call.pk)
        event_apply(
            provider="mock",
            event=NormalizedEvent(
                type=EventType.SPEECH,
                id=f"caller-reply-{uuid.uuid4()}",
                call_id=call.call_id,
                transcript=transcript,
                turn_token=token,
            ),
        )

    fake_clock.on_sleep.append(answer)


def test_continue_speaks_waits_and_returns_the_transcript_with_latencies(
    api: APIClient, mock_carrier: Any, make_call: Any, fake_clock: Any
) -> None:
    call = make_call(state="answered")
    _reply_on_first_poll(fake_clock, call, "tomorrow at nine")

    response = api.post(f"/api/calls/{call.call_id}/continue/", {"message": "When?"}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["transcript"] == "tomorrow at nine"
    assert body["latencyMs"] >= body["listenWaitMs"] >= 100  # one 0.1 s poll of the fake clock
    assert [f["text"] for f in ops(mock_carrier, "play_text")] == ["When?"]
    call.refresh_from_db()
    assert call.metadata["turnCount"] == 1
    assert call.turn_token is None


def test_continue_counts_turns(
    api: APIClient, mock_carrier: Any, make_call: Any, fake_clock: Any
) -> None:
    call = make_call(state="answered")
    for answer in ("one", "two"):
        _reply_on_first_poll(fake_clock, call, answer)
        response = api.post(
            f"/api/calls/{call.call_id}/continue/", {"message": "And?"}, format="json"
        )
        assert response.json()["transcript"] == answer

    call.refresh_from_db()
    assert call.metadata["turnCount"] == 2


def test_continue_times_out_with_the_reference_error(
    api: APIClient, configure: Any, make_call: Any, fake_clock: Any
) -> None:
    carrier_for(configure, {"transcriptTimeoutMs": 300})
    call = make_call(state="answered")

    response = api.post(
        f"/api/calls/{call.call_id}/continue/", {"message": "Hello?"}, format="json"
    )

    assert response.status_code == 504
    assert response.json()["error"] == "Timed out waiting for transcript after 300ms"


def test_continue_on_an_ended_call_is_a_409_call_has_ended(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="completed", end_reason="completed")

    response = api.post(f"/api/calls/{call.call_id}/continue/", {"message": "Hi"}, format="json")

    assert response.status_code == 409
    assert response.json() == {"error": "Call has ended", "code": "CONFLICT"}
    assert mock_carrier.sent == []


def test_continue_while_another_turn_waits_is_a_409(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="listening")
    Call.objects.filter(pk=call.pk).update(turn_token="other-turn")

    response = api.post(f"/api/calls/{call.call_id}/continue/", {"message": "Hi"}, format="json")

    assert response.status_code == 409
    assert response.json()["error"] == "Already waiting for transcript"


def test_continue_without_a_message_is_a_400(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call()

    response = api.post(f"/api/calls/{call.call_id}/continue/", {}, format="json")

    assert response.status_code == 400
    assert response.json()["error"].startswith("message:")
    assert mock_carrier.sent == []


def test_continue_on_an_unknown_call_is_a_404(api: APIClient, mock_carrier: Any) -> None:
    response = api.post(f"/api/calls/{uuid.uuid4()}/continue/", {"message": "Hi"}, format="json")

    assert response.status_code == 404
    assert response.json()["error"] == "Call not found"


# --- speak / dtmf / end ------------------------------------------------------------------


def test_speak_plays_the_message_and_records_it(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="listening")

    response = api.post(
        f"/api/calls/{call.call_id}/speak/", {"message": "Please hold"}, format="json"
    )

    assert response.status_code == 200
    line = call.transcript.get()
    assert response.json() == {"success": True, "utteranceId": line.utterance_id}
    assert [f["text"] for f in ops(mock_carrier, "play_text")] == ["Please hold"]
    assert (line.speaker, line.text) == ("bot", "Please hold")


@pytest.mark.parametrize(
    ("fields", "status", "error"),
    [
        ({"state": "hangup-user", "end_reason": "hangup-user"}, 409, "Call has ended"),
        ({"state": "initiated", "provider_call_id": None}, 409, "Call not connected"),
    ],
)
def test_speak_to_a_call_that_cannot_hear_is_refused(
    api: APIClient,
    mock_carrier: Any,
    make_call: Any,
    fields: dict[str, Any],
    status: int,
    error: str,
) -> None:
    call = make_call(**fields)

    response = api.post(f"/api/calls/{call.call_id}/speak/", {"message": "Hi"}, format="json")

    assert response.status_code == status
    assert response.json()["error"] == error
    assert mock_carrier.sent == []


def test_speak_without_a_message_is_a_400(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call()

    response = api.post(f"/api/calls/{call.call_id}/speak/", {"message": ""}, format="json")

    assert response.status_code == 400
    assert response.json()["error"].startswith("message:")
    assert mock_carrier.sent == []


def test_dtmf_sends_the_digits(api: APIClient, mock_carrier: Any, make_call: Any) -> None:
    call = make_call()

    response = api.post(f"/api/calls/{call.call_id}/dtmf/", {"digits": "0#"}, format="json")

    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert ops(mock_carrier, "send_dtmf") == [{"digits": "0#"}]


def test_dtmf_with_bad_digits_is_a_400(api: APIClient, mock_carrier: Any, make_call: Any) -> None:
    call = make_call()

    response = api.post(f"/api/calls/{call.call_id}/dtmf/", {"digits": "9a"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"] == "digits may only contain digits, *, #, comma, w, p"
    assert mock_carrier.sent == []


def test_dtmf_without_digits_is_a_400(api: APIClient, mock_carrier: Any, make_call: Any) -> None:
    call = make_call()

    response = api.post(f"/api/calls/{call.call_id}/dtmf/", {}, format="json")

    assert response.status_code == 400
    assert response.json()["error"].startswith("digits:")


def test_end_hangs_up_and_ends_the_call_as_hangup_bot(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="speaking")

    response = api.post(f"/api/calls/{call.call_id}/end/")

    assert response.status_code == 200
    assert response.json() == {"success": True}
    call.refresh_from_db()
    assert (call.state, call.end_reason) == ("hangup-bot", "hangup-bot")
    assert len(ops(mock_carrier, "hang_up")) == 1
    assert api.get(f"/api/calls/{call.call_id}/").json()["endReason"] == "hangup-bot"


def test_end_of_an_ended_call_succeeds_and_changes_nothing(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="busy", end_reason="busy")

    response = api.post(f"/api/calls/{call.call_id}/end/")

    assert response.status_code == 200
    call.refresh_from_db()
    assert call.state == "busy"
    assert mock_carrier.sent == []


def test_end_of_an_unknown_call_is_a_404(api: APIClient, mock_carrier: Any) -> None:
    response = api.post(f"/api/calls/{uuid.uuid4()}/end/")

    assert response.status_code == 404
    assert response.json()["error"] == "Call not found"


def test_end_of_a_call_without_a_carrier_id_is_a_409(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="initiated", provider_call_id=None)

    response = api.post(f"/api/calls/{call.call_id}/end/")

    assert response.status_code == 409
    assert response.json()["error"] == "Call not connected"


# --- transcript and events ---------------------------------------------------------------


def test_transcript_lists_the_lines_in_order(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="listening")
    api.post(f"/api/calls/{call.call_id}/speak/", {"message": "Hi, it's the clinic"}, format="json")
    event_apply(
        provider="mock",
        event=NormalizedEvent(
            type=EventType.SPEECH, id="s1", call_id=call.call_id, transcript="Oh hello"
        ),
    )
    event_apply(
        provider="mock",
        event=NormalizedEvent(
            type=EventType.SPEECH,
            id="s2",
            call_id=call.call_id,
            transcript="partial",
            is_final=False,
        ),
    )

    response = api.get(f"/api/calls/{call.call_id}/transcript/")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2  # partial speech is not a transcript line
    assert [(r["speaker"], r["text"], r["isFinal"]) for r in body["results"]] == [
        ("bot", "Hi, it's the clinic", True),
        ("user", "Oh hello", True),
    ]
    assert all(r["createdAt"] for r in body["results"])


def test_events_list_the_applied_carrier_events(
    api: APIClient, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="initiated")
    api.post(
        "/voice/webhook",
        {
            "events": [
                {"type": "call.ringing", "callId": call.call_id, "id": "e-ring"},
                {"type": "call.ended", "callId": call.call_id, "id": "e-end", "reason": "busy"},
            ]
        },
        format="json",
    )

    response = api.get(f"/api/calls/{call.call_id}/events/")

    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["type"] for r in results] == ["call.ringing", "call.ended"]
    assert all(r["dedupeKey"] and r["createdAt"] for r in results)
    assert results[1]["payload"]["reason"] == "busy"


@pytest.mark.parametrize("what", ["transcript", "events"])
def test_sub_lists_of_an_unknown_call_are_a_404(api: APIClient, what: str) -> None:
    response = api.get(f"/api/calls/{uuid.uuid4()}/{what}/")

    assert response.status_code == 404
    assert response.json()["error"] == "Call not found"

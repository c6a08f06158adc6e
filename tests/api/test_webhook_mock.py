"""The mock carrier's webhook through real HTTP requests.

docs/carriers.md, "Mock carrier"; docs/plugin-behaviour.md, "Webhook pipeline";
docs/security.md, "Webhooks".
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from calls.carrier import set_provider
from calls.models import (
    AllowedNumber,
    Call,
    CallEvent,
    InboundPolicy,
    ReplayKey,
    TranscriptEntry,
)
from calls.services.carrier_commands import UNHEARD_MESSAGE_DEADLINE
from calls.services.timers import timers_sweep
from providers.errors import ProviderError
from providers.mock import MockProvider

pytestmark = pytest.mark.django_db

HOOK = "/voice/webhook"
CALLER = "+15550001111"
OUR_NUMBER = "+15550000000"


def post(client: Client, body: Any, path: str = HOOK) -> Any:
    raw = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post(path, raw, content_type="application/json")


def event(type_: str, call_id: str, **fields: Any) -> dict[str, Any]:
    return {"event": {"type": type_, "callId": call_id, **fields}}


def inbound(
    type_: str, provider_call_id: str, caller: str | None = CALLER, **fields: Any
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": type_,
        "callId": provider_call_id,
        "direction": "inbound",
        "to": OUR_NUMBER,
        **fields,
    }
    if caller is not None:
        item["from"] = caller
    return {"event": item}


def ops(carrier: MockProvider, name: str) -> list[dict[str, Any]]:
    return [fields for op, fields in carrier.sent if op == name]


def carrier_for(configure: Any, raw: dict[str, Any]) -> MockProvider:
    configure(raw)
    carrier = MockProvider(settings={"simulate": False})
    set_provider(carrier)
    return carrier


def nothing_written() -> bool:
    return not (
        Call.objects.exists() or CallEvent.objects.exists() or TranscriptEntry.objects.exists()
    )


# --- path, method, size ------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_a_non_post_request_to_the_webhook_is_405(
    client: Client, mock_carrier: Any, method: str
) -> None:
    response = getattr(client, method)(HOOK)

    assert response.status_code == 405
    assert response.content == b"Method Not Allowed"


@pytest.mark.parametrize(
    "path",
    [
        "/voice/webhook-evil",
        "/voice/webhook//",
        "/voice/webhooks",
        "/voice",
        "/",
        "/voice/webhook/extra",
    ],
)
def test_a_look_alike_path_is_404_and_never_verified(
    client: Client, mock_carrier: Any, path: str
) -> None:
    response = post(client, event("call.ringing", "CA-1", direction="outbound"), path=path)

    assert response.status_code == 404
    assert not ReplayKey.objects.exists()
    assert nothing_written()


def test_one_trailing_slash_is_tolerated(client: Client, mock_carrier: Any, make_call: Any) -> None:
    call = make_call(state="initiated")

    response = post(client, event("call.ringing", call.call_id), path=HOOK + "/")

    assert response.status_code == 200
    call.refresh_from_db()
    assert call.state == "ringing"


def test_a_custom_serve_path_is_served_and_the_default_one_is_not(
    client: Client, configure: Any, make_call: Any
) -> None:
    carrier_for(configure, {"serve": {"path": "/hooks/mock"}})
    call = make_call(state="initiated")

    default = post(client, event("call.ringing", call.call_id), path=HOOK)
    custom = post(client, event("call.ringing", call.call_id), path="/hooks/mock")

    assert default.status_code == 404
    assert custom.status_code == 200
    call.refresh_from_db()
    assert call.state == "ringing"


def test_a_body_over_64_kib_is_413_and_changes_nothing(
    client: Client, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="initiated")
    body = json.dumps(event("call.ringing", call.call_id, pad=""))
    body = body.replace('"pad": ""', '"pad": "' + "x" * (64 * 1024 + 1 - len(body)) + '"')
    assert len(body) == 64 * 1024 + 1

    response = post(client, body)

    assert response.status_code == 413
    call.refresh_from_db()
    assert call.state == "initiated"
    assert not ReplayKey.objects.exists()


def test_a_body_of_exactly_64_kib_is_accepted(
    client: Client, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="initiated")
    body = json.dumps(event("call.ringing", call.call_id, pad=""))
    body = body.replace('"pad": ""', '"pad": "' + "x" * (64 * 1024 - len(body)) + '"')
    assert len(body) == 64 * 1024

    response = post(client, body)

    assert response.status_code == 200
    call.refresh_from_db()
    assert call.state == "ringing"


# --- malformed input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"event": {"type": "call.ringing", "callId": ',
        b"\xff\xfe not utf-8",
        b"",
    ],
)
def test_malformed_json_is_400_and_nothing_is_created(
    client: Client, mock_carrier: Any, body: bytes
) -> None:
    response = post(client, body)

    assert response.status_code == 400
    assert b"Invalid JSON" in response.content or b"JSON object" in response.content
    assert nothing_written()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"event": {"type": "call.exploded", "callId": "CA-1", "direction": "inbound"}},
            b"Unknown event type",
        ),
        ({"event": {"type": "call.ringing", "direction": "inbound"}}, b"callId"),
        (
            {
                "event": {
                    "type": "call.ringing",
                    "callId": "CA-1",
                    "timestamp": "yesterday",
                    "direction": "inbound",
                }
            },
            b"timestamp",
        ),
        ({"events": {"type": "call.ringing", "callId": "CA-1"}}, b"list"),
        ({"events": ["call.ringing"]}, b"object"),
        (["call.ringing"], b"object"),
        ({}, b""),
    ],
)
def test_an_invalid_event_is_400_with_a_clear_message(
    client: Client, mock_carrier: Any, body: Any, message: bytes
) -> None:
    response = post(client, body)

    assert response.status_code == 400
    assert message in response.content
    assert nothing_written()
    assert mock_carrier.sent == []


def test_one_invalid_event_in_a_batch_applies_none_of_them(
    client: Client, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="initiated")

    response = post(
        client,
        {
            "events": [
                {"type": "call.ringing", "callId": call.call_id},
                {"type": "call.unheard-of", "callId": call.call_id},
            ]
        },
    )

    assert response.status_code == 400
    call.refresh_from_db()
    assert call.state == "initiated"
    assert not CallEvent.objects.exists()


def test_a_re_sent_malformed_body_is_still_400(client: Client, mock_carrier: Any) -> None:
    body = b'{"event": {"type": "call.ringing", "callId": '

    first = post(client, body)
    second = post(client, body)

    assert first.status_code == 400
    assert second.status_code == 400


# --- outbound notify lifecycle -------------------------------------------------------------


def test_an_outbound_notify_call_rings_speaks_on_answer_and_hangs_up_after_the_delay(
    client: Client, api: APIClient, mock_carrier: Any, fake_clock: Any
) -> None:
    # The mock as a carrier that reports its words said (as it does simulating).
    mock_carrier.speech_done_signal = True
    reply = api.post(
        "/api/rpc",
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "voicecall.initiate",
            "params": {"to": "+15555550123", "message": "Your table is ready", "mode": "notify"},
        },
        format="json",
    ).json()
    call_id = reply["result"]["callId"]
    carrier_id = f"mock-{call_id}"

    ringing = post(client, event("call.ringing", carrier_id, id="evt-ring"))

    assert ringing.status_code == 200
    assert ringing.json() == {"ok": True, "replay": False, "callId": call_id}
    call = Call.objects.get(public_id=call_id)
    assert call.state == "ringing"
    assert ops(mock_carrier, "play_text") == []

    answered = post(client, event("call.answered", carrier_id, id="evt-answer"))

    assert answered.status_code == 200
    call.refresh_from_db()
    assert call.answered_at is not None
    assert call.max_duration_at is not None
    assert ops(mock_carrier, "play_text") == [
        {"text": "Your table is ready", "listen_after": False}
    ]
    assert "initialMessage" not in call.metadata
    # Sent is not heard: no line yet, and only the net for a carrier that never reports.
    assert not call.transcript.exists()
    assert call.notify_hangup_at == fake_clock.now() + UNHEARD_MESSAGE_DEADLINE
    (in_flight,) = call.metadata["utterancesInFlight"]

    fake_clock.advance(seconds=7)  # the carrier says the words
    spoken = post(client, event("call.spoken", carrier_id, utteranceId=in_flight["id"]))

    assert spoken.status_code == 200
    call.refresh_from_db()
    assert list(call.transcript.values_list("speaker", "text", "utterance_id")) == [
        ("bot", "Your table is ready", in_flight["id"])
    ]
    # notifyHangupDelaySec (3) from the report, no estimate of how long the words take.
    assert call.notify_hangup_at == fake_clock.now() + timedelta(seconds=3)

    timers_sweep(now=call.notify_hangup_at - timedelta(seconds=1))
    call.refresh_from_db()
    assert not call.is_terminal
    assert ops(mock_carrier, "hang_up") == []

    timers_sweep(now=call.notify_hangup_at + timedelta(seconds=1))
    timers_sweep(now=call.notify_hangup_at + timedelta(seconds=2))

    call.refresh_from_db()
    assert (call.state, call.end_reason) == ("hangup-bot", "hangup-bot")
    assert call.ended_at is not None
    assert ops(mock_carrier, "hang_up") == [{"provider_call_id": carrier_id}]

    # The carrier's own report of the end afterwards changes nothing.
    late = post(client, event("call.ended", carrier_id, id="evt-end", reason="completed"))
    assert late.status_code == 200
    call.refresh_from_db()
    assert (call.state, call.end_reason) == ("hangup-bot", "hangup-bot")


def test_a_conversation_call_speaks_the_message_on_answer_then_listens(
    client: Client, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(
        state="ringing",
        mode="conversation",
        metadata={"initialMessage": "Hi, it's the dentist", "mode": "conversation"},
    )

    post(client, event("call.answered", call.call_id))

    call.refresh_from_db()
    assert call.state == "listening"
    assert ops(mock_carrier, "play_text") == [
        {"text": "Hi, it's the dentist", "listen_after": True}
    ]
    assert call.notify_hangup_at is None


def test_an_event_addressed_by_our_call_id_keeps_the_carriers_call_id(
    client: Client, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="ringing")
    carrier_id = call.provider_call_id

    post(client, event("call.answered", call.call_id))
    call.refresh_from_db()

    assert call.provider_call_id == carrier_id


def test_several_events_in_one_body_apply_in_order(
    client: Client, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="initiated")
    answered_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    ended_at = answered_at + timedelta(minutes=2)

    response = post(
        client,
        {
            "events": [
                {"type": "call.ringing", "callId": call.call_id},
                {
                    "type": "call.answered",
                    "callId": call.call_id,
                    "timestamp": answered_at.isoformat(),
                },
                {
                    "type": "call.ended",
                    "callId": call.call_id,
                    "reason": "hangup-user",
                    "timestamp": int(ended_at.timestamp() * 1000),
                },
            ]
        },
    )

    assert response.status_code == 200
    call.refresh_from_db()
    assert (call.state, call.end_reason) == ("hangup-user", "hangup-user")
    assert call.answered_at == answered_at
    assert call.ended_at == ended_at
    assert CallEvent.objects.filter(call=call).count() == 3


def test_a_late_backward_event_is_recorded_but_does_not_move_the_call_back(
    client: Client, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="listening")

    post(client, event("call.ringing", call.call_id))

    call.refresh_from_db()
    assert call.state == "listening"


# --- replays and duplicates ----------------------------------------------------------------


def test_the_same_body_posted_twice_is_a_replay_without_side_effects(
    client: Client, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="listening")
    body = event("call.speech", call.call_id, id="evt-speech-1", transcript="hello")

    first = post(client, body)
    second = post(client, body)

    assert first.json()["replay"] is False
    # The re-delivery gets the first reply again (the carrier may never have received it).
    assert (second.status_code, second.content) == (200, first.content)
    assert CallEvent.objects.filter(call=call).count() == 1
    assert call.transcript.count() == 1


def test_the_same_event_id_in_two_different_bodies_is_applied_once(
    client: Client, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="listening")
    item = {"type": "call.speech", "callId": call.call_id, "id": "evt-7", "transcript": "yes"}

    first = post(client, {"event": item})
    second = post(client, {"events": [item]})  # another body: not a request replay

    assert first.status_code == second.status_code == 200
    assert second.json()["replay"] is False
    assert CallEvent.objects.filter(call=call).count() == 1
    assert call.transcript.count() == 1


def test_the_same_dedupe_key_in_two_different_bodies_is_applied_once(
    client: Client, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="listening")

    post(client, event("call.speech", call.call_id, id="a", dedupeKey="turn-1", transcript="yes"))
    post(client, event("call.speech", call.call_id, id="b", dedupeKey="turn-1", transcript="yes"))

    assert CallEvent.objects.filter(call=call).count() == 1
    assert call.transcript.count() == 1


def test_events_without_ids_in_different_bodies_are_each_applied(
    client: Client, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="listening")

    post(client, event("call.speech", call.call_id, transcript="first"))
    post(client, event("call.speech", call.call_id, transcript="second"))

    assert list(call.transcript.values_list("text", flat=True)) == ["first", "second"]


def test_late_events_after_the_end_change_nothing(
    client: Client, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(
        state="hangup-bot", end_reason="hangup-bot", metadata={"initialMessage": "Never said"}
    )
    Call.objects.filter(pk=call.pk).update(ended_at=call.started_at)

    answered = post(client, event("call.answered", call.call_id, id="late-1"))
    speech = post(client, event("call.speech", call.call_id, id="late-2", transcript="hi"))

    assert answered.status_code == speech.status_code == 200
    call.refresh_from_db()
    assert (call.state, call.end_reason) == ("hangup-bot", "hangup-bot")
    assert call.answered_at is None
    assert call.ended_at == call.started_at
    assert mock_carrier.sent == []
    assert not CallEvent.objects.exists()
    assert not TranscriptEntry.objects.exists()


def test_an_event_for_an_unknown_call_without_direction_is_200_and_creates_nothing(
    client: Client, mock_carrier: Any
) -> None:
    response = post(client, event("call.answered", "CA-never-heard-of"))

    assert response.status_code == 200
    assert response.json()["callId"] is None
    assert nothing_written()
    assert mock_carrier.sent == []


# --- stale turn tokens ---------------------------------------------------------------------


def test_speech_with_a_stale_turn_token_is_ignored_entirely(
    client: Client, mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="listening")
    Call.objects.filter(pk=call.pk).update(turn_token="turn-current")

    stale = post(
        client,
        event("call.speech", call.call_id, transcript="old answer", turnToken="turn-previous"),
    )

    assert stale.status_code == 200
    assert not TranscriptEntry.objects.exists()
    assert not CallEvent.objects.exists()

    current = post(
        client,
        event("call.speech", call.call_id, transcript="new answer", turnToken="turn-current"),
    )

    assert current.status_code == 200
    assert list(call.transcript.values_list("text", "turn_token")) == [
        ("new answer", "turn-current")
    ]


# --- inbound -------------------------------------------------------------------------------


def test_an_inbound_call_under_the_disabled_policy_is_recorded_rejected_and_hung_up_once(
    client: Client, mock_carrier: Any
) -> None:
    first = post(client, inbound("call.initiated", "CA-in-1"))
    again = post(client, inbound("call.ringing", "CA-in-1"))  # a different body, same call
    replay = post(client, inbound("call.initiated", "CA-in-1"))  # the first body again

    assert first.status_code == again.status_code == replay.status_code == 200
    assert first.json()["rejected"] is True
    call = Call.objects.get()
    assert call.provider_call_id == "CA-in-1"
    assert call.direction == "inbound"
    assert (call.state, call.end_reason) == ("hangup-bot", "hangup-bot")
    assert call.ended_at is not None
    assert call.metadata["rejectionReason"] == "inbound-policy"
    assert ops(mock_carrier, "hang_up") == [{"provider_call_id": "CA-in-1"}]
    assert ops(mock_carrier, "play_text") == []


def test_a_failed_rejection_hang_up_is_retried_by_the_next_event(
    client: Client, mock_carrier: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[str] = []

    def flaky(target: Any) -> None:
        attempts.append(target.provider_call_id)
        if len(attempts) == 1:
            raise ProviderError("carrier busy")

    monkeypatch.setattr(mock_carrier, "hang_up", flaky)

    post(client, inbound("call.initiated", "CA-in-2"))
    post(client, inbound("call.ringing", "CA-in-2"))
    post(client, inbound("call.ringing", "CA-in-2", id="third"))

    assert attempts == ["CA-in-2", "CA-in-2"]
    assert Call.objects.get().metadata.get("hungUp") is True


@pytest.mark.parametrize(
    ("caller", "accepted"),
    [
        ("+1 (555) 000-1111", True),
        ("+15550001111", True),
        ("15550001111", True),
        ("5550001111", False),  # no country code: a suffix of the allowed number
        ("+155500011119", False),  # the allowed number is a prefix of the caller
        ("+1555000111", False),  # the caller is a prefix of the allowed number
        ("anonymous", False),
        ("", False),
        (None, False),
    ],
)
def test_the_allowlist_needs_exact_digit_equality(
    client: Client, configure: Any, caller: str | None, accepted: bool
) -> None:
    carrier = carrier_for(configure, {"inboundPolicy": "allowlist", "allowFrom": [CALLER]})

    response = post(client, inbound("call.initiated", "CA-allow", caller=caller))

    assert response.status_code == 200
    call = Call.objects.get(provider_call_id="CA-allow")
    if accepted:
        assert call.state == "ringing"
        assert "rejectionReason" not in call.metadata
        assert ops(carrier, "hang_up") == []
    else:
        assert call.state == "hangup-bot"
        assert call.metadata["rejectionReason"] == "inbound-policy"
        assert len(ops(carrier, "hang_up")) == 1


def test_a_formatted_caller_is_stored_in_e164(client: Client, configure: Any) -> None:
    carrier_for(configure, {"inboundPolicy": "allowlist", "allowFrom": [CALLER]})

    post(client, inbound("call.initiated", "CA-fmt", caller="+1 (555) 000-1111"))

    call = Call.objects.get()
    assert call.from_number == CALLER
    assert call.to_number == OUR_NUMBER


def test_an_anonymous_caller_is_rejected_for_missing_caller_id(
    client: Client, configure: Any
) -> None:
    carrier_for(configure, {"inboundPolicy": "allowlist", "allowFrom": [CALLER]})

    post(client, inbound("call.initiated", "CA-anon", caller="anonymous"))

    assert Call.objects.get().metadata["screen"] == "missing caller ID"


def test_pairing_behaves_like_the_allowlist(client: Client, configure: Any) -> None:
    carrier_for(configure, {"inboundPolicy": "pairing", "allowFrom": [CALLER]})

    post(client, inbound("call.initiated", "CA-p1", caller=CALLER))
    post(client, inbound("call.initiated", "CA-p2", caller="+15550002222"))

    states = dict(Call.objects.values_list("provider_call_id", "state"))
    assert states == {"CA-p1": "ringing", "CA-p2": "hangup-bot"}


def test_admin_allowlist_rows_add_to_the_config_allow_from(client: Client, configure: Any) -> None:
    carrier_for(configure, {"inboundPolicy": "allowlist", "allowFrom": [CALLER]})
    AllowedNumber.objects.create(number="+15550002222", source="admin")
    AllowedNumber.objects.create(number="+15550003333", source="admin", enabled=False)

    post(client, inbound("call.initiated", "CA-a1", caller="+15550002222"))
    post(client, inbound("call.initiated", "CA-a2", caller="+15550003333"))

    states = dict(Call.objects.values_list("provider_call_id", "state"))
    assert states == {"CA-a1": "ringing", "CA-a2": "hangup-bot"}


def test_an_accepted_inbound_call_rings_with_the_greeting_and_speaks_it_on_answer(
    client: Client, configure: Any
) -> None:
    carrier = carrier_for(
        configure,
        {
            "inboundPolicy": "allowlist",
            "allowFrom": [CALLER],
            "inboundGreeting": "Thanks for calling Acme.",
        },
    )

    accepted = post(client, inbound("call.initiated", "CA-in-ok"))

    assert accepted.status_code == 200
    assert "rejected" not in accepted.json()
    call = Call.objects.get()
    assert accepted.json()["callId"] == call.call_id
    assert call.state == "ringing"
    assert call.direction == "inbound"
    assert call.mode == "conversation"
    assert call.metadata["initialMessage"] == "Thanks for calling Acme."
    assert ops(carrier, "play_text") == []

    post(client, event("call.answered", "CA-in-ok"))

    call.refresh_from_db()
    assert ops(carrier, "play_text") == [{"text": "Thanks for calling Acme.", "listen_after": True}]
    assert call.state == "listening"
    assert call.answered_at is not None
    assert "initialMessage" not in call.metadata
    assert ops(carrier, "hang_up") == []


def test_an_accepted_inbound_call_without_a_greeting_gets_the_default_one(
    client: Client, configure: Any
) -> None:
    carrier_for(configure, {"inboundPolicy": "open"})

    post(client, inbound("call.initiated", "CA-in-default"))

    assert Call.objects.get().metadata["initialMessage"] == "Hello! How can I help you today?"


@pytest.mark.parametrize("caller", ["+447700900123", "anonymous", None])
def test_the_open_policy_accepts_anyone(client: Client, configure: Any, caller: str | None) -> None:
    carrier = carrier_for(configure, {"inboundPolicy": "open"})

    post(client, inbound("call.initiated", "CA-open", caller=caller))

    assert Call.objects.get().state == "ringing"
    assert ops(carrier, "hang_up") == []


def test_an_admin_open_policy_overrides_a_disabled_config(client: Client, configure: Any) -> None:
    carrier = carrier_for(configure, {"inboundPolicy": "disabled"})
    InboundPolicy.objects.create(policy="open")

    post(client, inbound("call.initiated", "CA-admin-open"))

    assert Call.objects.get().state == "ringing"
    assert ops(carrier, "hang_up") == []


def test_an_admin_policy_left_blank_keeps_the_configs_policy(
    client: Client, configure: Any
) -> None:
    carrier_for(configure, {"inboundPolicy": "disabled"})
    InboundPolicy.objects.create(policy="", greeting="Admin hello")

    post(client, inbound("call.initiated", "CA-admin-blank"))

    assert Call.objects.get().state == "hangup-bot"


def test_an_admin_greeting_overrides_the_configs(client: Client, configure: Any) -> None:
    carrier_for(configure, {"inboundPolicy": "open", "inboundGreeting": "Config hello"})
    InboundPolicy.objects.create(greeting="Admin hello")

    post(client, inbound("call.initiated", "CA-admin-greet"))

    assert Call.objects.get().metadata["initialMessage"] == "Admin hello"


def test_an_externally_placed_outbound_call_is_registered_without_the_policy_check(
    client: Client, mock_carrier: Any
) -> None:
    # Config policy is the default `disabled`: an inbound call would be rejected.
    response = post(
        client,
        event(
            "call.ringing",
            "CA-ext-1",
            direction="outbound",
            **{"from": OUR_NUMBER, "to": "+15557654321"},
        ),
    )

    assert response.status_code == 200
    call = Call.objects.get()
    assert response.json()["callId"] == call.call_id
    assert call.direction == "outbound"
    assert call.provider_call_id == "CA-ext-1"
    assert call.state == "ringing"
    assert call.to_number == "+15557654321"
    assert call.metadata.get("external") is True
    assert "rejectionReason" not in call.metadata
    assert ops(mock_carrier, "hang_up") == []

    post(client, event("call.answered", "CA-ext-1"))
    call.refresh_from_db()
    assert call.state == "answered"

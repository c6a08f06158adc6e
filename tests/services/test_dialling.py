"""Placing an outbound call (calls/services/dialling.py), called directly.

The guards run in the plugin's order and refuse before anything is recorded or dialled
(docs/plugin-behaviour.md, "Placing a call"); admission counts against maxConcurrentCalls;
what the carrier's dial result says is recorded on the row.
"""

from __future__ import annotations

from typing import Any

import pytest

from calls.exceptions import CapacityReached, CarrierFailed, InvalidRequest
from calls.models import Call
from calls.services.dialling import call_initiate
from providers.base import PlaceCallResult
from providers.errors import ProviderError

pytestmark = pytest.mark.django_db

TO = "+15555550123"


def _ops(carrier: Any) -> list[str]:
    return [op for op, _ in carrier.sent]


# -- guards: refused before the carrier is called -------------------------------------------------


def test_a_destination_outside_allow_to_is_refused_before_the_carrier_is_called(
    mock_carrier: Any, configure: Any
) -> None:
    configure({"outbound": {"allowTo": ["+44", "+1555555"]}})
    with pytest.raises(InvalidRequest, match=r"Destination \+15550009999 .*outbound\.allowTo"):
        call_initiate(to="+15550009999", message="Hi")
    assert mock_carrier.sent == []
    assert not Call.objects.exists()


def test_a_destination_matching_an_allow_to_prefix_is_dialled(
    mock_carrier: Any, configure: Any
) -> None:
    configure({"outbound": {"allowTo": ["+44", "+1555555"]}})
    call = call_initiate(to=TO, message="Hi")
    assert _ops(mock_carrier) == ["place_call"]
    assert call.provider_call_id == f"mock-{call.call_id}"


@pytest.mark.parametrize("digits", ["12a", "", "1 2", "#;"])
def test_a_bad_dtmf_sequence_is_refused(mock_carrier: Any, digits: str) -> None:
    with pytest.raises(InvalidRequest, match="digits may only contain"):
        call_initiate(to=TO, message="Hi", mode="conversation", dtmf_sequence=digits)
    assert mock_carrier.sent == [] and not Call.objects.exists()


def test_dtmf_needs_conversation_mode(mock_carrier: Any) -> None:
    with pytest.raises(InvalidRequest, match="dtmfSequence requires conversation mode"):
        call_initiate(to=TO, message="Hi", mode="notify", dtmf_sequence="123")
    assert mock_carrier.sent == []


def test_a_carrier_without_pre_connect_dtmf_refuses_a_sequence(
    mock_carrier: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mock_carrier, "supports_preconnect_dtmf", False)
    with pytest.raises(InvalidRequest, match="mock does not support pre-connect DTMF"):
        call_initiate(to=TO, message="Hi", mode="conversation", dtmf_sequence="123")
    assert mock_carrier.sent == [] and not Call.objects.exists()


@pytest.mark.parametrize(
    ("to", "error"),
    [(None, "to required"), ("5555550123", "to: Expected E.164"), ("+1 555", "to: Expected")],
)
def test_a_missing_or_malformed_destination_is_refused(
    mock_carrier: Any, to: str | None, error: str
) -> None:
    with pytest.raises(InvalidRequest, match=error):
        call_initiate(to=to, message="Hi")
    assert mock_carrier.sent == []


def test_an_unknown_mode_is_refused(mock_carrier: Any) -> None:
    with pytest.raises(InvalidRequest, match='mode must be "notify" or "conversation"'):
        call_initiate(to=TO, message="Hi", mode="shout")
    assert mock_carrier.sent == []


def test_a_message_with_control_characters_is_refused(mock_carrier: Any) -> None:
    with pytest.raises(InvalidRequest, match="message contains control characters"):
        call_initiate(to=TO, message="Hi\x00there")
    assert mock_carrier.sent == []


def test_the_configured_to_number_is_the_default_destination(
    mock_carrier: Any, configure: Any
) -> None:
    configure({"toNumber": TO})
    call = call_initiate(to=None, message="Hi")
    assert call.to_number == TO
    assert mock_carrier.sent[0] == ("place_call", {"to": TO, "mode": "notify"})


# -- admission ---------------------------------------------------------------------------------


def test_capacity_is_counted_against_max_concurrent_calls(
    mock_carrier: Any, configure: Any
) -> None:
    configure({"maxConcurrentCalls": 2})
    call_initiate(to=TO, message="one")
    call_initiate(to=TO, message="two")
    with pytest.raises(CapacityReached, match=r"Maximum concurrent calls \(2\) reached"):
        call_initiate(to=TO, message="three")
    assert _ops(mock_carrier) == ["place_call", "place_call"]
    assert Call.objects.count() == 2


def test_an_ended_call_frees_its_place(mock_carrier: Any, configure: Any) -> None:
    configure({"maxConcurrentCalls": 1})
    first = call_initiate(to=TO, message="one")
    Call.objects.filter(pk=first.pk).update(state="completed")
    second = call_initiate(to=TO, message="two")
    assert second.pk != first.pk and _ops(mock_carrier) == ["place_call", "place_call"]


def test_the_admitted_row_carries_what_the_answer_owes(mock_carrier: Any, fake_clock: Any) -> None:
    call = call_initiate(to=TO, message="Hello", mode="conversation", dtmf_sequence="ww1#")
    call.refresh_from_db()
    assert (call.direction, call.mode, call.state) == ("outbound", "conversation", "initiated")
    assert call.metadata == {
        "mode": "conversation",
        "initialMessage": "Hello",
        "dtmfSequence": "ww1#",
    }
    assert call.started_at == fake_clock.now() and call.ring_deadline_at > fake_clock.now()
    assert call.webhook_url.endswith(f"/voice/webhook?callId={call.call_id}")


# -- the carrier's answer ---------------------------------------------------------------------


def test_a_refused_dial_fails_the_call_and_keeps_the_error(
    mock_carrier: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(request: Any) -> Any:
        raise ProviderError("21215: geo permissions")

    monkeypatch.setattr(mock_carrier, "place_call", refuse)
    with pytest.raises(CarrierFailed, match="21215: geo permissions"):
        call_initiate(to=TO, message="Hi")
    call = Call.objects.get()
    assert (call.state, call.end_reason) == ("failed", "failed")
    assert call.metadata["error"] == "21215: geo permissions"


def test_a_message_the_carrier_took_with_the_dial_is_marked_inline(
    mock_carrier: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    placed: list[Any] = []

    def place(request: Any) -> PlaceCallResult:
        placed.append(request)
        return PlaceCallResult(
            provider_call_id="CA-inline", message_delivered=True, dtmf_delivered=True
        )

    monkeypatch.setattr(mock_carrier, "place_call", place)
    call = call_initiate(to=TO, message="Hi", mode="conversation", dtmf_sequence="9")
    call.refresh_from_db()
    assert call.provider_call_id == "CA-inline"
    assert call.metadata["initialMessageInline"] is True
    assert "dtmfSequence" not in call.metadata  # the dial carried it: not sent again on answer
    assert placed[0].message == "Hi" and placed[0].dtmf_sequence == "9"
    assert placed[0].webhook_url == call.webhook_url


@pytest.mark.parametrize("delivered", [True, False])
def test_a_notify_message_that_may_ride_the_dial_is_in_flight_until_reported(
    mock_carrier: Any, monkeypatch: pytest.MonkeyPatch, delivered: bool
) -> None:
    # A carrier that reports its words said (Twilio's inline TwiML fetches our <Redirect>
    # after the <Say>): the words wait on the row from before the dial.
    monkeypatch.setattr(mock_carrier, "speech_done_signal", True)
    seen: list[Any] = []

    def place(request: Any) -> PlaceCallResult:
        call = Call.objects.get(public_id=request.call_id)
        seen.append((request.message_utterance_id, call.metadata.get("utterancesInFlight")))
        return PlaceCallResult(provider_call_id="CA-n", message_delivered=delivered)

    monkeypatch.setattr(mock_carrier, "place_call", place)
    call = call_initiate(to=TO, message="Your parcel", mode="notify")
    ((utterance_id, waiting),) = seen
    assert utterance_id and waiting == [{"id": utterance_id, "text": "Your parcel", "hangUp": True}]
    call.refresh_from_db()
    # Too long to ride the dial, it is said on answer instead: not in flight now.
    assert call.metadata.get("utterancesInFlight", []) == (waiting if delivered else [])


@pytest.mark.django_db(transaction=True)  # the refused UPDATE runs outside any atomic block
def test_a_carrier_id_already_in_use_ends_the_new_call_as_error(
    mock_carrier: Any, make_call: Any, monkeypatch: pytest.MonkeyPatch, configure: Any
) -> None:
    configure({"maxConcurrentCalls": 5})
    make_call(provider_call_id="CA-dup", state="completed")
    monkeypatch.setattr(
        mock_carrier, "place_call", lambda request: PlaceCallResult(provider_call_id="CA-dup")
    )
    with pytest.raises(CarrierFailed, match="already in use"):
        call_initiate(to=TO, message="Hi")
    newest = Call.objects.order_by("-pk").first()
    assert newest is not None and newest.state == "error"


def test_only_conversations_are_given_a_stream_plan(
    mock_carrier: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("calls.services.stream_plans.streaming_possible", lambda: True)
    monkeypatch.setattr(
        "calls.services.stream_plans.stream_url", lambda: "wss://v.example/voice/stream"
    )
    plans: list[Any] = []

    def place(request: Any) -> PlaceCallResult:
        plans.append(request.stream)
        return PlaceCallResult(provider_call_id=f"CA-{len(plans)}")

    monkeypatch.setattr(mock_carrier, "place_call", place)
    call_initiate(to=TO, message="Hi", mode="notify")
    Call.objects.update(state="completed")
    call_initiate(to=TO, message="Hi", mode="conversation")
    assert plans[0] is None
    assert plans[1] is not None and plans[1].url == "wss://v.example/voice/stream"

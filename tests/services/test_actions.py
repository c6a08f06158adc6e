"""In-call actions (calls/services/actions.py), called directly: speak, DTMF, hang up.

Each checks the call is known, live and connected first (docs/plugin-behaviour.md,
"Explicit turns"); a carrier refusal is CarrierFailed and finalizes nothing.
"""

from __future__ import annotations

from typing import Any

import pytest

from calls.exceptions import CallConflict, CallNotFound, CarrierFailed, InvalidRequest
from calls.models import Call, TranscriptEntry
from calls.services.actions import call_end, call_hang_up, call_send_dtmf, call_speak
from providers.errors import ProviderError

pytestmark = pytest.mark.django_db

UNKNOWN = "00000000-0000-4000-8000-000000000000"


def _speak(call_id: str) -> None:
    call_speak(call_id=call_id, message="Hello")


def _dtmf(call_id: str) -> None:
    call_send_dtmf(call_id=call_id, digits="1")


# -- guards -----------------------------------------------------------------------------------


@pytest.mark.parametrize("action", [_speak, _dtmf], ids=["speak", "dtmf"])
def test_an_unknown_call_is_not_found(mock_carrier: Any, action: Any) -> None:
    with pytest.raises(CallNotFound, match="Call not found"):
        action(UNKNOWN)
    assert mock_carrier.sent == []


@pytest.mark.parametrize("action", [_speak, _dtmf], ids=["speak", "dtmf"])
def test_an_ended_call_has_ended(mock_carrier: Any, make_call: Any, action: Any) -> None:
    call = make_call(state="completed", end_reason="completed")
    with pytest.raises(CallConflict, match="Call has ended"):
        action(call.call_id)
    assert mock_carrier.sent == []


@pytest.mark.parametrize("action", [_speak, _dtmf], ids=["speak", "dtmf"])
def test_a_call_without_a_carrier_id_is_not_connected(
    mock_carrier: Any, make_call: Any, action: Any
) -> None:
    call = make_call(state="initiated", provider_call_id=None)
    with pytest.raises(CallConflict, match="Call not connected"):
        action(call.call_id)
    assert mock_carrier.sent == []


def test_end_of_an_unknown_call_is_not_found(mock_carrier: Any) -> None:
    with pytest.raises(CallNotFound):
        call_end(call_id=UNKNOWN)


def test_end_of_an_unconnected_call_is_refused(mock_carrier: Any, make_call: Any) -> None:
    call = make_call(state="initiated", provider_call_id=None)
    with pytest.raises(CallConflict, match="Call not connected"):
        call_end(call_id=call.call_id)
    assert Call.objects.get(pk=call.pk).state == "initiated"


def test_ending_an_ended_call_is_success_without_the_carrier(
    mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="hangup-user", end_reason="hangup-user")
    assert call_end(call_id=call.call_id).state == "hangup-user"
    assert mock_carrier.sent == []


# -- speak and DTMF -----------------------------------------------------------------------------


def test_speak_says_the_words_and_records_them(mock_carrier: Any, make_call: Any) -> None:
    call = make_call(state="listening")
    call_speak(call_id=call.call_id, message="One moment", listen_after=True)
    assert mock_carrier.sent[0] == ("play_text", {"text": "One moment", "listen_after": True})
    assert list(TranscriptEntry.objects.values_list("speaker", "text")) == [("bot", "One moment")]
    assert Call.objects.get(pk=call.pk).state == "speaking"


def test_speak_refuses_control_characters(mock_carrier: Any, make_call: Any) -> None:
    call = make_call(state="listening")
    with pytest.raises(InvalidRequest, match="message contains control characters"):
        call_speak(call_id=call.call_id, message="bell\x07")
    assert mock_carrier.sent == []


def test_dtmf_is_sent_to_the_carrier(mock_carrier: Any, make_call: Any) -> None:
    call = make_call(state="listening")
    call_send_dtmf(call_id=call.call_id, digits="12*#w")
    assert mock_carrier.sent == [("send_dtmf", {"digits": "12*#w"})]


@pytest.mark.parametrize("digits", ["", "12x", "1 2"])
def test_bad_digits_are_refused_before_the_call_is_looked_up(
    mock_carrier: Any, digits: str
) -> None:
    with pytest.raises(InvalidRequest, match="digits may only contain"):
        call_send_dtmf(call_id=UNKNOWN, digits=digits)


def test_a_refused_dtmf_is_carrier_failed(
    mock_carrier: Any, make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(target: Any, digits: str) -> None:
        raise ProviderError("carrier said no")

    monkeypatch.setattr(mock_carrier, "send_dtmf", refuse)
    call = make_call(state="listening")
    with pytest.raises(CarrierFailed, match="carrier said no"):
        call_send_dtmf(call_id=call.call_id, digits="1")


# -- hang-up ----------------------------------------------------------------------------------


def test_end_hangs_up_then_finalizes_with_the_reason(mock_carrier: Any, make_call: Any) -> None:
    call = make_call(state="listening")
    ended = call_end(call_id=call.call_id)
    assert [op for op, _ in mock_carrier.sent] == ["hang_up"]
    assert (ended.state, ended.end_reason) == ("hangup-bot", "hangup-bot")
    assert ended.events.filter(type="call.ended").count() == 1


def test_a_failed_carrier_hang_up_does_not_finalize_and_frees_the_claim(
    mock_carrier: Any, make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(target: Any) -> None:
        raise ProviderError("carrier down", retryable=True)

    monkeypatch.setattr(mock_carrier, "hang_up", refuse)
    call = make_call(state="listening")
    with pytest.raises(CarrierFailed, match="carrier down"):
        call_end(call_id=call.call_id)
    call.refresh_from_db()
    assert (call.state, call.ended_at, call.hangup_claimed_at) == ("listening", None, None)

    monkeypatch.undo()
    assert call_end(call_id=call.call_id).state == "hangup-bot"  # a retry can still end it


def test_a_hang_up_another_request_holds_is_shared_not_repeated(
    mock_carrier: Any, make_call: Any, fake_clock: Any
) -> None:
    call = make_call(state="listening", hangup_claimed_at=fake_clock.now())

    def other_request_finishes(clock: Any) -> None:
        Call.objects.filter(pk=call.pk).update(state="hangup-bot", end_reason="hangup-bot")

    fake_clock.on_sleep.append(other_request_finishes)
    assert call_hang_up(call=call, reason="hangup-bot").state == "hangup-bot"
    assert mock_carrier.sent == []  # the other request's hang-up was the only one


def test_a_held_hang_up_that_never_completes_is_carrier_failed(
    mock_carrier: Any, make_call: Any, fake_clock: Any
) -> None:
    call = make_call(state="listening", hangup_claimed_at=fake_clock.now())
    with pytest.raises(CarrierFailed, match="Hang-up did not complete"):
        call_hang_up(call=call, reason="hangup-bot")
    assert mock_carrier.sent == []
    assert Call.objects.get(pk=call.pk).state == "listening"

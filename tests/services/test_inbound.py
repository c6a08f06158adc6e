"""Inbound calls (calls/services/inbound.py), called directly: the policy decision, the
allowlist, and a new caller's arrival (docs/plugin-behaviour.md, "Inbound policy")."""

from __future__ import annotations

from typing import Any

import pytest

from calls.models import AllowedNumber, Call, CallEvent, CarrierCommand, InboundPolicy
from calls.services.inbound import (
    DEFAULT_GREETING,
    allowlist_numbers,
    allowlist_sync_config,
    effective_policy,
    inbound_call_arrive,
    inbound_rejection_hang_up,
    inbound_screen,
)
from calls.services.speech import InlineReply
from providers.base import EventType, NormalizedEvent, Speech

pytestmark = pytest.mark.django_db

FRIEND = "+15550001111"
STRANGER = "+15550009999"
OURS = "+15550000000"


def _ringing(leg: str = "leg-1", from_: str | None = FRIEND, **fields: Any) -> NormalizedEvent:
    return NormalizedEvent(
        type=fields.pop("type", EventType.INITIATED),
        id=f"{leg}-initiated",
        call_id=leg,
        provider_call_id=leg,
        direction="inbound",
        from_number=from_,
        to_number=OURS,
        **fields,
    )


# -- the policy decision -----------------------------------------------------------------------


def test_disabled_rejects_everyone(configure: Any) -> None:
    configure({"inboundPolicy": "disabled", "allowFrom": [FRIEND]})
    result = inbound_screen(from_number=FRIEND)
    assert (result.accepted, result.reason) == (False, "policy is disabled")


def test_open_accepts_anyone_even_without_caller_id(configure: Any) -> None:
    configure({"inboundPolicy": "open"})
    assert inbound_screen(from_number=STRANGER).accepted
    assert inbound_screen(from_number=None).accepted


@pytest.mark.parametrize("policy", ["allowlist", "pairing"])
def test_allowlist_matches_digits_exactly_and_rejects_the_rest(configure: Any, policy: str) -> None:
    configure({"inboundPolicy": policy, "allowFrom": [FRIEND]})
    assert inbound_screen(from_number="+1 (555) 000-1111").reason == "allowlisted"
    assert inbound_screen(from_number=STRANGER).reason == "not allowlisted"
    assert inbound_screen(from_number="+15550001111999").reason == "not allowlisted"  # no prefix
    assert not inbound_screen(from_number=STRANGER).accepted


@pytest.mark.parametrize("anonymous", [None, "", "anonymous", "Restricted"])
def test_allowlist_rejects_a_missing_caller_id(configure: Any, anonymous: str | None) -> None:
    configure({"inboundPolicy": "allowlist", "allowFrom": [FRIEND]})
    result = inbound_screen(from_number=anonymous)
    assert (result.accepted, result.reason) == (False, "missing caller ID")


def test_the_admins_policy_and_greeting_win_over_the_config(configure: Any) -> None:
    configure({"inboundPolicy": "disabled", "inboundGreeting": "From config."})
    assert effective_policy() == ("disabled", "From config.")
    InboundPolicy.objects.create(policy="open", greeting="From the admin.")
    assert effective_policy() == ("open", "From the admin.")
    assert inbound_screen(from_number=STRANGER).accepted


def test_a_blank_admin_row_falls_back_to_the_config(configure: Any) -> None:
    configure({"inboundPolicy": "allowlist", "inboundGreeting": "From config."})
    InboundPolicy.objects.create(policy="", greeting="")
    assert effective_policy() == ("allowlist", "From config.")


def test_enabled_admin_numbers_join_the_config_allowlist(configure: Any) -> None:
    configure({"inboundPolicy": "allowlist", "allowFrom": [FRIEND]})
    AllowedNumber.objects.create(number="+15550002222")
    AllowedNumber.objects.create(number="+15550003333", enabled=False)
    assert allowlist_numbers() == {"15550001111", "15550002222"}
    assert inbound_screen(from_number="+15550002222").accepted
    assert not inbound_screen(from_number="+15550003333").accepted


def test_config_numbers_are_mirrored_as_config_rows(configure: Any) -> None:
    AllowedNumber.objects.create(number="+15550004444", source="config")  # no longer configured
    AllowedNumber.objects.create(number="+15550005555")  # the admin's: kept
    configure({"allowFrom": [FRIEND, "+15550002222", FRIEND]})
    assert allowlist_sync_config() == 2
    rows = set(AllowedNumber.objects.values_list("number", "source"))
    assert rows == {(FRIEND, "config"), ("+15550002222", "config"), ("+15550005555", "admin")}


# -- a new caller arrives ----------------------------------------------------------------------


def test_an_accepted_caller_is_ringing_with_its_greeting_and_an_owed_answer(
    mock_carrier: Any, configure: Any
) -> None:
    configure({"inboundPolicy": "allowlist", "allowFrom": [FRIEND], "inboundGreeting": "Hi!"})
    outcome = inbound_call_arrive("mock", _ringing(), None)
    assert outcome.applied and outcome.accepted_inbound and not outcome.rejected
    call = Call.objects.get()
    assert (call.direction, call.mode, call.state) == ("inbound", "conversation", "ringing")
    assert call.metadata == {"initialMessage": "Hi!", "mode": "conversation"}
    assert call.webhook_url.endswith(f"callId={call.call_id}")
    assert list(CarrierCommand.objects.values_list("kind", flat=True)) == ["answer"]
    assert mock_carrier.sent == [("answer_call", {"provider_call_id": "leg-1"})]
    assert call.events.get().dedupe_key == "leg-1-initiated"


def test_without_any_greeting_the_default_one_is_used(mock_carrier: Any, configure: Any) -> None:
    configure({"inboundPolicy": "open"})
    inbound_call_arrive("mock", _ringing(), None)
    assert Call.objects.get().metadata["initialMessage"] == DEFAULT_GREETING


def test_a_caller_answered_in_the_reply_is_greeted_in_it(mock_carrier: Any, configure: Any) -> None:
    configure({"inboundPolicy": "open", "inboundGreeting": "Welcome."})
    inline = InlineReply()
    outcome = inbound_call_arrive("mock", _ringing(), inline)
    assert outcome.accepted_inbound
    assert inline.speech == Speech(text="Welcome.", listen=True)
    assert mock_carrier.sent == [] and not CarrierCommand.objects.exists()
    call = Call.objects.get()
    assert call.state == "listening" and call.answered_at is not None


def test_a_rejected_caller_is_ended_and_hung_up_once(mock_carrier: Any, configure: Any) -> None:
    configure({"inboundPolicy": "allowlist", "allowFrom": [FRIEND]})
    outcome = inbound_call_arrive("mock", _ringing(from_=STRANGER), None)
    assert outcome.rejected and outcome.applied and not outcome.accepted_inbound
    call = Call.objects.get()
    assert (call.state, call.end_reason) == ("hangup-bot", "hangup-bot")
    assert call.metadata == {
        "rejectionReason": "inbound-policy",
        "screen": "not allowlisted",
        "hungUp": True,
    }
    assert mock_carrier.sent == [("hang_up", {"provider_call_id": "leg-1"})]

    inbound_rejection_hang_up(call)  # a re-delivery: the hang-up already went out
    assert len(mock_carrier.sent) == 1


def test_a_rejected_call_never_ends_before_it_started_and_its_timeline_says_why(
    mock_carrier: Any, configure: Any
) -> None:
    configure({"inboundPolicy": "allowlist", "allowFrom": [FRIEND]})
    inbound_call_arrive("mock", _ringing(from_=STRANGER), None)
    call = Call.objects.get()
    assert call.ended_at == call.started_at
    timeline = list(CallEvent.objects.filter(call=call).order_by("id"))
    assert [event.type for event in timeline] == ["call.initiated", "call.ended"]
    assert timeline[-1].payload == {
        "reason": "hangup-bot",
        "by": "voicecall",
        "why": "rejected by the inbound policy: not allowlisted",
    }


def test_a_carrier_that_refuses_in_the_reply_needs_no_hang_up(
    mock_carrier: Any, configure: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mock_carrier, "rejects_in_reply", True)
    configure({"inboundPolicy": "disabled"})
    inbound_call_arrive("mock", _ringing(), None)
    assert mock_carrier.sent == [] and not CarrierCommand.objects.exists()
    assert Call.objects.get().metadata["hungUp"] is True


def test_the_same_carrier_call_arriving_twice_is_one_call(
    mock_carrier: Any, configure: Any
) -> None:
    configure({"inboundPolicy": "open"})
    inbound_call_arrive("mock", _ringing(), None)
    again = inbound_call_arrive("mock", _ringing(), None)
    assert not again.applied and again.call == Call.objects.get()


def test_numbers_are_normalized_to_e164(mock_carrier: Any, configure: Any) -> None:
    configure({"inboundPolicy": "open"})
    event = NormalizedEvent(
        type=EventType.INITIATED,
        id="i",
        call_id="leg-2",
        provider_call_id="leg-2",
        direction="inbound",
        from_number="15550001111",
        to_number="15550000000",
    )
    inbound_call_arrive("mock", event, None)
    call = Call.objects.get()
    assert (call.from_number, call.to_number) == (FRIEND, OURS)

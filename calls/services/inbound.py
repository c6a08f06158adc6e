"""Inbound calls: screening by the policy and allowlist, and a new caller's arrival.

A new inbound call is screened (docs/plugin-behaviour.md, "Inbound policy"); an accepted
caller is answered (in the reply document, or by a command the outbox sends) and greeted,
a rejected one is refused in the reply or hung up once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import IntegrityError, transaction

from calls import clock, metrics
from calls.call_metadata import (
    HUNG_UP,
    INBOUND_POLICY,
    INITIAL_MESSAGE,
    REJECTION_REASON,
    ROUTE_KEY,
    SCREEN,
)
from calls.carrier import get_provider
from calls.config import RouteConfig, get_config
from calls.models import AllowedNumber, Call, CarrierCommand, InboundPolicy
from calls.phone import digits_only, mask_number, to_e164
from calls.selectors import call_find
from calls.services import lifecycle
from calls.services.answering import call_answered
from calls.services.lifecycle import EventOutcome
from calls.services.live import live_publish
from calls.services.outbox import command_owe
from calls.services.routes import number_route_key
from calls.services.speech import InlineReply
from calls.state import CallState
from providers.base import EventType, NormalizedEvent

logger = logging.getLogger(__name__)

Kind = CarrierCommand.Kind

DEFAULT_GREETING = "Hello! How can I help you today?"


@dataclass(frozen=True, slots=True)
class ScreenResult:
    accepted: bool
    reason: str


def effective_policy() -> tuple[str, str | None]:
    """(policy, greeting): the admin's choice when set, else the config's."""
    cfg = get_config()
    row = InboundPolicy.objects.first()
    policy = (row.policy if row and row.policy else None) or cfg.inbound_policy
    greeting = (row.greeting if row and row.greeting else None) or cfg.inbound_greeting
    return policy, greeting


def allowlist_numbers() -> set[str]:
    """Digit forms of every allowed number: config allowFrom plus enabled admin rows."""
    entries = list(get_config().allow_from)
    entries += AllowedNumber.objects.filter(enabled=True).values_list("number", flat=True)
    # Entries that normalize to empty never match.
    return {digits for digits in map(digits_only, entries) if digits}


def inbound_screen(*, from_number: str | None) -> ScreenResult:
    """Decide an inbound caller: exact digit equality against the allowlist; anonymous rejected."""
    policy, _ = effective_policy()
    if policy == InboundPolicy.Policy.DISABLED:
        logger.info("Inbound call rejected: policy is disabled")
        return ScreenResult(False, "policy is disabled")
    if policy == InboundPolicy.Policy.OPEN:
        return ScreenResult(True, "policy is open")
    caller = digits_only(from_number)
    if not caller:
        logger.info("Inbound call rejected: missing caller ID")
        return ScreenResult(False, "missing caller ID")
    if caller in allowlist_numbers():
        return ScreenResult(True, "allowlisted")
    # pairing behaves exactly like allowlist until a pairing flow exists.
    logger.info("Inbound call rejected: %s is not allowlisted", mask_number(from_number))
    return ScreenResult(False, "not allowlisted")


@transaction.atomic
def allowlist_sync_config() -> int:
    """Mirror config allowFrom as read-only `config` rows; returns how many exist."""
    numbers = list(dict.fromkeys(get_config().allow_from))
    AllowedNumber.objects.filter(source=AllowedNumber.Source.CONFIG).exclude(
        number__in=numbers
    ).delete()
    for number in numbers:
        AllowedNumber.objects.get_or_create(
            number=number,
            source=AllowedNumber.Source.CONFIG,
            defaults={"label": "from config allowFrom"},
        )
    return len(numbers)


def inbound_call_arrive(
    provider: str, event: NormalizedEvent, inline: InlineReply | None
) -> EventOutcome:
    """A new inbound call: screen it; accepted ones are greeted, rejected ones hung up once."""
    from_number = to_e164(event.from_number or "") or (event.from_number or "")
    to_number = to_e164(event.to_number or "") or (event.to_number or "")
    screen = inbound_screen(from_number=from_number)
    route_key = number_route_key(to_number)
    route = (get_config().numbers.get(route_key) if route_key else None) or RouteConfig()
    fields = {
        **lifecycle.call_identity_new(other_party=from_number, route=route),
        "provider": provider,
        "provider_call_id": event.provider_call_id,
        "direction": Call.Direction.INBOUND,
        "mode": Call.Mode.CONVERSATION,
        "from_number": from_number[:32],
        "to_number": to_number[:32],
    }
    if screen.accepted:
        _, greeting = effective_policy()
        metadata = {
            INITIAL_MESSAGE: route.inbound_greeting or greeting or DEFAULT_GREETING,
            "mode": Call.Mode.CONVERSATION,
        }
        if route_key:
            metadata[ROUTE_KEY] = route_key
        fields.update(state=CallState.RINGING, metadata=metadata)
    else:
        # One instant for both: a call refused as it arrived never ends before it started.
        now = clock.now()
        fields.update(
            state=CallState.HANGUP_BOT,
            end_reason=CallState.HANGUP_BOT,
            started_at=now,
            ended_at=now,
            metadata={REJECTION_REASON: INBOUND_POLICY, SCREEN: screen.reason},
        )
    try:
        with transaction.atomic():
            call = Call.objects.create(**fields)
    except IntegrityError:  # another process registered the same carrier call first
        existing = call_find(event.provider_call_id, provider=provider)
        return EventOutcome(
            existing, applied=False, rejected=bool(existing and inbound_was_rejected(existing))
        )
    live_publish(call_id=call.call_id)
    lifecycle.event_record(call, event)
    if not screen.accepted:
        lifecycle.rejected_end_record(call, f"rejected by the inbound policy: {screen.reason}")
        metrics.call_ended(
            provider=provider,
            direction=call.direction,
            mode=call.mode,
            end_reason=CallState.HANGUP_BOT,
        )
        inbound_rejection_hang_up(call)
        return EventOutcome(call, applied=True, rejected=True)
    logger.info(
        "call=%s provider=%s inbound from %s accepted",
        call.public_id,
        provider,
        mask_number(from_number),
    )
    if inline is not None or event.type == EventType.ANSWERED:
        # Returning a document answers the call; the greeting rides in it (plugin issues
        # #29101, #32902: greetings never spoken, calls never answered).
        call_answered(call, event, inline)
    else:
        command_owe(call, Kind.ANSWER)
    return EventOutcome(call, applied=True, accepted_inbound=True)


def inbound_was_rejected(call: Call) -> bool:
    return call.meta.get(REJECTION_REASON) == INBOUND_POLICY


def inbound_rejection_hang_up(call: Call) -> None:
    """Hang up a rejected inbound call exactly once; a re-delivery retries a failed attempt."""
    if not inbound_was_rejected(call) or call.meta.get(HUNG_UP):
        return
    if get_provider().rejects_in_reply:
        # The webhook reply itself refuses the call (<Reject/>); no REST hang-up needed.
        lifecycle.metadata_update(call=call, set_={HUNG_UP: True})
        return
    command_owe(call, Kind.REJECT_HANG_UP, retry_now=True)

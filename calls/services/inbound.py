"""Inbound screening and the allowlist rows behind it.

docs/plugin-behaviour.md, "Inbound policy".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction

from calls.config import get_config
from calls.models import AllowedNumber, InboundPolicy
from calls.phone import digits_only, mask_number

logger = logging.getLogger(__name__)

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

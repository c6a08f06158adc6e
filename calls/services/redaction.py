"""What a stored transcript line hides: phone numbers, e-mail addresses, payment cards.

`retention.redact` names the kinds; each match becomes a marker (`[phone]`, `[email]`,
`[card]`). Only the stored record is redacted: the words in flight — the reply to the
current line, a `continue` answer — stay the caller's own (docs/architecture.md,
"Retention and redaction").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import phonenumbers
from phonenumbers import Leniency, PhoneNumberMatcher

from calls.config import get_config
from calls.models import Call

MARKERS = {"phone": "[phone]", "email": "[email]", "card": "[card]"}

# 13–19 digits, a single space or dash allowed between any two: how card numbers are
# spoken back by STT or typed. Digits glued to the run make it another number, not a card.
_CARD_RUN = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])")
# Deliberately plain: the local part and a dotted domain with a letter TLD.
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# No region: the matcher then finds only numbers written with a leading "+".
_NO_REGION = "ZZ"


def luhn_valid(digits: str) -> bool:
    """The Luhn check every payment card number passes (ISO/IEC 7812)."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _cards(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group())
        return MARKERS["card"] if luhn_valid(digits) else match.group()

    return _CARD_RUN.sub(replace, text)


def _spans(text: str, region: str, leniency: int) -> list[tuple[int, int]]:
    return [(m.start, m.end) for m in PhoneNumberMatcher(text, region, leniency=leniency)]


def _phones(text: str, region: str) -> str:
    # National formats must be valid numbers of the call's region: POSSIBLE would also take
    # dates, prices and room numbers ("2024-05-01", "250.00"). A number written with "+"
    # is taken when merely possible, so fictional ranges (+1 555 01xx) are hidden too.
    spans = _spans(text, region, Leniency.VALID) if region != _NO_REGION else []
    spans += _spans(text, _NO_REGION, Leniency.POSSIBLE)
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):  # both passes may find one number: one marker
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    for start, end in reversed(merged):
        text = text[:start] + MARKERS["phone"] + text[end:]
    return text


def region_of(numbers: Iterable[str]) -> str:
    """The region (e.g. "US") of the first of the call's numbers that parses, else "ZZ"."""
    for number in numbers:
        try:
            parsed = phonenumbers.parse(number, None)
        except phonenumbers.NumberParseException:
            continue
        region = phonenumbers.region_code_for_country_code(parsed.country_code or 0)
        if region and region != "001":  # 001: non-geographic (satellite, global services)
            return region
    return _NO_REGION


def redact(text: str, *, kinds: Iterable[str], region: str = _NO_REGION) -> str:
    """`text` with each match of the given kinds replaced by its marker.

    Cards go first: a card's digit run must not be half-eaten as a phone number.
    """
    wanted = set(kinds)
    if "card" in wanted:
        text = _cards(text)
    if "email" in wanted:
        text = _EMAIL.sub(MARKERS["email"], text)
    if "phone" in wanted:
        text = _phones(text, region)
    return text


def redact_stored(*, call: Call, text: str) -> str:
    """`text` as the record keeps it under `retention.redact`.

    National formats are read in the region of the other party's number (the caller's on
    an inbound call), then of our own.
    """
    kinds = get_config().retention.redact
    if not kinds or not text:
        return text
    numbers = (call.from_number, call.to_number)
    if call.direction != "inbound":
        numbers = numbers[::-1]
    region = region_of(n for n in numbers if n) if "phone" in kinds else _NO_REGION
    return redact(text, kinds=kinds, region=region)


# Event payload keys that carry words or keyed digits (providers/base.py, payload()).
PAYLOAD_WORDS = ("transcript", "text", "digits")


def redact_payload(*, call: Call, payload: dict[str, Any]) -> dict[str, Any]:
    """An event payload with its words redacted as a transcript line is (a new dict)."""
    return {
        key: redact_stored(call=call, text=value)
        if key in PAYLOAD_WORDS and isinstance(value, str)
        else value
        for key, value in payload.items()
    }

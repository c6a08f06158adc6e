"""Phone number handling in one place: E.164 checks, digit normalization, log masking."""

from __future__ import annotations

import re

import phonenumbers

E164_RE = re.compile(r"^\+[1-9]\d{1,14}$")
E164_ERROR = "Expected E.164 format, e.g. +15550001234"
_NON_DIGITS = re.compile(r"\D")


def is_e164(value: str | None) -> bool:
    return bool(value and E164_RE.match(value))


def digits_only(value: str | None) -> str:
    """Strip every non-digit: '+1 (415) 555-0123' -> '14155550123'.

    The allowlist compares these (docs/plugin-behaviour.md, "Inbound policy").
    """
    return _NON_DIGITS.sub("", value or "")


def to_e164(value: str) -> str | None:
    """Best-effort E.164 for carrier input ('15551234567' -> '+15551234567'); None if impossible."""
    value = (value or "").strip()
    if is_e164(value):
        return value
    digits = digits_only(value)
    if not digits:
        return None
    try:
        parsed = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return None
    formatted = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return formatted if is_e164(formatted) else None


def mask_number(value: str | None) -> str:
    """+15551234567 -> +1555•••4567; numbers reach logs only through this."""
    value = value or ""
    if len(value) <= 6:
        return "•" * len(value)
    return f"{value[:5]}•••{value[-4:]}"


# A number inside free text: `+` and 7–15 digits; `%2B` is the `+` of a URL's query string,
# as an access log line shows it.
_E164_IN_TEXT = re.compile(r"(?:\+|%2[Bb])([1-9]\d{6,14})\b")


def mask_numbers_in(text: str) -> str:
    """Every E.164 number in `text` masked as `mask_number` does (log lines, and the admin
    for a user without the view-numbers permission: docs/security.md, "Logs")."""
    return _E164_IN_TEXT.sub(lambda match: mask_number("+" + match.group(1)), text)

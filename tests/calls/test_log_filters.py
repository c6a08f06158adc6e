"""Numbers that reach a log line are masked (docs/security.md, "Logs")."""

from __future__ import annotations

import logging

from calls.log_filters import RedactPhoneNumbers


def _format(msg: str, *args: object) -> str:
    record = logging.LogRecord("t", logging.WARNING, __file__, 1, msg, args, None)
    RedactPhoneNumbers().filter(record)
    return record.getMessage()


def test_a_number_inside_a_carrier_error_is_masked() -> None:
    line = _format(
        "timer hang-up failed: %s",
        "Twilio API error: 400 The 'To' number +15555550123 is not valid",
    )
    assert "+15555550123" not in line
    assert "+1555•••0123" in line


def test_ids_and_plain_text_are_left_alone() -> None:
    line = _format("call=%s provider_call_id=%s", "3f2b", "CA00000000000000000000000000000001")
    assert line == "call=3f2b provider_call_id=CA00000000000000000000000000000001"


def test_the_console_handler_applies_the_filter() -> None:
    from django.conf import settings

    assert "redact_numbers" in settings.LOGGING["handlers"]["console"]["filters"]


def test_a_number_in_a_url_query_is_masked() -> None:
    line = _format('%s - "%s %s HTTP/1.1" %d', "127.0.0.1:5", "GET", "/x?q=%2B15555550123", 200)
    assert "15555550123" not in line
    assert "/x?q=+1555•••0123" in line

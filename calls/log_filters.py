"""Log hygiene: phone numbers that slip into a log line (e.g. inside a carrier's error
message) are masked on the way out (docs/security.md, "Logs")."""

from __future__ import annotations

import logging
import re

from calls.phone import mask_number

# `%2B`: a number in a URL's query string, as an access log line shows it.
_E164_ISH = re.compile(r"(?:\+|%2[Bb])([1-9]\d{6,14})\b")


class RedactPhoneNumbers(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = _E164_ISH.sub(lambda m: mask_number("+" + m.group(1)), message)
        if masked != message:
            record.msg, record.args = masked, None
        return True

"""Log hygiene: phone numbers that slip into a log line (e.g. inside a carrier's error
message) are masked on the way out (docs/security.md, "Logs")."""

from __future__ import annotations

import logging

from calls.phone import mask_numbers_in


class RedactPhoneNumbers(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_numbers_in(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True

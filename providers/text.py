"""Control characters at the carrier boundary: identifiers refuse them, free text loses them.

Carrier input is percent-decoded form data or JSON, so a signed request can carry any code
point — NUL (which PostgreSQL text and JSONB reject outright), C0/C1 controls, or a lone
surrogate from a JSON `\\ud800` escape (which no database encoding accepts). None of them
is meaningful in a call id or a transcript: `TelephonyProvider.parse_webhook` refuses them in
identifiers and removes them from words before the services see an event, and the API
refuses them in its input (docs/security.md, "Webhooks", step 5, and "The API").
"""

from __future__ import annotations

import re
import unicodedata

# C0 and C1 controls, DEL, and UTF-16 surrogates (which only exist as lone code points).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# Tab, newline and carriage return are ordinary in a message someone typed.
_CONTROL_EXCEPT_WHITESPACE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def has_control(value: str, *, allow_whitespace: bool = False) -> bool:
    """True when `value` holds a control character or a lone surrogate."""
    pattern = _CONTROL_EXCEPT_WHITESPACE if allow_whitespace else _CONTROL
    return pattern.search(value) is not None


def clean_text(value: str) -> str:
    """Controls and surrogates replaced by spaces, whitespace collapsed, NFC-normalized."""
    if not value:
        return value
    return " ".join(unicodedata.normalize("NFC", _CONTROL.sub(" ", value)).split())

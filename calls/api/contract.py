"""What the API accepts, said once for the REST serializers, the RPC methods and the tool.

The OpenAPI document (`/api/schema/`) is a promise a client can test (docs/api-contract.md):
a request the schema allows is not refused as malformed, and one it forbids is. So the
fields here validate exactly what their schema says: strings are strings (DRF's CharField
would turn `0` into "0"), text has a non-blank character and no control characters
(docs/security.md, "The API"), numbers and digits match one pattern on both sides.
"""

from __future__ import annotations

import re
from typing import Any

from django.core.validators import RegexValidator
from django.utils.deconstruct import deconstructible
from drf_spectacular.utils import OpenApiResponse, extend_schema_field
from rest_framework import serializers

from calls.exceptions import InvalidRequest
from calls.services.actions import DTMF_ERROR

# The controls providers/text.py refuses in API text, minus tab, newline and CR. Written as
# escapes so the pattern reads the same in Python and in a client's ECMA regex.
_CONTROLS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
TEXT_PATTERN = rf"^[^{_CONTROLS}]*[^\s{_CONTROLS}][^{_CONTROLS}]*$"
BLANKABLE_TEXT_PATTERN = rf"^[^{_CONTROLS}]*$"
# For a serializer field with allow_blank: drf-spectacular documents it as `oneOf` this
# pattern or the empty string, so the pattern itself must not match "" too.
_FILLED_PATTERN = rf"^[^{_CONTROLS}]+$"
# [0-9], not \d: Python's \d also matches other scripts' digits, a client's does not.
E164_PATTERN = r"^\+[1-9][0-9]{1,14}$"
# A session key is stored in the caller's agent namespace (`agent:<id>:<key>`, 200 characters
# at most: calls/services/sessions.py); this leaves room for any sensible agent id.
SESSION_KEY_MAX = 120
DTMF_PATTERN = r"^[0-9*#,wWpP]+$"  # calls/services/actions.py DTMF_RE, matched in full


# Raw JSON Schema pieces for the RPC methods and the tool, which take plain JSON objects.
def string_schema(pattern: str = TEXT_PATTERN, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "pattern": pattern, **extra}


def object_schema(
    properties: dict[str, Any], required: tuple[str, ...] = (), **extra: Any
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, **extra}
    if required:
        schema["required"] = list(required)
    return schema


# A call placed with pre-connect digits must be a conversation (calls/services/dialling.py):
# an object that has `dtmfSequence` also has `mode: conversation`. A pattern, not an enum:
# drf-spectacular would fold an enum into the `mode` enum component of the same object.
DTMF_NEEDS_CONVERSATION: dict[str, Any] = {
    "anyOf": [
        {"not": {"required": ["dtmfSequence"]}},
        {"required": ["mode"], "properties": {"mode": {"pattern": "^conversation$"}}},
    ]
}


@deconstructible
class FullMatch(RegexValidator):
    """RegexValidator matching the whole value: Python's `$` also matches before a final
    newline, a JSON Schema `pattern`'s does not, and the schema is what a client reads."""

    def __call__(self, value: Any) -> None:
        if not re.fullmatch(self.regex, str(value)):
            raise serializers.ValidationError(self.message, code=self.code)


class StrictCharField(serializers.CharField):
    """A string field that refuses numbers and booleans instead of coercing them."""

    default_error_messages = {"not_a_string": "Not a valid string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string")
        return str(super().to_internal_value(data))


def text_field(**kwargs: Any) -> StrictCharField:
    """Free text (a message, a session key): trimmed, not blank unless allow_blank."""
    pattern = _FILLED_PATTERN if kwargs.get("allow_blank") else TEXT_PATTERN
    message = "must not be blank nor hold control characters"
    return StrictCharField(validators=[FullMatch(pattern, message)], **kwargs)


def pattern_field(pattern: str, message: str, **kwargs: Any) -> StrictCharField:
    """An exact token (a number, DTMF digits): not trimmed, so " +1555…" is refused as the
    schema says rather than quietly fixed."""
    return StrictCharField(
        validators=[FullMatch(pattern, message)], trim_whitespace=False, **kwargs
    )


def e164_field(**kwargs: Any) -> StrictCharField:
    return pattern_field(E164_PATTERN, "Expected E.164 format, e.g. +15550001234", **kwargs)


@extend_schema_field(string_schema(DTMF_PATTERN))
class DtmfField(StrictCharField):
    """DTMF digits, refused with the plugin's own error string (docs/plugin-behaviour.md),
    not a field error: the same answer the service gives, for the same pattern."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(trim_whitespace=False, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        digits = super().to_internal_value(data)
        if not re.fullmatch(DTMF_PATTERN, digits):
            raise InvalidRequest(DTMF_ERROR)
        return digits


class ErrorSerializer(serializers.Serializer):
    """The REST error shape (calls/api/errors.py)."""

    error = serializers.CharField(help_text="What went wrong, in words")
    code = serializers.CharField(help_text="INVALID_REQUEST, UNAUTHORIZED, NOT_FOUND, …")
    details = serializers.JSONField(required=False, help_text="Per-field validation errors")


_STATUS_TEXT = {
    400: "Malformed or invalid request",
    401: "Missing, invalid or revoked bearer token",
    404: "No such call",
    409: "The call cannot do this now (ended, not connected, busy)",
    429: "maxConcurrentCalls reached",
    502: "The carrier refused or failed",
    503: "Disabled, or no way to speak on this call",
    504: "Timed out waiting for the caller",
}


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """`extend_schema(responses=…)` entries for the errors a view really answers."""
    return {s: OpenApiResponse(ErrorSerializer, description=_STATUS_TEXT[s]) for s in statuses}

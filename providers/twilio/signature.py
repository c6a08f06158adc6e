"""Twilio webhook signatures (X-Twilio-Signature, HMAC over URL + sorted form params).

Checked with the SDK's RequestValidator against every URL Twilio may have signed (the
port variants of docs/carriers.md, "Twilio: signatures"); the verified request's replay
key never includes I-Twilio-Idempotency-Token, which Twilio changes between retries of
one delivery.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from twilio.request_validator import RequestValidator, get_signature_algorithm

from providers.base import VerifyResult, WebhookRequest
from providers.twilio.client import config_value
from providers.webhook_security import (
    SecuritySettings,
    forwarding_trusted,
    reconstruct_url,
    signed_url_candidates,
    skip_key,
)

SIGNATURE_HEADER = "x-twilio-signature"
SETTINGS_HEADER = "x-twilio-webhooks-signature-settings"
MISSING_SIGNATURE = "Missing X-Twilio-Signature header"


class Params(dict[str, list[str]]):
    """Form fields as RequestValidator reads them: it calls getlist() (Django QueryDict shape)."""

    def getlist(self, name: str) -> list[str]:
        return self[name]


def verify(request: WebhookRequest, settings: Mapping[str, Any]) -> VerifyResult:
    security = SecuritySettings.from_settings(settings)
    if security.skip_signature_verification:
        return VerifyResult(
            ok=True,
            reason="signature verification skipped",
            request_key=skip_key("twilio", request),
        )
    signature = provided_signature(request)
    if not signature:
        return VerifyResult(ok=False, reason=MISSING_SIGNATURE)
    candidates = signed_url_candidates(request, security)
    try:
        params = signed_params(request)
    except ValueError:
        return VerifyResult(ok=False, reason="Undecodable request body")
    validator = RequestValidator(config_value(settings, "authToken"))
    # A Webhooks Rule names HMAC_SHA256 in this header (absent: HMAC_SHA1). Its SharedKey
    # secret is not configurable here, so only a rule keyed with the auth token verifies.
    algorithm = get_signature_algorithm(request.header(SETTINGS_HEADER))
    for url in candidates:
        if validator.validate(url, params, signature, algorithm=algorithm):
            return VerifyResult(ok=True, request_key=replay_key(url, params, signature))
    return VerifyResult(ok=False, reason=f"Invalid signature for URL: {candidates[0]}")


def provided_signature(request: WebhookRequest) -> str:
    """The first value when the header was repeated (joined with commas on the way in)."""
    value = request.header(SIGNATURE_HEADER) or ""
    return value.split(",")[0].strip()


def is_json_signed(request: WebhookRequest) -> bool:
    """JSON-bodied webhooks sign the URL only and put the body's SHA-256 in `bodySHA256`."""
    return "bodySHA256" in parse_qs(urlsplit(request.url).query)


def signed_params(request: WebhookRequest) -> Params | str:
    """The form fields, or the raw body string for the bodySHA256 variant.

    Only pass a str with bodySHA256 present: otherwise the SDK would iterate its characters.
    Raises ValueError (UnicodeDecodeError) when the body is not UTF-8.
    """
    text = request.body.decode("utf-8")
    if is_json_signed(request):
        return text
    # Blank fields (ForwardedFrom=) are signed too, so they must survive decoding.
    return Params(parse_qs(text, keep_blank_values=True, errors="strict"))


def replay_key(url: str, params: Params | str, signature: str) -> str:
    """twilio:req: + sha256(url \\n sorted k=v&… \\n signature), as the plugin keys them."""
    if isinstance(params, str):
        canonical = params
    else:
        canonical = "&".join(f"{key}={value}" for key in sorted(params) for value in params[key])
    digest = hashlib.sha256(f"{url}\n{canonical}\n{signature}".encode()).hexdigest()
    return f"twilio:req:{digest}"


def explain(request: WebhookRequest, settings: Mapping[str, Any]) -> dict[str, Any]:
    """What verification sees, for a debug command; it never contains the auth token."""
    security = SecuritySettings.from_settings(settings)
    signature = provided_signature(request)
    result = verify(request, settings)
    try:
        params: Params | str = signed_params(request)
    except ValueError:
        params = Params()
    validator = RequestValidator(config_value(settings, "authToken"))
    algorithm = get_signature_algorithm(request.header(SETTINGS_HEADER))
    candidates = [
        {
            "url": url,
            "expectedSignature": _expected(validator, url, params, algorithm),
            "matches": bool(signature)
            and validator.validate(url, params, signature, algorithm=algorithm),
        }
        for url in signed_url_candidates(request, security)
    ]
    return {
        "reconstructedUrl": reconstruct_url(request, security),
        "candidates": candidates,
        "provided": signature or None,
        "algorithm": algorithm,
        "forwardingTrusted": forwarding_trusted(request, security),
        "ok": result.ok,
        "reason": result.reason,
    }


def _expected(
    validator: RequestValidator, url: str, params: Params | str, algorithm: str
) -> str | None:
    try:
        return str(
            validator.compute_signature(
                url, Params() if isinstance(params, str) else params, algorithm
            )
        )
    except ValueError:  # an algorithm this SDK does not know
        return None

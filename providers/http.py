"""The HTTP layer the carrier REST clients share (Twilio, Telnyx, Plivo), over httpx.

Why it exists: each client used to carry its own copy of the same error class, the same
retry rule and the same send-and-check wrapper. What differs per carrier, its error body's
field names and the codes that mean "the call is gone", stays in providers/<carrier>/client.py
(docs/carriers.md, "Twilio: REST calls", "Telnyx: commands", "Plivo: REST calls").

One request per call, never retried here: the services own retry policy, and `retryable`
tells them whether trying again can help.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import httpx

from providers.errors import ProviderError, ProviderUnavailable

DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
# How much of an error body that is not the carrier's JSON shape goes into the message.
ERROR_TEXT_CHARS = 200


def retryable_status(status: int) -> bool:
    """Rate limits (429) and server errors (5xx) may pass on a later try; other 4xx won't."""
    return status >= 500 or status == 429


class CarrierApiError(ProviderError):
    """A non-2xx answer from a carrier API; `status` is the HTTP status.

    The shared half of TwilioApiError, TelnyxApiError and PlivoApiError: retryability from
    the status, `call_gone`, and the "<Carrier> API error: <status> <detail>" message. A
    subclass names its carrier and reads its own error body in `error_fields`.
    """

    carrier: ClassVar[str] = "Carrier"
    # Vendor error codes that say, like a 404, that the call no longer exists.
    gone_codes: ClassVar[frozenset[str]] = frozenset()
    # For carriers whose error bodies carry no code: the HTTP status stands in for one.
    status_as_code: ClassVar[bool] = False

    def __init__(self, message: str, *, status: int, provider_code: str | None = None) -> None:
        if provider_code is None and self.status_as_code:
            provider_code = str(status)
        super().__init__(message, retryable=retryable_status(status), provider_code=provider_code)
        self.status = status

    @property
    def call_gone(self) -> bool:
        """The call no longer exists or has ended: hanging it up again is a success."""
        return self.status == 404 or self.provider_code in self.gone_codes

    @classmethod
    def from_response(cls, response: httpx.Response) -> Self:
        code, detail = cls.error_fields(response)
        status = response.status_code
        return cls(f"{cls.carrier} API error: {status} {detail}", status=status, provider_code=code)

    @classmethod
    def error_fields(cls, response: httpx.Response) -> tuple[str | None, str]:
        """The carrier's error code (None if it gave none) and message for this answer."""
        return None, error_text(response)


class CarrierHttp:
    """An adapter's httpx client: the one handed in (tests, shared pools) or its own.

    Exists so each adapter does not repeat the "close it only if we made it" bookkeeping.
    """

    def __init__(self, http: httpx.Client | None) -> None:
        self.client = http or httpx.Client(timeout=DEFAULT_TIMEOUT)
        self._owned = http is None

    def close(self) -> None:
        if self._owned:
            self.client.close()


def send(
    http: httpx.Client, method: str, url: str, *, error: type[CarrierApiError], **kwargs: Any
) -> httpx.Response:
    """One request: a transport failure is ProviderUnavailable, a non-2xx answer `error`.

    `kwargs` go to httpx.Client.request as they are (json, params, headers, auth, …).
    """
    try:
        response = http.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        raise ProviderUnavailable(f"{error.carrier} API unreachable: {exc}") from exc
    if response.status_code >= 400:
        raise error.from_response(response)
    return response


def json_body(response: httpx.Response) -> Any:
    """The response's JSON, or None when the body is empty or not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a response; 204s, non-JSON and non-object bodies read as {}."""
    body = json_body(response)
    return body if isinstance(body, dict) else {}


def error_text(response: httpx.Response) -> str:
    """An error body quoted as it came (cut short), or the status's reason phrase."""
    return response.text.strip()[:ERROR_TEXT_CHARS] or response.reason_phrase

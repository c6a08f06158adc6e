"""Twilio Programmable Voice REST 2010-04-01 through the official SDK, carried over httpx."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
from twilio.http import HttpClient
from twilio.http.response import Response
from twilio.rest import Client

from providers.common import block_value
from providers.errors import ProviderError, ProviderUnavailable

logger = logging.getLogger(__name__)

DEFAULT_API_BASE_URL = "https://api.twilio.com"
DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)


def config_value(settings: Mapping[str, Any], key: str) -> str:
    """A `twilio.*` setting."""
    return block_value(settings, "twilio", key)


class TwilioApiError(ProviderError):
    """A non-2xx answer from the Twilio API; `status` is the HTTP status."""

    def __init__(self, message: str, *, status: int, provider_code: str | None) -> None:
        super().__init__(
            message, retryable=status >= 500 or status == 429, provider_code=provider_code
        )
        self.status = status

    @property
    def not_found(self) -> bool:
        # 20404 "The requested resource was not found": the call record is gone.
        return self.status == 404 or self.provider_code == "20404"


class HttpxTwilioClient(HttpClient):
    """The SDK's transport seam: it builds the request, we send it with httpx.

    Errors are raised here, before the SDK wraps them, so the status and Twilio's error
    body reach ProviderError intact. Tests inject `httpx.MockTransport`.
    """

    def __init__(self, http: httpx.Client, *, api_base_url: str | None = None) -> None:
        super().__init__(logger, is_async=False, timeout=None)
        base = (api_base_url or DEFAULT_API_BASE_URL).rstrip("/")
        self._http = http
        self._base = None if base == DEFAULT_API_BASE_URL else urlsplit(base)

    def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        headers = dict(headers or {})
        try:
            response = self._http.request(
                method,
                self._rewrite(uri),
                params=_pairs(params) or None,
                content=_body(data, headers),
                headers=headers,
                auth=auth,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                follow_redirects=allow_redirects,
            )
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"Twilio API unreachable: {exc}") from exc
        if response.status_code >= 400:
            raise api_error(response)
        return Response(response.status_code, response.text, response.headers)

    def _rewrite(self, uri: str) -> str:
        """apiBaseUrl replaces the origin; the SDK's path (/2010-04-01/Accounts/…) stays."""
        if self._base is None:
            return uri
        parts = urlsplit(uri)
        path = self._base.path.rstrip("/") + parts.path
        return urlunsplit((self._base.scheme, self._base.netloc, path, parts.query, ""))


def _pairs(data: Mapping[str, object] | None) -> tuple[tuple[str, str], ...]:
    """Form pairs; list values become repeated fields (StatusCallbackEvent=a&…=b)."""
    pairs: list[tuple[str, str]] = []
    for key, value in (data or {}).items():
        for item in value if isinstance(value, list | tuple) else [value]:
            pairs.append((key, _form_value(item)))
    # A tuple: httpx types list params as list[tuple[str, PrimitiveData]], which (lists
    # being invariant) a list of str pairs doesn't match; a tuple of them does.
    return tuple(pairs)


def _form_value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _body(data: dict[str, object] | None, headers: dict[str, str]) -> bytes | None:
    if not data:
        return None
    if headers.get("Content-Type") == "application/json":
        return json.dumps(data).encode()
    return urlencode(_pairs(data)).encode()


def api_error(response: httpx.Response) -> TwilioApiError:
    """Twilio error bodies are {"code": 21220, "message": "…", "status": 400, …}."""
    code, message = _error_fields(response)
    status = response.status_code
    return TwilioApiError(
        f"Twilio API error: {status} {message}",
        status=status,
        provider_code=str(code) if code is not None else None,
    )


def _error_fields(response: httpx.Response) -> tuple[object | None, str]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return None, (response.text.strip()[:200] or response.reason_phrase)
    # RFC 9457 problem bodies (newer Twilio APIs) say "detail"/"title" instead of "message".
    message = body.get("message") or body.get("detail") or body.get("title")
    return body.get("code"), str(message or response.reason_phrase)


class TwilioRest:
    """The four Call-resource operations the adapter needs, each one request, no retries."""

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        http: httpx.Client,
        region: str | None = None,
        api_base_url: str | None = None,
    ) -> None:
        transport = HttpxTwilioClient(http, api_base_url=api_base_url)
        self.origin = (api_base_url or DEFAULT_API_BASE_URL).rstrip("/")
        custom_base = self.origin != DEFAULT_API_BASE_URL
        # environment={} keeps TWILIO_REGION/TWILIO_EDGE from silently changing the host.
        self._client = Client(
            account_sid,
            auth_token,
            http_client=transport,
            environment={},
            region=None if custom_base else (region or None),
        )

    def create_call(self, **fields: Any) -> tuple[str, str]:
        call = self._client.calls.create(**fields)
        return str(call.sid), str(call.status or "")

    def update_call(self, sid: str, **fields: Any) -> None:
        self._client.calls(sid).update(**fields)

    def fetch_status(self, sid: str) -> str:
        return str(self._client.calls(sid).fetch().status or "")

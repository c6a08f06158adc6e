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
from providers.http import CarrierApiError, json_body, send

logger = logging.getLogger(__name__)

DEFAULT_API_BASE_URL = "https://api.twilio.com"


def config_value(settings: Mapping[str, Any], key: str) -> str:
    """A `twilio.*` setting."""
    return block_value(settings, "twilio", key)


class TwilioApiError(CarrierApiError):
    """A non-2xx answer from the Twilio API; `status` is the HTTP status."""

    carrier = "Twilio"
    # 20404 "The requested resource was not found": the call record is gone.
    gone_codes = frozenset({"20404"})

    @classmethod
    def error_fields(cls, response: httpx.Response) -> tuple[str | None, str]:
        """Twilio error bodies are {"code": 21220, "message": "…", "status": 400, …}."""
        body = json_body(response)
        if not isinstance(body, dict):
            return super().error_fields(response)
        # RFC 9457 problem bodies (newer Twilio APIs) say "detail"/"title", not "message".
        message = body.get("message") or body.get("detail") or body.get("title")
        code = body.get("code")
        return (str(code) if code is not None else None), str(message or response.reason_phrase)


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
        response = send(
            self._http,
            method,
            self._rewrite(uri),
            error=TwilioApiError,
            params=_pairs(params) or None,
            content=_body(data, headers),
            headers=headers,
            auth=auth,
            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            follow_redirects=allow_redirects,
        )
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

"""Plivo Voice API v1 (REST, JSON, HTTP Basic) over httpx: the Call, Request and DTMF resources.

Plain HTTP rather than the official SDK's RestClient: plivo 4.63 sends through its own
`requests` session, with a built-in retry-and-fallback loop for voice requests and no
transport seam. It could neither carry our httpx client (tests fake carriers at the HTTP
boundary with httpx.MockTransport) nor keep "one request, never retried". The SDK still
serves for XML building and as the oracle for signatures. Paths end in "/" as the SDK
writes them (docs/carriers.md, "Plivo: REST calls").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from providers.common import block_value
from providers.http import ERROR_TEXT_CHARS, CarrierApiError, error_text, json_object, send

DEFAULT_API_BASE_URL = "https://api.plivo.com"


def config_value(settings: Mapping[str, Any], key: str) -> str:
    """A `plivo.*` setting."""
    return block_value(settings, "plivo", key)


class PlivoApiError(CarrierApiError):
    """A non-2xx answer from the Plivo API; `status` is the HTTP status (and provider_code)."""

    carrier = "Plivo"
    status_as_code = True

    @classmethod
    def error_fields(cls, response: httpx.Response) -> tuple[str | None, str]:
        """Plivo error bodies are {"api_id": "…", "error": "…"}; others are cut short."""
        error = json_object(response).get("error")
        if isinstance(error, str | dict) and error:
            return None, str(error)[:ERROR_TEXT_CHARS]
        return None, error_text(response)


class PlivoRest:
    """One method per Voice API request the adapter makes; each is one request, no retries."""

    def __init__(
        self, *, auth_id: str, auth_token: str, http: httpx.Client, api_base_url: str | None = None
    ) -> None:
        base = (api_base_url or DEFAULT_API_BASE_URL).rstrip("/")
        self._account = f"{base}/v1/Account/{quote(auth_id, safe='')}"
        self._auth = (auth_id, auth_token)
        self._http = http

    def create_call(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        return self._request("POST", "Call/", json=dict(fields))

    def transfer_aleg(self, call_uuid: str, *, url: str) -> None:
        """Make Plivo fetch `url` and run its XML on the A leg, interrupting what plays now."""
        self._request(
            "POST",
            f"Call/{_segment(call_uuid)}/",
            json={"legs": "aleg", "aleg_url": url, "aleg_method": "POST"},
        )

    def stop_streams(self, call_uuid: str) -> None:
        """Stop every audio stream of the call (SDK `delete_all_streams`)."""
        self._request("DELETE", f"Call/{_segment(call_uuid)}/Stream/")

    def send_digits(self, call_uuid: str, digits: str) -> None:
        self._request(
            "POST", f"Call/{_segment(call_uuid)}/DTMF/", json={"digits": digits, "leg": "aleg"}
        )

    def hang_up_call(self, call_uuid: str) -> None:
        self._request("DELETE", f"Call/{_segment(call_uuid)}/")

    def cancel_request(self, request_uuid: str) -> None:
        """End a call that was requested but not answered yet (it has no CallUUID)."""
        self._request("DELETE", f"Request/{_segment(request_uuid)}/")

    def live_call(self, call_uuid: str) -> dict[str, Any]:
        # Plain GET /Call/{uuid}/ returns the record of a *completed* call; a call still in
        # progress answers only with ?status=live (SDK live_calls.get), queued ones ?status=queued.
        return self._request("GET", f"Call/{_segment(call_uuid)}/", params={"status": "live"})

    def queued_call(self, request_uuid: str) -> dict[str, Any]:
        return self._request("GET", f"Call/{_segment(request_uuid)}/", params={"status": "queued"})

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        response = send(
            self._http,
            method,
            f"{self._account}/{path}",
            error=PlivoApiError,
            json=json,
            params=params,
            auth=self._auth,
            headers={"Accept": "application/json"},
        )
        return json_object(response)


def _segment(value: str) -> str:
    """An id as one path segment: a stray "/" or "?" cannot reach another resource."""
    return quote(value, safe="")

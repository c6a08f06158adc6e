"""Telnyx Call Control v2 REST (`/v2/calls`, `/v2/calls/{id}/actions/*`) over httpx.

One request per method, no retries (the services own retry policy). Bearer-key auth and
JSON bodies as in the telnyx SDK (`telnyx/resources/calls/actions.py`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from providers.common import block_value
from providers.errors import ProviderError
from providers.http import CarrierApiError, json_body, json_object, send

DEFAULT_API_BASE_URL = "https://api.telnyx.com"
# "Call has already ended": commands on a finished leg answer 422 with this code
# (docs/carriers.md, "Telnyx: commands"; seen in pipecat's Telnyx serializer).
CALL_ENDED_CODE = "90018"
# RFC 3986 path-segment characters kept as-is; call_control_ids look like `v3:…`.
_SEGMENT_SAFE = ":@!$&'()*+,;="


def config_value(settings: Mapping[str, Any], key: str) -> str:
    """A `telnyx.*` setting."""
    return block_value(settings, "telnyx", key)


class TelnyxApiError(CarrierApiError):
    """A non-2xx answer from the Telnyx API; `status` is the HTTP status."""

    carrier = "Telnyx"
    gone_codes = frozenset({CALL_ENDED_CODE})

    @classmethod
    def error_fields(cls, response: httpx.Response) -> tuple[str | None, str]:
        """Telnyx error bodies are {"errors": [{"code": "90018", "title": "…", "detail": "…"}]}."""
        body = json_body(response)
        errors = body.get("errors") if isinstance(body, dict) else None
        first = errors[0] if isinstance(errors, list) and errors else None
        if not isinstance(first, dict):
            return super().error_fields(response)
        code = first.get("code")
        detail = first.get("detail") or first.get("title") or response.reason_phrase
        return (str(code) if code is not None else None), str(detail)


class TelnyxRest:
    """The Call Control requests the adapter needs; each returns the response's `data`."""

    def __init__(
        self, *, api_key: str, http: httpx.Client, api_base_url: str | None = None
    ) -> None:
        self._http = http
        self._base = (api_base_url or DEFAULT_API_BASE_URL).rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}

    def dial(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._request("POST", "/v2/calls", {**body, "command_id": new_command_id()})

    def command(
        self,
        call_control_id: str,
        action: str,
        body: Mapping[str, Any],
        *,
        command_id: str | None = None,
    ) -> None:
        """POST …/actions/<action>; Telnyx drops a second command with the same `command_id`.

        A command sent again after a crash passes the same id (CallTarget.command_key), so
        the carrier runs it once; without one, each call gets a fresh id.
        """
        path = f"{_call_path(call_control_id)}/actions/{action}"
        self._request("POST", path, {**body, "command_id": command_id or new_command_id()})

    def get_call(self, call_control_id: str) -> dict[str, Any]:
        return self._request("GET", _call_path(call_control_id), None)

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None) -> dict[str, Any]:
        response = send(
            self._http,
            method,
            self._base + path,
            error=TelnyxApiError,
            json=body,
            headers=self._headers,
        )
        data = json_object(response).get("data")
        return data if isinstance(data, dict) else {}


def new_command_id() -> str:
    return str(uuid.uuid4())


def _call_path(call_control_id: str) -> str:
    if not call_control_id or call_control_id in (".", ".."):
        raise ProviderError("Call not connected (no Telnyx call_control_id)")
    return f"/v2/calls/{quote(call_control_id, safe=_SEGMENT_SAFE)}"

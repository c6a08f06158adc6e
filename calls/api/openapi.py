"""How the API is described, so that what /api/schema/ says is what it does.

docs/api-contract.md.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema

from calls.api.contract import error_responses


class ApiAutoSchema(AutoSchema):
    """Adds the error answers every operation of a kind gives, so no view can forget them:
    401 wherever a token is required, 404 wherever the path names a call, 400 wherever a
    body or query parameters are parsed (a view whose bad input is answered otherwise sets
    `bad_request_status = False`)."""

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        responses = operation["responses"]
        statuses: list[int] = []
        if operation.get("security"):
            statuses.append(401)
        parses_input = "requestBody" in operation or any(
            p.get("in") == "query" for p in operation.get("parameters", [])
        )
        if parses_input and getattr(self.view, "bad_request_status", True):
            statuses.append(400)
        if "{call_id}" in self.path:
            statuses.append(404)
        for status, response in error_responses(*statuses).items():
            if str(status) not in responses:
                responses[str(status)] = self._get_response_for_code(response, str(status))
        return operation

"""One error shape for the REST API: {"error": "<message>", "code": "<CODE>"}."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from calls.exceptions import CallError


def _first_message(detail: Any) -> str:
    if isinstance(detail, dict):
        key, value = next(iter(detail.items()))
        text = _first_message(value)
        return text if key == "non_field_errors" else f"{key}: {text}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, CallError):
        return Response({"error": exc.message, "code": exc.code}, status=exc.http_status)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a real 500 that reaches the logs
    if isinstance(exc, exceptions.ValidationError):
        response.data = {
            "error": _first_message(exc.detail),
            "code": "INVALID_REQUEST",
            "details": exc.detail,
        }
    elif isinstance(exc, exceptions.APIException):
        code = (
            "UNAUTHORIZED"
            if response.status_code == status.HTTP_401_UNAUTHORIZED
            else (exc.default_code.upper())
        )
        response.data = {"error": _first_message(exc.detail), "code": code}
    return response

"""POST /api/rpc: JSON-RPC 2.0 over the `voicecall.*` methods."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import IO, Any, cast

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from calls.api.method_schemas import rpc_request_schema, rpc_response_schema
from calls.api.methods import MethodNotFound, call_method
from calls.exceptions import CallError, InvalidRequest

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, SERVER_ERROR = (
    -32700,
    -32600,
    -32601,
    -32602,
    -32000,
)


class RawJsonParser(BaseParser):
    """Hand the raw body to the view: JSON-RPC must answer bad JSON with -32700, not a 400."""

    media_type = "*/*"

    # DRF makes whatever a parser returns request.data; its stub only admits mappings.
    def parse(  # type: ignore[override]
        self,
        stream: IO[bytes] | None,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        return stream.read() if stream is not None else b""


def _error(request_id: Any, code: int, message: str, data_code: str) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "error": {"code": code, "message": message, "data": {"code": data_code}},
    }


def _valid_id(request_id: Any) -> bool:
    """JSON-RPC ids are a string, a number or null; an object or a boolean is not echoed."""
    if isinstance(request_id, bool):
        return False
    return request_id is None or isinstance(request_id, (str, int, float))


def rpc_dispatch(payload: Any) -> dict[str, Any] | None:
    """One JSON-RPC request object -> its response object (None for a notification)."""
    if (
        not isinstance(payload, dict)
        or payload.get("jsonrpc") != "2.0"
        or not isinstance(payload.get("method"), str)
        or not _valid_id(payload.get("id"))
    ):
        return _error(None, INVALID_REQUEST, "Invalid Request", "INVALID_REQUEST")
    request_id = payload.get("id")
    try:
        result = call_method(payload["method"], payload.get("params") or {})
    except MethodNotFound as exc:
        response = _error(request_id, METHOD_NOT_FOUND, exc.message, exc.code)
    except InvalidRequest as exc:
        response = _error(request_id, INVALID_PARAMS, exc.message, exc.code)
    except CallError as exc:
        response = _error(request_id, SERVER_ERROR, exc.message, exc.code)
    else:
        response = {"jsonrpc": "2.0", "id": request_id, "result": result}
    return response if "id" in payload else None


class RpcApi(APIView):
    parser_classes = [RawJsonParser]
    # A body that is not JSON-RPC is answered 200 with a JSON-RPC error, as JSON-RPC over
    # HTTP usually is (-32700 for no body or bad JSON), never 400.
    bad_request_status = False

    @extend_schema(
        request={"application/json": rpc_request_schema()},
        responses={
            200: OpenApiResponse(
                rpc_response_schema(),
                description="A result or a JSON-RPC error (an array for a batch); a "
                "missing or unparsable body is error -32700 Parse error",
            ),
            204: OpenApiResponse(description="Only notifications (requests without id)"),
        },
        examples=[
            OpenApiExample(
                "initiate",
                request_only=True,
                value={
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "voicecall.initiate",
                    "params": {"to": "+15555550123", "message": "Hello", "mode": "notify"},
                },
            )
        ],
        description="JSON-RPC 2.0; errors carry the plugin's message and data.code "
        "INVALID_REQUEST or UNAVAILABLE.",
    )
    def post(self, request: Request) -> Response:
        try:
            # RawJsonParser makes request.data the raw body; with no body DRF leaves an
            # empty mapping there instead, hence the `or`.
            payload = json.loads(cast(bytes, request.data or b""))
        except (ValueError, UnicodeDecodeError):
            return Response(_error(None, PARSE_ERROR, "Parse error", "INVALID_REQUEST"))
        if isinstance(payload, list):
            if not payload:
                return Response(_error(None, INVALID_REQUEST, "Invalid Request", "INVALID_REQUEST"))
            replies = [r for r in map(rpc_dispatch, payload) if r is not None]
            return Response(replies) if replies else Response(status=204)
        reply = rpc_dispatch(payload)
        return Response(reply) if reply is not None else Response(status=204)

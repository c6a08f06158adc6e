"""Paging of the REST lists: bad `limit`/`offset` are refused, not replaced by defaults.

Its own module: DRF imports the pagination class while it builds its generic views, before
drf-spectacular (calls/api/openapi.py) can be imported.
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

# Bounds said in the schema and enforced: an offset past what SQLite's 64-bit integers hold
# would otherwise reach the database and fail there (a 500).
LIMIT_RANGE = (1, 1000)
OFFSET_RANGE = (0, 10**9)


class StrictLimitOffsetPagination(LimitOffsetPagination):
    """`limit`/`offset` that are not whole numbers in range are refused (400), not quietly
    replaced by the defaults: `offset=null` is a client bug the client should hear about."""

    def get_limit(self, request: Request) -> int | None:
        return _whole(request, self.limit_query_param, LIMIT_RANGE, default=self.default_limit)

    def get_offset(self, request: Request) -> int:
        return _whole(request, self.offset_query_param, OFFSET_RANGE, default=0) or 0

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            low, high = LIMIT_RANGE if parameter["name"] == self.limit_query_param else OFFSET_RANGE
            parameter["schema"].update(minimum=low, maximum=high)
        return parameters


def _whole(
    request: Request, name: str, bounds: tuple[int, int], *, default: int | None
) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    low, high = bounds
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise exceptions.ValidationError({name: [f"must be a whole number from {low} to {high}"]})
    return int(raw)

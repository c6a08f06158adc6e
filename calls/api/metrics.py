"""GET /metrics: Prometheus exposition, with the API's bearer token unless
VOICECALL_METRICS_PUBLIC=1 (docs/operations.md, "Metrics")."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.authentication import BaseAuthentication
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from calls.metrics_scrape import metrics_render


class _ScraperNegotiation(BaseContentNegotiation):
    """The scraper's Accept header picks the exposition format (prometheus_client does);
    DRF's renderer only renders a refusal, as the API's JSON, whatever was asked. DRF's own
    negotiation would answer 406 to `Accept: text/plain`."""

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        return next(iter(parsers), None)

    def select_renderer(
        self,
        request: Request,
        renderers: Iterable[BaseRenderer],
        format_suffix: str | None = None,
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


@extend_schema(exclude=True)  # text for Prometheus, not part of the JSON API
class MetricsView(APIView):
    content_negotiation_class = _ScraperNegotiation

    def get_authenticators(self) -> list[BaseAuthentication]:
        return [] if settings.VOICECALL_METRICS_PUBLIC else super().get_authenticators()

    def get_permissions(self) -> Sequence[Any]:
        return [AllowAny()] if settings.VOICECALL_METRICS_PUBLIC else super().get_permissions()

    def get(self, request: Request) -> HttpResponse:
        body, content_type = metrics_render(accept=request.headers.get("Accept"))
        return HttpResponse(body, content_type=content_type)

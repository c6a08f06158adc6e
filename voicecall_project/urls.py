"""Root URLs: admin, API, probes, metrics, hold music; everything else goes to the webhook view,
which answers its own serve.path and 404s the rest (look-alikes are never verified)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView

from calls.admin_live import live_calls_view
from calls.api.docs import ApiDocsView
from calls.api.metrics import MetricsView
from calls.web import health, webhook_views

urlpatterns = [
    # Before the admin's own URLs, which would take calls/live/ for a model's page.
    path("admin/calls/live/", admin.site.admin_view(live_calls_view), name="calls-live"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", ApiDocsView.as_view(url_name="schema"), name="docs"),
    path("api/", include("calls.api.urls")),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", MetricsView.as_view(), name="metrics"),
    path("voice/hold-music", webhook_views.hold_music, name="hold-music"),
    re_path(r"^.*$", webhook_views.carrier_webhook, name="webhook"),
]

"""ASGI entry point: HTTP to Django, websockets to the media-stream routes."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voicecall_project.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from calls.db_threads import DatabaseWorkers  # noqa: E402
from calls.live.routing import live_urlpatterns  # noqa: E402
from calls.serving.startup import preflight  # noqa: E402
from calls.serving.static_files import StaticFiles  # noqa: E402
from calls.streams.routing import websocket_urlpatterns  # noqa: E402
from calls.web.webhook_views import served_http  # noqa: E402

# Carriers are not browsers: no OriginValidator or session auth on media streams;
# each stream authenticates with its per-call token (docs/security.md, "Media streams").
# The admin's live view is a browser's socket: its route alone has session auth and an
# Origin check (calls/live/routing.py).
# Whatever server imports this app, a bad config or unsafe skip mode stops it here.
preflight()

application = ProtocolTypeRouter(
    {
        # Admitted carrier webhooks and token API requests skip Django's middleware and
        # per-request thread: their database work runs on reused threads, a pool each
        # (docs/performance.md, "Webhook path" and "API path"). Static files sit behind
        # both, so neither passes through them.
        "http": served_http(
            StaticFiles(django_asgi_app),
            DatabaseWorkers(settings.VOICECALL_WEBHOOK_WORKERS),
            DatabaseWorkers(settings.VOICECALL_API_WORKERS, name="api"),
        ),
        "websocket": URLRouter([*live_urlpatterns, *websocket_urlpatterns]),
    }
)

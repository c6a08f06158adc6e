"""Liveness and readiness probes."""

from __future__ import annotations

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from calls.drain import draining
from calls.exceptions import ServiceDisabled
from calls.services.enabled import service_enabled


@csrf_exempt  # read-only; exempt so probes (and the bench baseline) may POST
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True, "service": "voicecall", "enabled": service_enabled()})


def readyz(request: HttpRequest) -> JsonResponse:
    if draining():
        # At once, without probing anything: a draining process takes no new calls or
        # streams, so the load balancer should send them elsewhere (docs/architecture.md,
        # "Graceful drain").
        response = JsonResponse({"ok": False, "draining": True, "checks": {}}, status=503)
        # Expected, not an error: Django would log every probe of the drain as one.
        response._has_been_logged = True  # type: ignore[attr-defined]
        return response
    if not service_enabled():  # takes no calls by config: no traffic (calls/services/enabled.py)
        error = {"ok": False, "enabled": False, "error": ServiceDisabled.MESSAGE, "checks": {}}
        return JsonResponse(error, status=503)
    checks = {"database": _check_database(), "channelLayer": _check_channel_layer()}
    if getattr(settings, "REDIS_URL", ""):
        checks["broker"] = _check_broker()
    ok = all(value == "ok" for value in checks.values())
    return JsonResponse({"ok": ok, "draining": False, "checks": checks}, status=200 if ok else 503)


def _check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        return f"error: {exc.__class__.__name__}"
    return "ok"


def _check_channel_layer() -> str:
    layer = get_channel_layer()
    if layer is None:
        return "error: not configured"
    try:
        async_to_sync(layer.group_send)("health.probe", {"type": "health.probe"})
    except Exception as exc:
        return f"error: {exc.__class__.__name__}"
    return "ok"


def _check_broker() -> str:
    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2).ping()
    except Exception as exc:
        return f"error: {exc.__class__.__name__}"
    return "ok"

"""Carrier webhook and hold-music views: parse the request, call one service, render."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from calls.config import get_config
from calls.runtime import get_provider
from calls.services.webhooks import webhook_process
from providers.base import Reply, WebhookRequest

MAX_BODY_BYTES = 64 * 1024

HOLD_MUSIC_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response>'
    '<Say voice="alice">All agents are currently busy. Please hold.</Say>'
    '<Play loop="0">https://s3.amazonaws.com/com.twilio.music.classical/BusyStrings.mp3</Play>'
    "</Response>"
)


def _render(reply: Reply) -> HttpResponse:
    return HttpResponse(reply.body, status=reply.status, content_type=reply.content_type)


def _path_matches(path: str, serve_path: str) -> bool:
    """Exact serve.path, one trailing slash tolerated (reference §6.4 step 2)."""
    return path == serve_path or path == serve_path.rstrip("/") + "/"


def _missing_signature(request: HttpRequest) -> bool:
    """Pre-auth gate: the carrier's signature headers must be there before the body is read."""
    if get_config().skip_signature_verification:
        return False
    groups = get_provider().signature_headers
    return bool(groups) and not any(
        all(request.headers.get(name) for name in group) for group in groups)


def _webhook_request(request: HttpRequest, body: bytes) -> WebhookRequest:
    return WebhookRequest(
        method=request.method or "POST",
        url=request.build_absolute_uri(),
        path=request.path,
        query={key: request.GET.getlist(key) for key in request.GET},
        headers={name.lower(): value for name, value in request.headers.items()},
        body=body,
        remote_addr=request.META.get("REMOTE_ADDR"),
    )


@csrf_exempt
def carrier_webhook(request: HttpRequest) -> HttpResponse:
    if not _path_matches(request.path, get_config().serve_path):
        return HttpResponse("Not Found", status=404, content_type="text/plain")
    if request.method != "POST":
        return HttpResponse("Method Not Allowed", status=405, content_type="text/plain")
    if _missing_signature(request):
        return HttpResponse("Unauthorized", status=401, content_type="text/plain")
    length = request.META.get("CONTENT_LENGTH") or "0"
    if not length.isdigit() or int(length) > MAX_BODY_BYTES:
        return HttpResponse("Payload Too Large", status=413, content_type="text/plain")
    body = request.body
    if len(body) > MAX_BODY_BYTES:
        return HttpResponse("Payload Too Large", status=413, content_type="text/plain")
    return _render(webhook_process(_webhook_request(request, body)))


@csrf_exempt
def hold_music(request: HttpRequest) -> HttpResponse:
    return HttpResponse(HOLD_MUSIC_TWIML, content_type="text/xml")

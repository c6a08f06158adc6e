"""Carrier webhook and hold-music views: parse the request, call one service, render."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from calls.carrier import get_provider
from calls.services.webhooks import webhook_process
from calls.web.gate import MAX_BODY_BYTES, is_webhook_path, missing_signature
from providers.base import Reply, WebhookRequest


def _render(reply: Reply) -> HttpResponse:
    return HttpResponse(reply.body, status=reply.status, content_type=reply.content_type)


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
    """The same gates as WebhookGate, for servers that bypass it (WSGI, the test client)."""
    if not is_webhook_path(request.path):
        return HttpResponse("Not Found", status=404, content_type="text/plain")
    if request.method != "POST":
        return HttpResponse("Method Not Allowed", status=405, content_type="text/plain")
    if missing_signature({k.lower(): v for k, v in request.headers.items()}):
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
    """The call-waiting queue's wait document, for carriers that have one (Twilio)."""
    reply = get_provider().hold_music()
    if reply is None:
        return HttpResponse("Not Found", status=404, content_type="text/plain")
    return _render(reply)

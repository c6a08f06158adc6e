"""Carrier webhook and hold-music views: parse the request, call one service, render.

The served webhook path is `WebhookEndpoint`: the ASGI gate hands it admitted requests and
it runs the same view without Django's middleware and per-request thread
(docs/performance.md, "Webhook path").
"""

from __future__ import annotations

import io
from typing import Any

from django.core.handlers.asgi import ASGIRequest
from django.core.handlers.exception import response_for_exception
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from calls import metrics
from calls.carrier import get_provider
from calls.config import get_config
from calls.db_threads import DatabaseWorkers
from calls.services.webhooks import webhook_process
from calls.web.api_endpoint import ApiEndpoint, ApiRouter
from calls.web.asgi_io import body_read, response_send
from calls.web.gate import (
    MAX_BODY_BYTES,
    App,
    Receive,
    Scope,
    Send,
    WebhookGate,
    is_webhook_path,
    missing_signature,
)
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
        return _refused(405, "Method Not Allowed")
    if missing_signature({k.lower(): v for k, v in request.headers.items()}):
        return _refused(401, "Unauthorized")
    length = request.META.get("CONTENT_LENGTH") or "0"
    if not length.isdigit() or int(length) > MAX_BODY_BYTES:
        return _refused(413, "Payload Too Large")
    body = request.body
    if len(body) > MAX_BODY_BYTES:
        return _refused(413, "Payload Too Large")
    return _render(webhook_process(_webhook_request(request, body)))


def _refused(status: int, text: str) -> HttpResponse:
    """A gate refusal, counted as WebhookGate counts its own."""
    metrics.webhook_refused(provider=get_config().provider, status=status)
    return HttpResponse(text, status=status, content_type="text/plain")


def served_http(
    django_app: App, workers: DatabaseWorkers, api_workers: DatabaseWorkers | None = None
) -> ApiRouter:
    """HTTP as served (voicecall_project/asgi.py): token API requests to ApiEndpoint, the
    gate in front of Django, admitted webhooks to WebhookEndpoint. Tests drive this same
    composition."""
    return ApiRouter(
        WebhookGate(django_app, handler=WebhookEndpoint(workers)),
        ApiEndpoint(api_workers or workers),
    )


class WebhookEndpoint:
    """The webhook path as served: an ASGI app behind WebhookGate, which has already
    checked method, signature headers, size and the peer's in-flight count, and read the body.

    Everything a carrier webhook needs from Django is kept: the request is Django's own
    ASGIRequest (ALLOWED_HOSTS, URL rebuilding), the view is `carrier_webhook` with its own
    gates, and an exception becomes the response Django would give. What is skipped is what a
    carrier request has no use for — sessions, auth, messages, CSRF (the view is exempt), URL
    resolving — and the thread Django starts per request: the synchronous part runs in one
    hop on a reused worker (calls/db_threads.py).
    """

    def __init__(self, workers: DatabaseWorkers) -> None:
        self.workers = workers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await body_read(receive)  # the gate has bounded it
        if body is None:
            return
        response = await self.workers.run(lambda: _respond(scope, body))
        await response_send(send, response)


def _respond(scope: dict[str, Any], body: bytes) -> HttpResponse:
    # response.close() is not called: it would fire request_finished, which closes the
    # worker's connection; a plain HttpResponse holds nothing else to close.
    request = ASGIRequest(scope, io.BytesIO(body))
    try:
        response = carrier_webhook(request)
    except Exception as exc:
        response = response_for_exception(request, exc)
    return response


@csrf_exempt
def hold_music(request: HttpRequest) -> HttpResponse:
    """The call-waiting queue's wait document, for carriers that have one (Twilio)."""
    reply = get_provider().hold_music()
    if reply is None:
        return HttpResponse("Not Found", status=404, content_type="text/plain")
    return _render(reply)

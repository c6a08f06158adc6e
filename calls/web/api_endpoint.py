"""The token API (`/api/…` views of `calls/api/urls.py`) as served: no middleware, reused threads.

docs/performance.md, "API path". Every API request authenticates with a bearer token
(calls/api/auth.py) and sends no cookies, so Django's middleware has nothing to do for it
but costs a dozen thread hops, and Django's ASGI handler starts a thread (and on it a new
database connection) per request: 2–3 ms before a `voicecall.speak` reaches its view, as
much as the rest of the way to the first audio frame. `ApiEndpoint` runs the same view in
one hop on a reused worker (calls/db_threads.py), the way carrier webhooks are served.

Kept: Django's own request object (the host checked against ALLOWED_HOSTS, URL rebuilding),
URL resolving, DRF's authentication, permissions and error handling in the view, the
response Django would give for an exception, the two headers the middleware adds. Skipped:
sessions, auth from cookies, messages, CSRF (DRF's API views are exempt) and
CommonMiddleware's slash redirect (the API's URLs are exact). The browsable docs and schema
(`/api/docs/`, `/api/schema/`), the admin and everything else keep the full stack.

A worker pool of its own: `continue` and `speak` with `wait` hold a thread while they wait
for the caller, and must not hold up carrier webhooks.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.core.handlers.exception import response_for_exception
from django.http import HttpResponse, HttpResponseBase
from django.urls import Resolver404, ResolverMatch, resolve

from calls.db_threads import DatabaseWorkers
from calls.services.stream_commands import stream_loop_adopt
from calls.web.asgi_io import App, BodyTooLarge, Receive, Scope, Send, body_read, response_send

# The URL namespace of calls/api/urls.py: only its views take this path.
API_NAMESPACE = "api"


def api_match(scope: Scope) -> ResolverMatch | None:
    """The API view an HTTP request is for, or None (then the full stack serves it)."""
    if scope["type"] != "http" or not scope["path"].startswith("/api/"):
        return None
    try:
        match = resolve(scope["path"])
    except Resolver404:
        return None
    return match if match.namespace == API_NAMESPACE else None


class ApiRouter:
    """API requests to `api`, everything else to `app` (the webhook gate, then Django)."""

    def __init__(self, app: App, api: App) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The server's loop, for layer work from the API's threads even before a stream
        # attached: one reply inbox per process instead of one per `speak`
        # (calls/services/stream_commands.py).
        stream_loop_adopt(asyncio.get_running_loop())
        target = self.api if api_match(scope) is not None else self.app
        await target(scope, receive, send)


class ApiEndpoint:
    def __init__(self, workers: DatabaseWorkers) -> None:
        self.workers = workers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            # Django's own limit on a body read into memory, answered before more is read.
            body = await body_read(receive, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        except BodyTooLarge:
            await response_send(send, HttpResponse("Payload Too Large", status=413))
            return
        if body is None:
            return
        response = await self.workers.run(lambda: _respond(scope, body))
        await response_send(send, response)


def _respond(scope: dict[str, Any], body: bytes) -> HttpResponseBase:
    # response.close() is not called: it would fire request_finished, which closes the
    # worker's connection; the API's responses hold nothing else to close.
    request = ASGIRequest(scope, io.BytesIO(body))
    try:
        # ALLOWED_HOSTS: checked by CommonMiddleware on the full stack (DisallowedHost, 400).
        request.get_host()
        match = resolve(request.path_info)
        request.resolver_match = match
        response = match.func(request, *match.args, **match.kwargs)
        render = getattr(response, "render", None)
        if callable(render):  # DRF's Response is a template response: rendered here
            response = render()
    except Exception as exc:
        response = response_for_exception(request, exc)
    return response

"""ASGI plumbing of the served HTTP paths: the types, reading a bounded request body, and
sending a Django response for the fast paths (carrier webhooks, the API) that skip Django's
handler and middleware (docs/performance.md, "Webhook path")."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from django.http import HttpResponse, HttpResponseBase

Scope = dict[str, Any]
# Mapping, as Django's ASGIHandler types its receive/send; these paths only read messages.
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

# What SecurityMiddleware and XFrameOptionsMiddleware add to every response; the fast
# paths skip the middleware, not these.
MIDDLEWARE_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
)


class BodyTooLarge(Exception):
    pass


async def body_read(receive: Receive, limit: int | None = None) -> bytes | None:
    """The whole request body; None when the client went away first; BodyTooLarge past
    `limit` bytes, before more is read."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def response_send(send: Send, response: HttpResponseBase) -> None:
    """A complete (non-streaming) Django response over ASGI, with the middleware's headers."""
    content = response.content if isinstance(response, HttpResponse) else b""
    headers = [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in response.items()
    ]
    headers.append((b"content-length", str(len(content)).encode()))
    headers.extend(MIDDLEWARE_HEADERS)
    for cookie in response.cookies.values():
        headers.append((b"set-cookie", cookie.output(header="").strip().encode("latin-1")))
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": content})

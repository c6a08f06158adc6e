"""ASGI gate in front of Django for the carrier webhook path.

docs/plugin-behaviour.md, "Webhook pipeline", steps 2–3; docs/security.md, "Webhooks".

It runs before Django reads the body, which is the point: a request without the
carrier's signature headers gets 401 without its body being read, an oversized body
413, a slow one 408, and one peer cannot hold more than MAX_IN_FLIGHT requests.
Admitted webhook requests go to `handler` (the served app passes WebhookEndpoint, which
skips Django's middleware: docs/performance.md, "Webhook path"); everything else to `app`.
"""

from __future__ import annotations

import asyncio

from calls import metrics
from calls.admission import Admission
from calls.carrier import get_provider
from calls.config import get_config
from calls.web.asgi_io import App, BodyTooLarge, Message, Receive, Scope, Send, body_read

MAX_BODY_BYTES = 64 * 1024
BODY_TIMEOUT_SECONDS = 5.0
MAX_IN_FLIGHT = 8


class WebhookGate:
    def __init__(
        self,
        app: App,
        *,
        handler: App | None = None,
        body_timeout: float = BODY_TIMEOUT_SECONDS,
    ) -> None:
        self.app = app
        self.handler = handler or app
        self.body_timeout = body_timeout
        self.in_flight = Admission()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_webhook_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await _refuse(send, 405, b"Method Not Allowed")
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if missing_signature(headers):
            await _refuse(send, 401, b"Unauthorized")
            return
        if _declared_length(headers) > MAX_BODY_BYTES:
            await _refuse(send, 413, b"Payload Too Large")
            return
        peer = (scope.get("client") or ("unknown", 0))[0]
        slot = self.in_flight.take(peer, per_peer=MAX_IN_FLIGHT)
        if slot is None:
            await _refuse(send, 429, b"Too Many Requests")
            return
        release = slot.release

        async def send_and_release(message: Message) -> None:
            await send(message)
            # The request stops counting once its response is out: Django's cleanup after
            # that (close_old_connections in a thread) must not hold the peer's slot.
            if message["type"] == "http.response.body" and not message.get("more_body"):
                release()

        try:
            await self._read_then_forward(scope, receive, send_and_release)
        finally:
            release()

    async def _read_then_forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await asyncio.wait_for(body_read(receive, MAX_BODY_BYTES), self.body_timeout)
        except TimeoutError:
            await _refuse(send, 408, b"Request Timeout")
            return
        except BodyTooLarge:
            await _refuse(send, 413, b"Payload Too Large")
            return
        if body is None:  # the client went away
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.handler(scope, replay, send)


async def _refuse(send: Send, status: int, body: bytes) -> None:
    """Refuse the request, counted in voicecall_webhooks_total under the configured
    carrier, so an operator sees refusals rise (docs/operations.md, "Metrics")."""
    metrics.webhook_refused(provider=get_config().provider, status=status)
    await _respond(send, status, body)


def is_webhook_path(path: str) -> bool:
    serve_path = get_config().serve_path
    return path == serve_path or path == serve_path.rstrip("/") + "/"


def missing_signature(headers: dict[str, str]) -> bool:
    if get_config().skip_signature_verification or not get_config().enabled:
        return False  # disabled: the webhook service answers 503 (calls/services/enabled.py)
    groups = get_provider().signature_headers
    return bool(groups) and not any(all(headers.get(name) for name in group) for group in groups)


def _declared_length(headers: dict[str, str]) -> int:
    value = headers.get("content-length", "0").strip()
    return int(value) if value.isdigit() else 0


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

"""The HTTP stack as `voicecall serve` serves it, driven like Django's test client.

`ServedClient` takes the test client's arguments (META-style `HTTP_*` headers,
`REMOTE_ADDR`, `secure`) and sends the request through `served_http` — the webhook gate,
then `WebhookEndpoint` for the webhook path (Django's middleware skipped) or Django's ASGI
handler for any other path — so a carrier test exercises the path a carrier reaches, not
only the view a WSGI server would call. The endpoint's database work runs on the test's
own thread (`DatabaseWorkers(0)`), inside the test's transaction; the reused worker threads
themselves are covered by tests/carriers/test_served_path.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlencode

from asgiref.sync import async_to_sync
from django.core.asgi import get_asgi_application
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from calls.db_threads import DatabaseWorkers
from calls.web.webhook_views import served_http


class ServedResponse:
    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], content: bytes) -> None:
        self.status_code = status
        self.headers = {name.decode("latin-1").lower(): v.decode("latin-1") for name, v in headers}
        self.content = content

    def __getitem__(self, name: str) -> str:
        return self.headers[name.lower()]

    def json(self) -> Any:
        return json.loads(self.content)


class ServedClient:
    def __init__(self, workers: DatabaseWorkers | None = None) -> None:
        self.app = served_http(get_asgi_application(), workers or DatabaseWorkers(0))

    def get(self, path: str, data: dict[str, str] | None = None, **extra: Any) -> ServedResponse:
        if data:
            path += ("&" if "?" in path else "?") + urlencode(data)
        return self.generic("GET", path, **extra)

    def post(
        self,
        path: str,
        data: bytes | str = b"",
        content_type: str = "application/octet-stream",
        **extra: Any,
    ) -> ServedResponse:
        return self.generic("POST", path, data, content_type, **extra)

    def put(self, path: str, **extra: Any) -> ServedResponse:
        return self.generic("PUT", path, **extra)

    def patch(self, path: str, **extra: Any) -> ServedResponse:
        return self.generic("PATCH", path, **extra)

    def delete(self, path: str, **extra: Any) -> ServedResponse:
        return self.generic("DELETE", path, **extra)

    def head(self, path: str, **extra: Any) -> ServedResponse:
        return self.generic("HEAD", path, **extra)

    def options(self, path: str, **extra: Any) -> ServedResponse:
        return self.generic("OPTIONS", path, **extra)

    def generic(
        self,
        method: str,
        path: str,
        data: bytes | str = b"",
        content_type: str = "application/octet-stream",
        secure: bool = False,
        **extra: Any,
    ) -> ServedResponse:
        body = data.encode() if isinstance(data, str) else data
        path, _, query = path.partition("?")
        headers = [(b"content-length", str(len(body)).encode())]
        if body or method == "POST":
            headers.append((b"content-type", content_type.encode("latin-1")))
        for key, value in extra.items():
            if key.startswith("HTTP_"):
                name = key[5:].lower().replace("_", "-")
                headers.append((name.encode("latin-1"), str(value).encode("latin-1")))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method.upper(),
            "scheme": "https" if secure else "http",
            "path": unquote(path),
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": headers,
            "client": (extra.get("REMOTE_ADDR", "127.0.0.1"), 50000),
            # What Django's test client puts in SERVER_NAME/PORT when no Host is sent.
            "server": ("testserver", 443 if secure else 80),
        }
        with _no_connection_closing():
            return async_to_sync(self._request)(scope, body)

    async def _request(self, scope: dict[str, Any], body: bytes) -> ServedResponse:
        sent: list[dict[str, Any]] = []
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop(0)
            # The client stays connected: Django's handler listens for a disconnect while
            # the view runs and would cancel it.
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            sent.append(dict(message))

        await self.app(scope, receive, send)
        start = next(m for m in sent if m["type"] == "http.response.start")
        content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return ServedResponse(start["status"], start.get("headers", []), content)


@contextmanager
def _no_connection_closing() -> Iterator[None]:
    """As Django's test client does: a request must not close the test's connection."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)

"""The live view's websocket route, with what a browser socket needs and a carrier's does not.

The admin's session authenticates it (AuthMiddlewareStack), and only pages of this site may
open it: the Origin must be an allowed host and the host the socket is opened on, so a page
elsewhere cannot ride a signed-in operator's cookie. Media streams stay token-authenticated
without a session (voicecall_project/asgi.py).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator, WebsocketDenier
from django.urls import re_path

from calls.live.consumer import LiveCallsConsumer

LIVE_PATH = "/admin/live/"


class SameOriginValidator:
    """Refuses a socket whose Origin is not the host it was opened on (Django's CSRF rule
    for forms: with ALLOWED_HOSTS at its default `*` the allowed-hosts check passes all)."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        headers = dict(scope.get("headers") or [])
        origin = urlsplit(headers.get(b"origin", b"").decode("latin1")).netloc
        host = headers.get(b"host", b"").decode("latin1")
        if origin and origin == host:
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)


live_urlpatterns: list[Any] = [
    # Channels routes ASGI apps through Django's URL patterns; django-stubs types only views.
    re_path(
        "^" + LIVE_PATH.lstrip("/") + "$",
        AllowedHostsOriginValidator(  # type: ignore[arg-type]
            SameOriginValidator(AuthMiddlewareStack(LiveCallsConsumer.as_asgi()))
        ),
    )
]

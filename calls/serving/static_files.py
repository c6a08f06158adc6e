"""Static files (the admin's CSS, Swagger UI) under any ASGI server: WhiteNoise.

docs/operations.md, "Static files". `voicecall serve` collects them into STATIC_ROOT at
start-up (`static_files_collect`); another ASGI server needs `manage.py collectstatic` first.
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterable
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from asgiref.wsgi import WsgiToAsgi
from django.conf import settings
from django.core.management import call_command
from whitenoise import WhiteNoise

from calls.web.gate import App, Receive, Scope, Send

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def static_files_collect() -> None:
    """Copy every app's static files into STATIC_ROOT; unchanged files are skipped.

    Under a file lock: several `serve` processes sharing a data dir start at once, and two
    collectstatic runs replacing the same file race (one deletes what the other copies).
    """
    root = settings.STATIC_ROOT
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".collect.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        call_command("collectstatic", interactive=False, verbosity=0)


def _not_found(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"Not Found"]


class StaticFiles:
    """ASGI: requests under STATIC_URL are answered by WhiteNoise, the rest go to `app`.

    Why an ASGI wrapper and not WhiteNoiseMiddleware: the middleware is synchronous only,
    so in Django's async stack it would add two thread hops to every API and RPC request
    (docs/performance.md, "Middleware hops"). Here a static request costs one hop
    (WhiteNoise is a WSGI app, run by asgiref's adapter) and any other request a prefix
    check. Carrier webhooks never get here: the webhook gate in front of it hands them to
    their own endpoint first (voicecall_project/asgi.py).
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self.prefix = "/" + settings.STATIC_URL.strip("/") + "/"
        # WhiteNoise indexes STATIC_ROOT here, once: collect before building the app.
        whitenoise = WhiteNoise(_not_found, root=settings.STATIC_ROOT, prefix=self.prefix)
        self.static = WsgiToAsgi(whitenoise)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefix):
            # A thread of its own, as Django gives each request: outside a context the
            # adapter's thread-sensitive hop would queue behind the process's one shared
            # thread (and the database work other code runs there).
            async with ThreadSensitiveContext():
                await self.static(scope, receive, send)
            return
        await self.app(scope, receive, send)

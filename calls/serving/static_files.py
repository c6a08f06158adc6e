"""Static files (the admin's CSS, Swagger UI) under any ASGI server: WhiteNoise.

docs/operations.md, "Static files". `voicecall serve` collects them into STATIC_ROOT at
start-up (`static_files_collect`); another ASGI server needs `manage.py collectstatic` first.
"""

from __future__ import annotations

import asyncio
import fcntl

from django.conf import settings
from django.core.management import call_command
from whitenoise import WhiteNoise

from calls.web.gate import App, Receive, Scope, Send

# Bytes read per hop off the event loop: the Swagger UI bundle (1.5 MB) takes six.
_BLOCK = 256 * 1024


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


class StaticFiles:
    """ASGI: requests under STATIC_URL are answered from WhiteNoise's index, the rest go to
    `app`.

    Why an ASGI wrapper and not WhiteNoiseMiddleware: the middleware is synchronous only,
    so in Django's async stack it would add two thread hops to every admin and docs request
    (docs/performance.md, "Middleware hops"); here any other request costs a prefix check.
    Carrier webhooks and token API requests never get here: the routers in front hand them
    to their own endpoints first (voicecall_project/asgi.py).

    WhiteNoise decides the response (content type, caching headers, 304, ranges, 405) as
    its own middleware does, from `files` and `StaticFile.get_response`; only the sending
    is ours, with the file read off the event loop. Not WhiteNoise's WSGI app behind
    asgiref's WsgiToAsgi: under uvicorn, a request that followed a static file on the same
    keep-alive connection then failed with "CurrentThreadExecutor already quit or is
    broken" (the adapter sends from its worker thread through async_to_sync).
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self.prefix = "/" + settings.STATIC_URL.strip("/") + "/"
        # WhiteNoise indexes STATIC_ROOT here, once: collect before building the app.
        self.whitenoise = WhiteNoise(None, root=settings.STATIC_ROOT, prefix=self.prefix)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefix):
            await self._serve(scope, send)
            return
        await self.app(scope, receive, send)

    async def _serve(self, scope: Scope, send: Send) -> None:
        static_file = self.whitenoise.files.get(scope["path"])
        if static_file is None:
            await _send(send, 404, [(b"content-type", b"text/plain")], b"Not Found")
            return
        # WhiteNoise reads request headers the WSGI way (HTTP_IF_NONE_MATCH, HTTP_RANGE, …).
        environ = {
            "HTTP_" + name.decode("latin-1").upper().replace("-", "_"): value.decode("latin-1")
            for name, value in scope["headers"]
        }
        response = static_file.get_response(scope["method"], environ)
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        if response.file is None:
            await _send(send, int(response.status), headers, b"")
            return
        try:
            await send(
                {"type": "http.response.start", "status": int(response.status), "headers": headers}
            )
            while block := await asyncio.to_thread(response.file.read, _BLOCK):
                await send({"type": "http.response.body", "body": block, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            response.file.close()


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

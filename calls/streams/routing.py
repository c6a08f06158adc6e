"""Websocket routes: carrier media streams at streaming.streamPath and realtime.streamPath."""

from __future__ import annotations

import re
from typing import Any

from django.urls import re_path

from calls.config import get_config
from calls.streams.consumer import MediaStreamConsumer


def _stream_paths() -> list[str]:
    cfg = get_config()
    paths = [cfg.stream_path, cfg.realtime.stream_path or ""]
    return [path for path in dict.fromkeys(paths) if path]


websocket_urlpatterns: list[Any] = [
    # Channels routes ASGI apps through Django's URL patterns; django-stubs types only views.
    re_path("^" + re.escape(path.lstrip("/")) + "$", MediaStreamConsumer.as_asgi())  # type: ignore[arg-type]
    for path in _stream_paths()
]

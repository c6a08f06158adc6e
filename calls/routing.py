"""Websocket routes: the carrier media stream at streaming.streamPath (exact path)."""
from __future__ import annotations

import re
from typing import Any

from django.urls import re_path

from calls.config import get_config
from calls.consumers import MediaStreamConsumer


def _stream_route() -> str:
    return "^" + re.escape(get_config().stream_path.lstrip("/")) + "$"


websocket_urlpatterns: list[Any] = [
    # Channels routes ASGI apps through Django's URL patterns; django-stubs types only views.
    re_path(_stream_route(), MediaStreamConsumer.as_asgi()),  # type: ignore[arg-type]
]

"""Websocket routes (carrier media streams arrive with the carrier issues)."""
from __future__ import annotations

from typing import Any

websocket_urlpatterns: list[Any] = []

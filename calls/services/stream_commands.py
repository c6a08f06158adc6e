"""Control messages to the process that holds a call's media stream (group `call.<callId>`).

Only control travels the channel layer (speak, clear, hang up), never audio frames:
one receiving process takes ~2,000 layer messages a second
(docs/performance.md, "Channel layer: control events only").
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from calls.exceptions import CallError


def group_name(call_id: str) -> str:
    return f"call.{call_id}"


def stream_command(call_id: str, message: dict[str, Any]) -> None:
    """group_send to the call's stream; raises CallError without a channel layer."""
    layer = get_channel_layer()
    if layer is None:
        raise CallError("No channel layer configured for media streams")
    async_to_sync(layer.group_send)(group_name(call_id), message)

"""The live view's websocket (`/admin/live/`): active calls, then each change as it happens.

Thin: who may watch, the group, and a row read per change (calls/live/snapshot.py). The
changes are announced by calls/services/live.py from whichever process made them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from calls.live.snapshot import live_call, live_calls
from calls.services.live import GROUP
from calls.services.stream_commands import stream_loop_adopt

# Closed before the handshake completes: not signed in, not staff, or no right to view calls.
REFUSED = 4403


@database_sync_to_async
def _may_watch(user: Any) -> bool:
    return bool(
        user is not None and user.is_active and user.is_staff and user.has_perm("calls.view_call")
    )


class LiveCallsConsumer(AsyncJsonWebsocketConsumer):
    joined = False

    async def connect(self) -> None:
        if not await _may_watch(self.scope.get("user")):
            await self.close(code=REFUSED)
            return
        # Announcements from this process's request threads are handed to this loop: the
        # in-process layer's queues live here (calls/services/live.py, `_dispatch`).
        stream_loop_adopt(asyncio.get_running_loop())
        await self.channel_layer.group_add(GROUP, self.channel_name)
        self.joined = True
        await self.accept()
        # Joined first: a change made while the list is read still arrives after it.
        calls = await database_sync_to_async(live_calls)()
        await self.send_json({"type": "snapshot", "calls": calls})

    async def disconnect(self, code: int) -> None:
        if self.joined:
            await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        pass  # the view only listens

    async def live_call(self, event: dict[str, Any]) -> None:
        row = await database_sync_to_async(live_call)(str(event.get("callId")))
        if row is not None:  # another deployment's call on a shared layer
            await self.send_json({"type": "call", "call": row})

"""The live view's websocket (`/admin/live/`): active calls, then each change as it happens.

Thin: who may watch, the group, and a row read per change (calls/live/snapshot.py). The
changes are announced by calls/services/live.py from whichever process made them.
"""

from __future__ import annotations

import asyncio
import time
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user

from calls.live.snapshot import live_call, live_calls
from calls.services.live import GROUP
from calls.services.stream_commands import stream_loop_adopt

# Closed before the handshake completes: not signed in, not staff, or no right to view calls;
# and later, once that is no longer so.
REFUSED = 4403
# An open view's session is read again before it is sent a change, at most this often: a
# signed-out, deactivated or demoted operator's socket closes at its next update instead of
# streaming calls on (docs/security.md, "Admin").
RECHECK_S = 1.0


def _allowed(user: Any) -> bool:
    return bool(
        user is not None and user.is_active and user.is_staff and user.has_perm("calls.view_call")
    )


_may_watch = database_sync_to_async(_allowed)


@database_sync_to_async
def _session_may_watch(session_key: str | None) -> bool:
    """The session as stored now (not the copy the socket opened with): signed in, the
    password unchanged since (Django checks the session's auth hash), allowed to watch."""
    if not session_key:
        return False
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return _allowed(get_user(SimpleNamespace(session=store)))  # type: ignore[arg-type]


class LiveCallsConsumer(AsyncJsonWebsocketConsumer):
    joined = False
    checked_at = 0.0  # monotonic: when the session was last found still allowed

    async def connect(self) -> None:
        if not await _may_watch(self.scope.get("user")):
            await self.close(code=REFUSED)
            return
        # Announcements from this process's request threads are handed to this loop: the
        # in-process layer's queues live here (calls/services/live.py, `_dispatch`).
        stream_loop_adopt(asyncio.get_running_loop())
        await self.channel_layer.group_add(GROUP, self.channel_name)
        self.joined = True
        self.checked_at = time.monotonic()
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
        if not await self._still_allowed():
            await self.close(code=REFUSED)
            return
        row = await database_sync_to_async(live_call)(str(event.get("callId")))
        if row is not None:  # another deployment's call on a shared layer
            await self.send_json({"type": "call", "call": row})

    async def _still_allowed(self) -> bool:
        now = time.monotonic()
        if now - self.checked_at < RECHECK_S:
            return True
        session = self.scope.get("session")
        if not await _session_may_watch(getattr(session, "session_key", None)):
            return False
        self.checked_at = now
        return True

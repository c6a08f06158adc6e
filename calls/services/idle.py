"""`realtime.idleHangupMs`: a realtime call whose caller says nothing that long is hung up.

The plugin's latest realtime handler ends a call after speech inactivity (and treats 30 s
without inbound media as a disconnect); here the rule is a durable deadline like every
other timer (docs/architecture.md, "Timers and the sweep"): it lives in the call's
metadata as epoch milliseconds (no column: a number compares in SQL on SQLite and
PostgreSQL alike), is set when the realtime stream attaches, moves on with every line the
caller says (`stream_heard`), and the sweep hangs the call up `hangup-bot` once it passed.
The model talking does not count: an idle caller is one who says nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction

from calls import clock
from calls.call_metadata import IDLE_HANGUP_AT
from calls.config import get_config
from calls.exceptions import CallError
from calls.models import Call
from calls.services.actions import call_hang_up
from calls.services.lifecycle import metadata_update
from calls.services.stream_plans import realtime_enabled
from calls.state import CallState

logger = logging.getLogger(__name__)


def _epoch_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def idle_deadline_renew(call: Call) -> None:
    """The caller was heard on a realtime call: hang up only after idleHangupMs more.

    A no-op unless realtime voice and `realtime.idleHangupMs` are configured.
    """
    idle_ms = get_config().realtime.idle_hangup_ms
    if not idle_ms or not realtime_enabled() or call.is_terminal:
        return
    deadline = clock.now() + timedelta(milliseconds=idle_ms)
    metadata_update(call=call, set_={IDLE_HANGUP_AT: _epoch_ms(deadline)})


def idle_sweep(*, now: datetime) -> int:
    """Hang up the live calls past their idle deadline; how many were hung up.

    Each deadline is claimed (taken off the row under its lock) before the hang-up, so two
    sweepers never hang one call up twice; a hang-up the carrier refuses puts it back for
    the next sweep.
    """
    now_ms = _epoch_ms(now)
    hung_up = 0
    for call in Call.objects.active().filter(**{f"metadata__{IDLE_HANGUP_AT}__lte": now_ms}):
        if not _claim(call, now_ms):
            continue  # another sweeper took it, or the caller spoke meanwhile
        try:
            call_hang_up(call=call, reason=CallState.HANGUP_BOT)
        except CallError as exc:
            logger.warning("call=%s idle hang-up failed: %s", call.public_id, exc)
            metadata_update(call=call, set_={IDLE_HANGUP_AT: now_ms})
            continue
        logger.info("call=%s hung up: caller idle past realtime.idleHangupMs", call.public_id)
        hung_up += 1
    return hung_up


def _claim(call: Call, now_ms: int) -> bool:
    with transaction.atomic():
        row = Call.objects.select_for_update().only("metadata").get(pk=call.pk)
        due = row.meta.get(IDLE_HANGUP_AT)
        if not isinstance(due, int) or due > now_ms:
            return False
        metadata_update(call=call, delete=(IDLE_HANGUP_AT,))
    return True

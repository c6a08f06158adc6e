"""The only place call state changes; interfaces call these and render.

Views, consumers, tasks, commands and admin actions stay thin, so every write has one
home (docs/design.md, "3. Layout").
"""

from __future__ import annotations

from calls.services.events import event_apply
from calls.services.inbound import allowlist_sync_config, inbound_screen
from calls.services.operations import continue_result, continue_start
from calls.services.outbound import (
    ContinueResult,
    call_continue,
    call_end,
    call_initiate,
    call_send_dtmf,
    call_speak,
)
from calls.services.timers import calls_restore, timers_sweep
from calls.services.tokens import token_authenticate, token_create, token_revoke
from calls.services.webhooks import webhook_process

__all__ = [
    "ContinueResult",
    "allowlist_sync_config",
    "call_continue",
    "call_end",
    "call_initiate",
    "call_send_dtmf",
    "call_speak",
    "calls_restore",
    "continue_result",
    "continue_start",
    "event_apply",
    "inbound_screen",
    "timers_sweep",
    "token_authenticate",
    "token_create",
    "token_revoke",
    "webhook_process",
]

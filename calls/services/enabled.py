"""`enabled: false`: the plugin's switch, honoured at run time.

A disabled service places no calls and drives none: the call-placing and in-call methods
fail with the plugin's `Voice call disabled in plugin config`, carrier webhooks get 503,
and `voicecall setup` and `/readyz` say so. Reads (status, transcripts, events) and ending
a call still work: the history stays visible and leftover calls can be hung up
(docs/plugin-behaviour.md, "Disabled (`enabled: false`)").
"""

from __future__ import annotations

from calls.config import get_config
from calls.exceptions import ServiceDisabled


def service_enabled() -> bool:
    """Whether the config's `enabled` is on (a missing flag means on)."""
    return get_config().enabled


def enabled_check() -> None:
    """Raise ServiceDisabled when the config says `enabled: false`."""
    if not service_enabled():
        raise ServiceDisabled()

"""Agent session keys for calls: where the gateway files a call's conversation.

The rules: docs/plugin-behaviour.md, "Session scope".
"""

from __future__ import annotations

import re
import uuid

from calls.config import RouteConfig, get_config
from calls.exceptions import InvalidRequest
from calls.phone import digits_only

DEFAULT_AGENT = "main"
MAX_E164_DIGITS = 15
# Call.session_key's column.
MAX_SESSION_KEY = 200
_AGENT_KEY = re.compile(r"^agent:([^:]+):(.+)$")


def agent_id(route: RouteConfig | None = None) -> str:
    """The owner agent: the number route's, else the config's, else `main`."""
    value = (route.agent_id if route else None) or get_config().agent_id or DEFAULT_AGENT
    return value.strip().lower()


def session_key_for(*, call_id: uuid.UUID | str, other_party: str | None, agent: str) -> str:
    """The key sessionScope derives: per-phone (default), per-call or main; lower-cased."""
    scope = get_config().session_scope
    if scope == "main":
        return f"agent:{agent}:main"
    digits = digits_only(other_party)
    if len(digits) > MAX_E164_DIGITS:
        digits = ""  # not a phone number (E.164 has at most 15 digits): key by call
    if scope == "per-call" or not digits:
        return f"agent:{agent}:voice:call:{call_id}".lower()
    return f"agent:{agent}:voice:{digits}".lower()


def session_key_normalize(explicit: str, *, agent: str) -> str:
    """An explicit sessionKey, put in the owner agent's namespace.

    Same-agent keys and `global`/`unknown` are kept; another agent's (or a malformed)
    `agent:` key is wrapped as an opaque key under ours, so a caller-supplied key can never
    address another agent's sessions.
    """
    key = explicit.strip()
    if not key:
        raise InvalidRequest("Voice Call session key cannot be empty")
    if key in ("global", "unknown"):
        return key
    match = _AGENT_KEY.match(key)
    normalized = key if match and match.group(1).lower() == agent else f"agent:{agent}:{key}"
    if len(normalized) > MAX_SESSION_KEY:
        raise InvalidRequest(f"Voice Call session key is too long (at most {MAX_SESSION_KEY})")
    return normalized

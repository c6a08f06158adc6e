"""The call state machine: pure rules, no database.

docs/plugin-behaviour.md, "State machine".
"""

from __future__ import annotations

from enum import StrEnum


class CallState(StrEnum):
    INITIATED = "initiated"
    RINGING = "ringing"
    ANSWERED = "answered"
    ACTIVE = "active"
    SPEAKING = "speaking"
    LISTENING = "listening"
    COMPLETED = "completed"
    HANGUP_USER = "hangup-user"
    HANGUP_BOT = "hangup-bot"
    TIMEOUT = "timeout"
    ERROR = "error"
    FAILED = "failed"
    NO_ANSWER = "no-answer"
    BUSY = "busy"
    VOICEMAIL = "voicemail"
    # Our leg ended because the call was handed to another number (cold transfer).
    TRANSFERRED = "transferred"


# Non-terminal states in their forward order; speaking and listening share a rank
# because they alternate freely.
_RANK: dict[str, int] = {
    CallState.INITIATED: 0,
    CallState.RINGING: 1,
    CallState.ANSWERED: 2,
    CallState.ACTIVE: 3,
    CallState.SPEAKING: 4,
    CallState.LISTENING: 4,
}
NON_TERMINAL: frozenset[str] = frozenset(_RANK)
TERMINAL: frozenset[str] = frozenset(s.value for s in CallState) - NON_TERMINAL
END_REASONS = TERMINAL


def is_terminal(state: str) -> bool:
    return state in TERMINAL


def can_transition(current: str, new: str) -> bool:
    """True when moving current -> new is allowed (same-state moves are not transitions)."""
    if current == new or current in TERMINAL:
        return False
    if new in TERMINAL:
        return True
    if {current, new} == {CallState.SPEAKING, CallState.LISTENING}:
        return True
    return _RANK[new] > _RANK[current]


def predecessors(new: str) -> list[str]:
    """States from which `new` may be entered: the filter of the conditional UPDATE."""
    return sorted(s for s in NON_TERMINAL if can_transition(s, new))

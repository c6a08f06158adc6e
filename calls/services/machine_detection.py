"""Answering-machine detection: what a call asked for, and what its verdict holds back.

Reads only: the mode chosen when the call was dialled (`outbound.machineDetection`, kept
on the row so a config change never alters a live call), whether the greeting or notify
message waits for the carrier's verdict, and how a call answered by a machine ends
(docs/carriers.md, "Answering-machine detection"). Applying a verdict is
calls/services/machine_verdicts.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from calls import clock
from calls.call_metadata import MACHINE_DETECTION
from calls.carrier import get_provider
from calls.config import get_config
from calls.models import Call
from calls.state import CallState
from providers.base import AnsweredBy, MachineDetection

# Verdicts that let a held greeting go: a person, or a carrier that could not tell (a
# greeting never said to a person who did answer is worse than one said to a machine).
RELEASING = frozenset({AnsweredBy.HUMAN, AnsweredBy.UNKNOWN})
MACHINES = frozenset({AnsweredBy.MACHINE, AnsweredBy.FAX})
# Ends that say nothing about who answered: on a call a machine answered, with `hangup` or
# `leaveMessage`, they are the voicemail end (the message left, or nothing said).
_ORDINARY_ENDS = frozenset({CallState.COMPLETED, CallState.HANGUP_BOT, CallState.HANGUP_USER})


def mode_for_dial() -> MachineDetection:
    """The configured detection for a new outbound call."""
    return MachineDetection(get_config().outbound.machine_detection)


def call_mode(call: Call) -> MachineDetection:
    """The detection this call was dialled with; off for inbound and older calls."""
    value = call.meta.get(MACHINE_DETECTION)
    try:
        return MachineDetection(value) if value else MachineDetection.OFF
    except ValueError:
        return MachineDetection.OFF


def holds_greeting(call: Call) -> bool:
    """Whether this call's greeting (or notify message) waits for a verdict at all.

    Conversation calls never speak to a machine unless leaving a message, so every mode
    holds them; a notify call with `detect` only records the verdict and says its message
    at once. A carrier that may report no verdict for a person (Plivo) holds only until
    its deadline (`verdict_deadline`).
    """
    mode = call_mode(call)
    provider = get_provider()
    if mode == MachineDetection.OFF or not (
        provider.machine_verdict_always or provider.machine_verdict_deadline_s is not None
    ):
        return False
    return call.mode == Call.Mode.CONVERSATION or mode != MachineDetection.DETECT


def verdict_deadline(call: Call) -> datetime | None:
    """When a held greeting goes without a verdict: the answer plus the carrier's deadline;
    None where every call gets a verdict (or the call was not answered)."""
    seconds = get_provider().machine_verdict_deadline_s
    if seconds is None or call.answered_at is None:
        return None
    return call.answered_at + timedelta(seconds=seconds)


def greeting_waits(call: Call) -> bool:
    """True while the greeting is held: no verdict that lets it go has come yet, and the
    carrier's deadline for one (where it has one) has not passed."""
    if not holds_greeting(call) or call.answered_by in RELEASING:
        return False
    deadline = verdict_deadline(call)
    return call.answered_by in MACHINES or deadline is None or clock.now() < deadline


def greeting_waits_now(call: Call) -> bool:
    """`greeting_waits` with the verdict read again from the row, for a path that has just
    taken the row's lock (the answer, a stream attaching): a verdict committed by another
    process while it waited for the lock is seen, so neither path leaves the greeting to
    the other. Calls that hold nothing pay no query."""
    if not holds_greeting(call):
        return False
    call.refresh_from_db(fields=["answered_by"])
    return greeting_waits(call)


def greeting_withheld(call: Call) -> bool:
    """A machine answered and no message is to be left on it: its greeting is never said,
    even by a deadline that passes after the verdict."""
    return call.answered_by in MACHINES and not leaves_message(call)


def leaves_message(call: Call) -> bool:
    """A machine answered a `leaveMessage` call: the message is left, then the call ends."""
    return call_mode(call) == MachineDetection.LEAVE_MESSAGE and (
        call.answered_by == AnsweredBy.MACHINE
    )


def voicemail_end_reason(call: Call, reason: str) -> str:
    """The end reason to record: `voicemail` for an ordinary end of a call a machine
    answered under `hangup` or `leaveMessage`; `reason` otherwise (`detect` only records).

    Reads the verdict from the row (another process may have written it) only for calls
    that asked for detection, so other calls pay nothing.
    """
    if reason not in _ORDINARY_ENDS or call_mode(call) not in (
        MachineDetection.HANGUP,
        MachineDetection.LEAVE_MESSAGE,
    ):
        return reason
    answered_by = Call.objects.filter(pk=call.pk).values_list("answered_by", flat=True).first()
    return CallState.VOICEMAIL if answered_by in MACHINES else reason

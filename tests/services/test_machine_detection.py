"""What a call's answering-machine detection holds back (calls/services/machine_detection.py):
the mode kept on the row, the held greeting, and which carriers can hold one."""

from __future__ import annotations

from typing import Any

import pytest

from calls.carrier import set_provider
from calls.services.machine_detection import (
    call_mode,
    greeting_waits,
    holds_greeting,
    leaves_message,
    mode_for_dial,
)
from providers.base import MachineDetection
from providers.mock import MockProvider

pytestmark = pytest.mark.django_db


def test_the_dial_takes_the_configured_mode(configure: Any) -> None:
    configure({"outbound": {"machineDetection": "leaveMessage"}})
    assert mode_for_dial() == MachineDetection.LEAVE_MESSAGE


@pytest.mark.parametrize("stored", [None, "", "sometimes", 7])
def test_a_call_without_a_readable_mode_is_off(make_call: Any, stored: Any) -> None:
    call = make_call(metadata={} if stored is None else {"machineDetection": stored})
    assert call_mode(call) == MachineDetection.OFF


def test_the_call_keeps_its_mode_when_the_config_changes(make_call: Any, configure: Any) -> None:
    call = make_call(metadata={"machineDetection": "hangup"})
    configure({"outbound": {"machineDetection": "off"}})
    assert call_mode(call) == MachineDetection.HANGUP


@pytest.mark.parametrize(
    ("mode", "call_type", "held"),
    [
        ("off", "conversation", False),
        ("detect", "conversation", True),
        ("detect", "notify", False),  # detect only records: the message goes at once
        ("hangup", "notify", True),
        ("hangup", "conversation", True),
        ("leaveMessage", "notify", True),
    ],
)
def test_which_greetings_are_held(
    mock_carrier: MockProvider, make_call: Any, mode: str, call_type: str, held: bool
) -> None:
    call = make_call(mode=call_type, metadata={"machineDetection": mode})
    assert holds_greeting(call) is held
    assert greeting_waits(call) is held


@pytest.mark.parametrize(
    ("answered_by", "waits"),
    [("", True), ("human", False), ("unknown", False), ("machine", True), ("fax", True)],
)
def test_only_a_person_or_an_unsure_verdict_lets_the_greeting_go(
    mock_carrier: MockProvider, make_call: Any, answered_by: str, waits: bool
) -> None:
    call = make_call(answered_by=answered_by, metadata={"machineDetection": "detect"})
    assert greeting_waits(call) is waits


def test_a_carrier_without_a_verdict_for_people_never_holds(make_call: Any) -> None:
    class NoVerdictForPeople(MockProvider):
        machine_verdict_always = False

    set_provider(NoVerdictForPeople(settings={}))
    call = make_call(metadata={"machineDetection": "hangup"})
    assert not holds_greeting(call) and not greeting_waits(call)


@pytest.mark.parametrize(
    ("mode", "answered_by", "leaves"),
    [
        ("leaveMessage", "machine", True),
        ("leaveMessage", "fax", False),
        ("leaveMessage", "human", False),
        ("hangup", "machine", False),
    ],
)
def test_a_message_is_left_only_on_a_machine_with_leave_message(
    make_call: Any, mode: str, answered_by: str, leaves: bool
) -> None:
    call = make_call(answered_by=answered_by, metadata={"machineDetection": mode})
    assert leaves_message(call) is leaves

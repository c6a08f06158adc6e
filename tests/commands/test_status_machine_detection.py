"""`voicecall status` shows the answering-machine verdict (docs/carriers.md,
"Answering-machine detection")."""

from __future__ import annotations

from typing import Any

import pytest

from tests.commands.test_voicecall_command import no_server, run_json

pytestmark = pytest.mark.django_db
__all__ = ["no_server"]  # the fixture that keeps the command in-process


def test_status_shows_who_answered_and_how_long_detection_took(
    mock_carrier: Any, make_call: Any, no_server: list[str]
) -> None:
    call = make_call(answered_by="machine", machine_detection_ms=0)
    status = run_json("status", "--call-id", call.call_id, "--json")["call"]
    # A zero wait is a figure, not a missing one.
    assert (status["answeredBy"], status["machineDetectionMs"]) == ("machine", 0)
    undetected = run_json("status", "--call-id", make_call().call_id, "--json")["call"]
    assert "answeredBy" not in undetected and "machineDetectionMs" not in undetected

"""`voicecall transfer --call-id ID --to NUMBER [--message TEXT]`: in-process and remote;
errors are one line and a non-zero exit (docs/carriers.md, "Cold transfer")."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from django.conf import settings

from tests.commands.test_voicecall_command import fails, no_server, result, run_json, server

__all__ = ["no_server", "server"]  # fixtures used here, defined with the other CLI tests

TARGET = "+15555550177"


def test_transfer_in_process_hands_the_call_over(mock_carrier: Any, make_call: Any) -> None:
    call = make_call()
    printed = run_json("transfer", "--call-id", call.call_id, "--to", TARGET, "--message", "Bye")
    assert printed == {"success": True}
    assert [op for op, _ in mock_carrier.sent] == ["transfer"]
    call.refresh_from_db()
    assert call.state == "transferred"


@pytest.mark.parametrize(
    ("to", "error"),
    [
        ("555", "to: Expected E.164 format, e.g. +15550001234"),
        ("+19005550100", "Destination +19005550100 is not allowed by outbound.allowTo"),
    ],
)
def test_transfer_to_a_refused_target_fails_with_one_line_and_sends_nothing(
    configure: Any, mock_carrier: Any, make_call: Any, to: str, error: str
) -> None:
    configure({"outbound": {"allowTo": ["+1555"]}})
    call = make_call()
    message, printed = fails("transfer", "--call-id", call.call_id, "--to", to)
    assert (message, printed) == (error, "")
    assert mock_carrier.sent == []


def test_transfer_of_an_unknown_or_ended_call_fails(mock_carrier: Any, make_call: Any) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    assert fails("transfer", "--call-id", unknown, "--to", TARGET)[0] == "Call not found"
    ended = make_call(state="completed", end_reason="completed")
    assert fails("transfer", "--call-id", ended.call_id, "--to", TARGET)[0] == "Call has ended"


def test_transfer_needs_call_id_and_to(mock_carrier: Any) -> None:
    assert fails("transfer", "--to", TARGET)[0] == (
        "Error: the following arguments are required: --call-id"
    )
    assert fails("transfer", "--call-id", "abc")[0] == (
        "Error: the following arguments are required: --to"
    )
    assert mock_carrier.sent == []


def test_transfer_goes_to_the_running_server(server: Any, mock_carrier: Any, db: Any) -> None:
    fake = server(result({"success": True}))
    assert run_json("transfer", "--call-id", "abc", "--to", TARGET) == {"success": True}
    body, _ = fake.rpc[0]
    assert (body["method"], body["params"]) == (
        "voicecall.transfer",
        {"callId": "abc", "to": TARGET},
    )
    assert mock_carrier.sent == []


def test_the_command_line_exits_non_zero_with_one_line(tmp_path: Any) -> None:
    """The real process: what a shell sees (Django prints "CommandError: <line>")."""
    env = {
        "PATH": "/usr/bin:/bin",
        "VOICECALL_DATA_DIR": str(tmp_path),
        "VOICECALL_SERVER_URL": "http://127.0.0.1:9",  # nothing listens: in-process
    }
    manage = settings.BASE_DIR / "manage.py"
    subprocess.run([sys.executable, str(manage), "migrate", "-v0"], env=env, check=True)
    done = subprocess.run(
        [sys.executable, str(manage), "voicecall", "transfer", "--call-id", "nope", "--to", "x1"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "CommandError: to: Expected E.164 format, e.g. +15550001234"
    ]

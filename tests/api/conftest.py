"""Fixtures shared by the API tests."""

from __future__ import annotations

from typing import Any

import pytest

from calls.config import parse_config, set_config


@pytest.fixture
def calls(mock_carrier: Any, make_call: Any) -> dict[str, str]:
    """A live and an ended call, by role: {"live": callId, "ended": callId}."""
    # maxConcurrentCalls is raised so that POST /api/calls/ can dial beside the live call;
    # set_config (not `configure`) keeps the mock carrier installed.
    set_config(parse_config({"maxConcurrentCalls": 5}, {}))
    live = make_call(state="answered")
    ended = make_call(state="hangup-user", end_reason="hangup-user")
    return {"live": live.call_id, "ended": ended.call_id}

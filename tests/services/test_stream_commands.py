"""Control messages to a call's stream process (calls/services/stream_commands.py)."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from calls.exceptions import CallError
from calls.services.stream_commands import group_name, stream_command


def test_each_call_has_its_own_group() -> None:
    assert group_name("c-1") == "call.c-1"
    assert group_name("c-1") != group_name("c-2")


def test_a_command_reaches_the_calls_group() -> None:
    layer = get_channel_layer()
    assert layer is not None
    mine = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group_name("c-1"), mine)

    stream_command("c-1", {"type": "call.speak", "text": "Hello"})

    assert async_to_sync(layer.receive)(mine) == {"type": "call.speak", "text": "Hello"}
    async_to_sync(layer.group_discard)(group_name("c-1"), mine)


def test_without_a_channel_layer_a_command_is_a_call_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("calls.services.stream_commands.get_channel_layer", lambda: None)
    with pytest.raises(CallError, match="No channel layer configured"):
        stream_command("c-1", {"type": "call.speak", "text": "Hello"})


def test_a_group_receives_only_its_own_commands() -> None:
    layer = get_channel_layer()
    assert layer is not None
    other = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group_name("c-2"), other)
    stream_command("c-1", {"type": "call.speak", "text": "Hello"})
    stream_command("c-2", {"type": "call.clear"})
    assert async_to_sync(layer.receive)(other) == {"type": "call.clear"}
    async_to_sync(layer.group_discard)(group_name("c-2"), other)

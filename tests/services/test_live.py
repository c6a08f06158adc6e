"""Announcing call changes to the live views (calls/services/live.py): after the commit,
once per change, and never failing the change itself."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer
from django.db import transaction

from calls.services import live, stream_commands
from calls.services.lifecycle import call_finalize, call_transition, transcript_add

# Generous: the send is on its way at once; this only bounds a broken test.
WAIT_S = 10


class _Layer:
    """A networked channel layer as far as the service can tell; records what it sends."""

    def __init__(self, error: Exception | None = None) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.error = error
        self.called = threading.Event()

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.called.set()
        if self.error is not None:
            raise self.error
        self.sent.append((group, message))

    def wait(self) -> list[tuple[str, dict[str, Any]]]:
        assert self.called.wait(WAIT_S), "nothing was sent"
        return self.sent


@pytest.fixture
def layer(monkeypatch: pytest.MonkeyPatch) -> _Layer:
    fake = _Layer()
    monkeypatch.setattr(live, "get_channel_layer", lambda: fake)
    # Where no server loop runs, the publisher's own instance of the layer sends.
    monkeypatch.setattr(live, "_new_layer", lambda: fake)
    monkeypatch.setattr(live, "_publisher", None)
    return fake


def test_a_state_change_is_announced_once_committed(
    make_call: Any, layer: _Layer, django_capture_on_commit_callbacks: Any
) -> None:
    call = make_call(state="answered")
    with django_capture_on_commit_callbacks() as pending:
        call_transition(call=call, state="listening")
    assert not layer.called.is_set()  # not before the commit
    for callback in pending:
        callback()
    assert layer.wait() == [(live.GROUP, {"type": live.EVENT, "callId": call.call_id})]


def test_a_change_that_is_rolled_back_is_never_announced(
    make_call: Any, django_capture_on_commit_callbacks: Any
) -> None:
    call = make_call(state="answered")
    with django_capture_on_commit_callbacks() as pending:
        with pytest.raises(RuntimeError), transaction.atomic():
            call_transition(call=call, state="listening")
            raise RuntimeError("the webhook failed after the transition")
    assert pending == []


def test_a_stale_transition_announces_nothing(
    make_call: Any, django_capture_on_commit_callbacks: Any
) -> None:
    call = make_call(state="completed")
    with django_capture_on_commit_callbacks() as pending:
        assert not call_transition(call=call, state="listening")
    assert pending == []


@pytest.mark.parametrize(
    "change",
    [
        lambda call: call_finalize(call=call, reason="hangup-user"),
        lambda call: transcript_add(call=call, speaker="user", text="hello"),
    ],
    ids=["ended", "transcript line"],
)
def test_an_end_and_a_transcript_line_are_announced(
    make_call: Any, layer: _Layer, django_capture_on_commit_callbacks: Any, change: Any
) -> None:
    call = make_call(state="listening")
    with django_capture_on_commit_callbacks(execute=True):
        change(call)
    assert [message["callId"] for _, message in layer.wait()] == [call.call_id]


def test_a_layer_that_fails_never_fails_the_change(
    make_call: Any,
    layer: _Layer,
    django_capture_on_commit_callbacks: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    layer.error = ConnectionError("redis is down")
    call = make_call(state="answered")
    with caplog.at_level(logging.WARNING), django_capture_on_commit_callbacks(execute=True):
        assert call_transition(call=call, state="listening")
    layer.wait()
    call.refresh_from_db()
    assert call.state == "listening"
    # Logged on the loop that sent, once the send failed.
    deadline = time.monotonic() + WAIT_S
    while "live view update not sent" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "live view update not sent" in caplog.text


def test_a_layer_that_cannot_be_reached_at_all_never_fails_the_change(
    make_call: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> None:
        raise ConnectionError("no such host")

    monkeypatch.setattr(live, "get_channel_layer", broken)
    call = make_call(state="answered")
    with caplog.at_level(logging.WARNING), django_capture_on_commit_callbacks(execute=True):
        assert call_transition(call=call, state="listening")
    assert f"call={call.call_id} live view update not sent" in caplog.text


def test_a_networked_layer_is_sent_to_from_a_thread_with_no_server_loop(
    make_call: Any,
    layer: _Layer,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    monkeypatch.setattr(stream_commands, "_stream_loop", None)
    call = make_call(state="answered")
    with django_capture_on_commit_callbacks(execute=True):
        call_transition(call=call, state="listening")
    assert [message["callId"] for _, message in layer.wait()] == [call.call_id]


def test_the_in_process_layer_is_skipped_when_no_view_can_be_listening(
    make_call: Any, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    sent: list[str] = []

    class Recording(InMemoryChannelLayer):
        async def group_send(self, group: str, message: dict[str, Any]) -> None:
            sent.append(group)

    monkeypatch.setattr(live, "get_channel_layer", Recording)
    monkeypatch.setattr(stream_commands, "_stream_loop", None)  # no server loop here
    monkeypatch.setattr(live, "_publisher_loop", lambda: pytest.fail("sent anyway"))
    call = make_call(state="answered")
    with django_capture_on_commit_callbacks(execute=True):
        call_transition(call=call, state="listening")
    assert sent == []

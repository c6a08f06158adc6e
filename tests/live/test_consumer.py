"""The live view's websocket `/admin/live/`: who may open it, what it sends first, and a
call change reaching it (calls/live/consumer.py, calls/live/routing.py)."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission, User
from django.test import Client

from calls.live.consumer import REFUSED
from calls.live.routing import live_urlpatterns
from calls.services.lifecycle import call_finalize, call_transition

pytestmark = pytest.mark.django_db(transaction=True)

HOST = b"testserver"
# Generous: a message is on its way at once; this only bounds a broken test.
WAIT_S = 10


def _session_cookie(user: User | None) -> bytes:
    if user is None:
        return b""
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def _socket(cookie: bytes, origin: bytes = b"http://testserver") -> WebsocketCommunicator:
    headers = [(b"host", HOST), (b"cookie", cookie)]
    if origin:
        headers.append((b"origin", origin))
    return WebsocketCommunicator(URLRouter(live_urlpatterns), "/admin/live/", headers=headers)


async def _open(user: User | None, **kwargs: Any) -> tuple[WebsocketCommunicator, bool, Any]:
    socket = _socket(await database_sync_to_async(_session_cookie)(user), **kwargs)
    connected, code = await socket.connect(timeout=WAIT_S)
    return socket, connected, code


def _superuser() -> User:
    return User.objects.create_superuser("ops", password="x")


def _staff(*permissions: str) -> User:
    user = User.objects.create_user("desk", password="x", is_staff=True)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


async def test_an_anonymous_visitor_is_refused() -> None:
    _, connected, code = await _open(None)
    assert (connected, code) == (False, REFUSED)


async def test_a_signed_in_user_who_is_not_staff_is_refused() -> None:
    user = await database_sync_to_async(User.objects.create_user)("someone", password="x")
    _, connected, code = await _open(user)
    assert (connected, code) == (False, REFUSED)


async def test_staff_without_the_right_to_view_calls_is_refused() -> None:
    _, connected, code = await _open(await database_sync_to_async(_staff)())
    assert (connected, code) == (False, REFUSED)


async def test_staff_who_may_view_calls_is_let_in() -> None:
    socket, connected, _ = await _open(await database_sync_to_async(_staff)("view_call"))
    assert connected
    assert (await socket.receive_json_from(WAIT_S))["type"] == "snapshot"
    await socket.disconnect()


@pytest.mark.parametrize("origin", [b"http://evil.example", b""])
async def test_a_socket_from_another_origin_or_none_is_refused(origin: bytes) -> None:
    _, connected, _ = await _open(await database_sync_to_async(_superuser)(), origin=origin)
    assert not connected


async def test_it_first_sends_the_active_calls_with_masked_numbers(make_call: Any) -> None:
    live = await database_sync_to_async(make_call)(state="listening", to_number="+15555550199")
    await database_sync_to_async(make_call)(state="completed")
    socket, connected, _ = await _open(await database_sync_to_async(_superuser)())
    assert connected

    snapshot = await socket.receive_json_from(WAIT_S)

    assert snapshot["type"] == "snapshot"
    assert [row["callId"] for row in snapshot["calls"]] == [live.call_id]
    assert snapshot["calls"][0]["to"] == "+1555•••0199"
    assert snapshot["calls"][0]["state"] == "listening"
    await socket.disconnect()


async def test_a_state_change_committed_elsewhere_reaches_the_open_view(make_call: Any) -> None:
    call = await database_sync_to_async(make_call)(state="answered")
    socket, connected, _ = await _open(await database_sync_to_async(_superuser)())
    assert connected
    await socket.receive_json_from(WAIT_S)  # the snapshot

    await database_sync_to_async(call_transition)(call=call, state="listening")

    update = await socket.receive_json_from(WAIT_S)
    assert update["type"] == "call"
    assert (update["call"]["callId"], update["call"]["state"]) == (call.call_id, "listening")
    await socket.disconnect()


async def test_an_ended_call_is_sent_as_ended(make_call: Any) -> None:
    call = await database_sync_to_async(make_call)(state="listening")
    socket, connected, _ = await _open(await database_sync_to_async(_superuser)())
    assert connected
    await socket.receive_json_from(WAIT_S)

    await database_sync_to_async(call_finalize)(call=call, reason="hangup-user")

    update = (await socket.receive_json_from(WAIT_S))["call"]
    assert (update["state"], update["ended"]) == ("hangup-user", True)
    await socket.disconnect()


async def test_a_new_call_appears_without_asking(mock_carrier: Any) -> None:
    from calls.services.dialling import call_initiate

    socket, connected, _ = await _open(await database_sync_to_async(_superuser)())
    assert connected
    assert (await socket.receive_json_from(WAIT_S))["calls"] == []

    call = await database_sync_to_async(call_initiate)(to="+15555550123", message="Hi")

    first = (await socket.receive_json_from(WAIT_S))["call"]
    assert first["callId"] == call.call_id
    await socket.disconnect()


# --- the session is read again: a signed-out operator's view stops (docs/security.md) -----


def _signed_in(user: User) -> tuple[Client, bytes]:
    client = Client()
    client.force_login(user)
    return client, f"sessionid={client.cookies['sessionid'].value}".encode()


async def _watching() -> tuple[User, Client, WebsocketCommunicator]:
    """Staff who may view calls, signed in, with the live view open past its snapshot."""
    user = await database_sync_to_async(_staff)("view_call")
    client, cookie = await database_sync_to_async(_signed_in)(user)
    socket = _socket(cookie)
    connected, _ = await socket.connect(timeout=WAIT_S)
    assert connected
    assert (await socket.receive_json_from(WAIT_S))["type"] == "snapshot"
    return user, client, socket


def _demote(user: User) -> None:
    user.user_permissions.clear()


@pytest.mark.parametrize("ending", ["logout", "deactivated", "permission", "password"])
async def test_a_view_whose_session_no_longer_may_watch_is_closed_at_its_next_update(
    make_call: Any, monkeypatch: pytest.MonkeyPatch, ending: str
) -> None:
    monkeypatch.setattr("calls.live.consumer.RECHECK_S", 0.0)
    call = await database_sync_to_async(make_call)(state="answered")
    user, client, socket = await _watching()

    if ending == "logout":
        await database_sync_to_async(client.logout)()
    elif ending == "deactivated":
        await database_sync_to_async(User.objects.filter(pk=user.pk).update)(is_active=False)
    elif ending == "permission":
        await database_sync_to_async(_demote)(user)
    else:  # a new password signs every session out (Django's session auth hash)
        user.set_password("changed")
        await database_sync_to_async(user.save)()
    await database_sync_to_async(call_transition)(call=call, state="listening")

    closed = await socket.receive_output(WAIT_S)
    assert closed == {"type": "websocket.close", "code": REFUSED}
    assert await socket.receive_nothing()


async def test_a_view_still_allowed_keeps_getting_updates_when_read_again(
    make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("calls.live.consumer.RECHECK_S", 0.0)
    call = await database_sync_to_async(make_call)(state="answered")
    _, _, socket = await _watching()

    for state in ("listening", "speaking"):
        await database_sync_to_async(call_transition)(call=call, state=state)
        assert (await socket.receive_json_from(WAIT_S))["call"]["state"] == state
    await socket.disconnect()

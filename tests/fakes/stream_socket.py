"""A media-stream socket driven through channels' communicator, with the scope fields a
server fills in (the peer address, the ASGI extensions) that the stream limits read."""

from __future__ import annotations

from typing import Any

from asgiref.testing import ApplicationCommunicator
from channels.testing import WebsocketCommunicator

# What a server offering HTTP responses on a websocket upgrade (uvicorn) announces.
HTTP_RESPONSE: dict[str, Any] = {"websocket.http.response": {}}


class Socket(WebsocketCommunicator):
    """A communicator with the scope fields a server fills in: the peer and extensions."""

    def __init__(
        self,
        application: Any,
        *,
        client: tuple[str, int] = ("127.0.0.1", 50000),
        extensions: dict[str, Any] | None = None,
    ) -> None:
        self.scope = {
            "type": "websocket",
            "path": "/voice/stream",
            "query_string": b"",
            "headers": [],
            "subprotocols": [],
            "client": client,
        }
        if extensions is not None:
            self.scope["extensions"] = extensions
        ApplicationCommunicator.__init__(self, application, self.scope)
        self.response_headers = None


async def socket_open(application: Any, **kwargs: Any) -> Socket:
    """A Socket, connected (asserted)."""
    communicator = Socket(application, **kwargs)
    connected, _ = await communicator.connect()
    assert connected
    return communicator

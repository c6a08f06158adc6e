"""The channel layer as configured: an idle receiver must survive redis-py 8's socket timeout.

channels-redis's core layer blocked on BZPOPMIN for 5 s and redis-py 8 defaults to a 5 s
socket timeout, so without `socket_timeout: None` an idle consumer died with "Timeout
reading from …" (redis/redis-py#4091; docs/performance.md, "channels-redis idle timeout").
The pub/sub layer used now reads its subscription otherwise; this still waits longer than
that, so neither layer may regress.
"""

from __future__ import annotations

import asyncio
import os

import pytest
from channels.layers import get_channel_layer
from django.conf import settings

pytestmark = pytest.mark.skipif(
    not os.environ.get("REDIS_URL"), reason="needs REDIS_URL (run by .ci/run against Redis)"
)


def test_the_redis_layer_is_configured_without_a_socket_timeout() -> None:
    host = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]
    assert host["socket_timeout"] is None


async def test_a_receiver_idle_for_more_than_ten_seconds_still_gets_its_message() -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()

    async def send_late() -> None:
        await asyncio.sleep(11)
        await layer.send(channel, {"type": "call.transcript", "text": "still here"})

    sender = asyncio.create_task(send_late())
    message = await asyncio.wait_for(layer.receive(channel), timeout=20)
    await sender
    assert message == {"type": "call.transcript", "text": "still here"}
    await layer.flush()

"""The gateway agent's webhook client (providers/agent_webhook.py): the signed request, the
strict reading of its reply, and every way the gateway can fail.

docs/plugin-behaviour.md, "The gateway's agent as responder". The gateway is an
httpx.MockTransport; the signature is recomputed here with `hmac` independently of the
module's own helper.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from providers.agent_webhook import AgentAction, AgentRequest, AgentWebhook, parse_reply
from providers.errors import ProviderError

SECRET = "s3cret-shared-with-the-gateway"
URL = "https://agent.example/voice/reply"
NOW = 1_796_643_871
REQUEST: AgentRequest = {
    "callId": "6f1c0000-0000-4000-8000-000000000001",
    "direction": "inbound",
    "from": "+15550001111",
    "to": "+15550000000",
    "transcript": [{"speaker": "user", "text": "Zażółć? <&>", "at": "2026-12-07T11:00:00+00:00"}],
    "latest": "Zażółć? <&>",
}


def _webhook(handler: Callable[[httpx.Request], httpx.Response]) -> AgentWebhook:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return AgentWebhook(url=URL, secret=SECRET, timeout_s=2.5, http=client, now=lambda: NOW)


def _answer(body: Any, status: int = 200) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, json=body)


def test_the_request_is_signed_over_its_raw_body_which_holds_the_timestamp() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"spoken": "Yes."})

    assert _webhook(handler).ask(REQUEST) == "Yes."

    request = seen[0]
    assert (request.method, str(request.url)) == ("POST", URL)
    assert request.headers["content-type"] == "application/json"
    expected = hmac.new(SECRET.encode(), request.content, hashlib.sha256).hexdigest()
    assert request.headers["x-voicecall-signature"] == f"sha256={expected}"
    assert request.headers["x-voicecall-timestamp"] == str(NOW)
    assert json.loads(request.content) == {**REQUEST, "timestamp": NOW}


def test_the_timeout_applies_to_every_step_of_the_request() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"spoken": ""})

    _webhook(handler).ask(REQUEST)

    assert seen[0].extensions["timeout"] == dict.fromkeys(("connect", "read", "write", "pool"), 2.5)


@pytest.mark.parametrize(
    ("body", "reply"),
    [
        ({"spoken": "We open at  nine.\n"}, "We open at nine."),
        ({"spoken": ""}, ""),
        ({"spoken": "  \t"}, ""),
        ({"action": "end"}, AgentAction(kind="end")),
        ({"action": "transfer", "to": "+15555550177"}, AgentAction("transfer", "+15555550177")),
        (
            {"action": "transfer", "to": "+15555550177", "message": "Connecting you."},
            AgentAction("transfer", "+15555550177", "Connecting you."),
        ),
    ],
)
def test_each_documented_reply_is_read(body: dict[str, Any], reply: Any) -> None:
    assert _webhook(_answer(body)).ask(REQUEST) == reply


@pytest.mark.parametrize(
    "raw",
    [
        b"We open at nine.",
        b'["spoken"]',
        b"{}",
        b'{"spoken": 1}',
        b'{"spoken": null}',
        b'{"spoken": "Hi", "mood": "happy"}',
        b'{"spoken": "Hi", "action": "end"}',
        b'{"spoken": "a\\u0000b"}',
        b'{"spoken": "\\ud800"}',
        b'{"action": "dance"}',
        b'{"action": "end", "to": "+15555550177"}',
        b'{"action": "transfer"}',
        b'{"action": "transfer", "to": 15555550177}',
        b'{"action": "transfer", "to": "+15555550177", "message": 1}',
        b'{"action": "transfer", "to": "+15555550177", "why": "x"}',
        b'{"Action": "end"}',
    ],
)
def test_a_reply_outside_the_contract_is_refused_without_its_text(raw: bytes) -> None:
    with pytest.raises(ProviderError) as info:
        parse_reply(raw)
    assert str(info.value).startswith("Agent webhook reply refused: ")
    assert "nine" not in str(info.value) and "Hi" not in str(info.value)


def _raise(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.mark.parametrize(
    ("handler", "message", "retryable"),
    [
        (_raise(httpx.ReadTimeout("slow")), "Agent webhook timed out", True),
        (_raise(httpx.ConnectTimeout("slow")), "Agent webhook timed out", True),
        (_raise(httpx.ConnectError("refused")), "Agent webhook unreachable: refused", True),
        (_answer({"spoken": "Hi"}, 503), "Agent webhook HTTP 503", True),
        (_answer({"spoken": "Hi"}, 401), "Agent webhook HTTP 401", False),
        (_answer({"spoken": "Hi"}, 302), "Agent webhook HTTP 302", False),
    ],
)
def test_a_failing_gateway_is_a_provider_error(
    handler: Callable[[httpx.Request], httpx.Response], message: str, retryable: bool
) -> None:
    with pytest.raises(ProviderError) as info:
        _webhook(handler).ask(REQUEST)
    assert (str(info.value), info.value.retryable) == (message, retryable)

"""The ASGI gate before Django: 401 before the body is read, 413, 408, 429.

docs/security.md, "Webhooks".
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from calls.carrier import set_provider
from calls.web.gate import MAX_IN_FLIGHT, WebhookGate
from providers.mock import MockProvider
from tests.metrics_samples import sample


class SignedMock(MockProvider):
    signature_headers = (("x-test-signature",),)


@pytest.fixture
def signed_carrier(configure: Any) -> SignedMock:
    configure({})
    provider = SignedMock(settings={})
    set_provider(provider)
    return provider


class Inner:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.release = asyncio.Event()
        self.hold = False

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        message = await receive()
        self.bodies.append(message["body"])
        if self.hold:
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"inner"})


def _scope(
    path: str = "/voice/webhook",
    method: str = "POST",
    headers: dict | None = None,
    client: str = "203.0.113.9",
) -> dict:
    raw = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    return {
        "type": "http",
        "path": path,
        "method": method,
        "headers": raw,
        "client": (client, 40000),
    }


async def _call(gate: WebhookGate, scope: dict, receive: Any) -> tuple[int, bytes]:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await gate(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def _body(*chunks: bytes) -> Any:
    queue = list(chunks)

    async def receive() -> dict:
        chunk = queue.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(queue)}

    return receive


async def _never() -> dict:
    raise AssertionError("the body was read")


async def test_a_webhook_without_signature_headers_gets_401_before_the_body_is_read(
    signed_carrier: SignedMock,
) -> None:
    inner = Inner()
    status, body = await _call(WebhookGate(inner), _scope(), _never)
    assert (status, body) == (401, b"Unauthorized")
    assert inner.bodies == []


async def test_a_signed_webhook_reaches_django_with_its_whole_body(
    signed_carrier: SignedMock,
) -> None:
    inner = Inner()
    status, _ = await _call(
        WebhookGate(inner), _scope(headers={"x-test-signature": "s"}), _body(b"a=1&", b"b=2")
    )
    assert status == 200
    assert inner.bodies == [b"a=1&b=2"]


async def test_skip_signature_verification_skips_the_header_gate(configure: Any) -> None:
    configure({"skipSignatureVerification": True})
    set_provider(SignedMock(settings={}))
    status, _ = await _call(WebhookGate(Inner()), _scope(), _body(b"{}"))
    assert status == 200


async def test_a_declared_oversized_body_gets_413_unread(signed_carrier: SignedMock) -> None:
    headers = {"x-test-signature": "s", "content-length": str(64 * 1024 + 1)}
    status, _ = await _call(WebhookGate(Inner()), _scope(headers=headers), _never)
    assert status == 413


async def test_a_streamed_body_past_64_kib_gets_413(signed_carrier: SignedMock) -> None:
    inner = Inner()
    chunks = [b"x" * 32 * 1024] * 3
    status, _ = await _call(
        WebhookGate(inner), _scope(headers={"x-test-signature": "s"}), _body(*chunks)
    )
    assert status == 413
    assert inner.bodies == []


async def test_a_slow_body_times_out_with_408(signed_carrier: SignedMock) -> None:
    async def slow() -> dict:
        await asyncio.sleep(5)
        return {"type": "http.request", "body": b"", "more_body": False}

    status, _ = await _call(
        WebhookGate(Inner(), body_timeout=0.05), _scope(headers={"x-test-signature": "s"}), slow
    )
    assert status == 408


async def test_non_post_gets_405(signed_carrier: SignedMock) -> None:
    status, _ = await _call(WebhookGate(Inner()), _scope(method="GET"), _never)
    assert status == 405


async def test_admitted_webhooks_go_to_the_handler_and_other_paths_to_the_app(
    signed_carrier: SignedMock,
) -> None:
    app, handler = Inner(), Inner()
    gate = WebhookGate(app, handler=handler)
    signed = _scope(headers={"x-test-signature": "s"})
    assert await _call(gate, signed, _body(b"a=1")) == (200, b"inner")
    assert await _call(gate, _scope(path="/healthz"), _body(b"b=2")) == (200, b"inner")
    assert (handler.bodies, app.bodies) == ([b"a=1"], [b"b=2"])


async def test_other_paths_pass_through_untouched(signed_carrier: SignedMock) -> None:
    inner = Inner()
    status, _ = await _call(WebhookGate(inner), _scope(path="/healthz", method="GET"), _body(b""))
    assert status == 200


async def test_one_peer_cannot_hold_more_than_eight_requests(signed_carrier: SignedMock) -> None:
    inner = Inner()
    inner.hold = True
    gate = WebhookGate(inner)
    scope = _scope(headers={"x-test-signature": "s"})
    held = [asyncio.create_task(_call(gate, scope, _body(b"{}"))) for _ in range(MAX_IN_FLIGHT)]
    await asyncio.sleep(0.01)
    status, body = await _call(gate, scope, _body(b"{}"))
    inner.release.set()
    results = await asyncio.gather(*held)
    assert (status, body) == (429, b"Too Many Requests")
    assert [r[0] for r in results] == [200] * MAX_IN_FLIGHT
    assert (gate.in_flight.total, gate.in_flight.by_peer) == (0, {})


async def test_a_refusal_at_the_gate_is_counted_with_its_status(
    signed_carrier: SignedMock,
) -> None:
    read = sync_to_async(sample)
    before = await read("voicecall_webhooks_total", provider="mock", status="401")
    status, _ = await _call(WebhookGate(Inner()), _scope(), _never)
    assert status == 401
    assert await read("voicecall_webhooks_total", provider="mock", status="401") == before + 1

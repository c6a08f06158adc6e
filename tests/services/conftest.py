"""Fixtures of the service tests: the LLM the automatic replies talk to."""

from __future__ import annotations

import httpx
import pytest

from calls.services import auto_reply_worker
from tests.fakes.llm import FakeLLM


@pytest.fixture
def llm(monkeypatch: pytest.MonkeyPatch) -> FakeLLM:
    """The responder's HTTP client talks to a FakeLLM; its cached clients are dropped."""
    fake = FakeLLM()
    client = httpx.Client(transport=httpx.MockTransport(fake))
    monkeypatch.setattr(auto_reply_worker, "HTTP_CLIENT", client)
    auto_reply_worker._cached_responder.cache_clear()
    return fake

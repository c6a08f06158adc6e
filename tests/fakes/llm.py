"""An OpenAI-compatible chat-completions server for the automatic replies (no network).

Installed by the `llm` fixture (tests/services/conftest.py) as the responder's HTTP client.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx

REPLY = "We are open until six."


class FakeLLM:
    """OpenAI chat completions: records each request, answers `content` (or runs `during`)."""

    def __init__(self) -> None:
        self.content: str | None = json.dumps({"spoken": REPLY})
        self.status = 200
        self.during: Callable[[], None] | None = None  # runs while the model "thinks"
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.during:
            self.during()
        if self.status != 200:
            return httpx.Response(self.status, json={"error": {"message": "overloaded"}})
        return httpx.Response(
            200,
            json={
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": self.content},
                    }
                ],
            },
        )

    def messages(self, index: int = -1) -> list[dict[str, str]]:
        return json.loads(self.requests[index].content)["messages"]

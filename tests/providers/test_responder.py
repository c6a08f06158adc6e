"""The LLM responder client, faked at the OpenAI chat-completions HTTP boundary.

docs/plugin-behaviour.md, "Auto-response".

History is sent as chat turns: the caller's lines as `user` messages, ours as `assistant`
messages in the spoken-output JSON shape; the system prompt carries no transcript.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from providers.errors import ProviderError, ProviderNotConfigured
from providers.responder import (
    SPOKEN_CONTRACT,
    Responder,
    build_system_prompt,
    extract_spoken,
    split_model,
)

Handler = Callable[[httpx.Request], httpx.Response]


def completion(content: str | None) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": content},
                }
            ],
        },
    )


class FakeLLM:
    """An OpenAI-compatible server: records requests, answers with `content` or `respond`."""

    def __init__(self, content: str | None = '{"spoken":"Sure, happy to help."}') -> None:
        self.content = content
        self.respond: Handler | None = None
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.respond(request) if self.respond else completion(self.content)

    def body(self, index: int = -1) -> dict[str, Any]:
        return json.loads(self.requests[index].content)


@pytest.fixture
def llm() -> FakeLLM:
    return FakeLLM()


def responder(
    llm: FakeLLM,
    *,
    model: str = "openai/gpt-4o-mini",
    api_key: str = "sk-test",
    base_url: str | None = None,
) -> Responder:
    return Responder(
        model=model,
        api_key=api_key,
        base_url=base_url,
        timeout_s=5,
        http=httpx.Client(transport=httpx.MockTransport(llm)),
    )


def ask(llm: FakeLLM, **kwargs: Any) -> str:
    return responder(llm, **kwargs).reply(system_prompt="be brief", history=[], utterance="hello?")


# --- the request -------------------------------------------------------------------------


def test_the_request_carries_the_model_prompt_history_turns_and_the_utterance(llm: FakeLLM) -> None:
    history = [
        ("bot", "Hello! How can I help you today?"),
        ("user", "Is the shop open?"),
        ("bot", "Yes, until six."),
    ]
    prompt = build_system_prompt(custom=None, caller="+15550001111", history=history)

    text = responder(llm).reply(system_prompt=prompt, history=history, utterance="And on Sunday?")

    assert text == "Sure, happy to help."
    request = llm.requests[0]
    assert request.method == "POST"
    assert str(request.url) == "https://api.openai.com/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    body = llm.body()
    assert body["model"] == "gpt-4o-mini"
    assert body["messages"] == [
        {"role": "system", "content": prompt},
        {"role": "assistant", "content": '{"spoken": "Hello! How can I help you today?"}'},
        {"role": "user", "content": "Is the shop open?"},
        {"role": "assistant", "content": '{"spoken": "Yes, until six."}'},
        {"role": "user", "content": "And on Sunday?"},
    ]


def test_the_generated_prompt_names_the_caller_and_ends_with_the_spoken_contract() -> None:
    prompt = build_system_prompt(custom=None, caller="+15550001111", history=[])

    assert "voice assistant on a phone call" in prompt
    assert "+15550001111" in prompt
    assert prompt.endswith(SPOKEN_CONTRACT)
    assert '{"spoken":"..."}' in prompt and '{"spoken":""}' in prompt
    assert "conversation so far" not in prompt.lower()


def test_a_custom_prompt_replaces_the_generated_one_but_keeps_the_contract() -> None:
    prompt = build_system_prompt(
        custom="You are Ada, Acme's receptionist.", caller="+15550001111", history=[("user", "hi")]
    )

    assert prompt.startswith("You are Ada, Acme's receptionist.")
    assert "voice assistant on a phone call" not in prompt
    assert "conversation so far" in prompt.lower()
    assert prompt.endswith(SPOKEN_CONTRACT)


def test_a_base_url_is_used_and_any_provider_name_is_accepted_with_it(llm: FakeLLM) -> None:
    ask(llm, model="ollama/llama3.1:8b", base_url="http://127.0.0.1:11434/v1")

    assert str(llm.requests[0].url) == "http://127.0.0.1:11434/v1/chat/completions"
    assert llm.body()["model"] == "llama3.1:8b"


def test_the_model_keeps_everything_after_the_first_slash(llm: FakeLLM) -> None:
    ask(llm, model="openrouter/meta-llama/llama-3.1-8b", base_url="https://llm.example/v1")

    assert llm.body()["model"] == "meta-llama/llama-3.1-8b"


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("openai/gpt-4o-mini", ("openai", "gpt-4o-mini")),
        ("gpt-4o-mini", ("openai", "gpt-4o-mini")),
        ("OpenAI/gpt-4o", ("openai", "gpt-4o")),
    ],
)
def test_split_model(model: str, expected: tuple[str, str]) -> None:
    assert split_model(model) == expected


@pytest.mark.parametrize("model", ["/gpt-4o", "openai/", "anthropic/claude-sonnet"])
def test_an_unusable_model_without_a_base_url_is_refused(llm: FakeLLM, model: str) -> None:
    with pytest.raises(ProviderNotConfigured):
        responder(llm, model=model)


def test_a_missing_api_key_is_refused(llm: FakeLLM) -> None:
    with pytest.raises(ProviderNotConfigured, match="API key"):
        responder(llm, api_key="")


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (503, True), (429, True), (401, False), (400, False)]
)
def test_an_http_error_is_a_provider_error(llm: FakeLLM, status: int, retryable: bool) -> None:
    llm.respond = lambda request: httpx.Response(
        status, json={"error": {"message": "nope", "type": "server_error"}}
    )

    with pytest.raises(ProviderError) as caught:
        ask(llm)

    assert caught.value.retryable is retryable
    assert caught.value.provider_code == str(status)
    assert "nope" in str(caught.value)
    assert len(llm.requests) == 1  # max_retries=0: a late reply is worse than none


def test_a_timeout_is_a_retryable_provider_error(llm: FakeLLM) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    llm.respond = slow

    with pytest.raises(ProviderError, match="timed out") as caught:
        ask(llm)

    assert caught.value.retryable is True


def test_an_unreachable_server_is_a_retryable_provider_error(llm: FakeLLM) -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    llm.respond = refused

    with pytest.raises(ProviderError) as caught:
        ask(llm, base_url="http://127.0.0.1:9/v1")

    assert caught.value.retryable is True


def test_a_reply_without_content_is_silence(llm: FakeLLM) -> None:
    llm.content = None

    assert ask(llm) == ""


def test_the_reply_is_extracted(llm: FakeLLM) -> None:
    llm.content = 'Here you go:\n```json\n{"spoken": "  It is   three\\no\'clock. "}\n```'

    assert ask(llm) == "It is three o'clock."


# --- extraction (docs/plugin-behaviour.md, "Auto-response") ------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the whole text is JSON
        ('{"spoken":"Hello there."}', "Hello there."),
        ('  {"spoken": "Hi!", "mood": "happy"}  ', "Hi!"),
        # an empty spoken string is silence
        ('{"spoken":""}', ""),
        ('{"spoken":"   "}', ""),
        # a fenced json block
        ('Sure.\n```json\n{"spoken": "From the fence."}\n```\nDone.', "From the fence."),
        ('```\n{"spoken": "Untagged fence."}\n```', "Untagged fence."),
        # first { to last }
        ('I will answer now. {"spoken": "Between braces."} Hope that helps.', "Between braces."),
        ('Planning... {"spoken": "Nested {braces} ok."}', "Nested {braces} ok."),
        # the inline "spoken":"…" field when nothing parses as JSON
        ('{"spoken": "Regex wins.", broken json', "Regex wins."),
        ('spoken field: "spoken":"Escaped \\"quote\\" here" trailing', 'Escaped "quote" here'),
        ('{"spoken": "Cut off by the token lim', "Cut off by the token lim"),
        # whitespace collapsed
        ('{"spoken":"  one\\n\\n two\\tthree  "}', "one two three"),
    ],
)
def test_spoken_json_is_found(text: str, expected: str) -> None:
    assert extract_spoken(text) == expected


def test_json_without_a_string_spoken_falls_back_to_the_next_rule() -> None:
    text = '{"speech": "no"} then {"spoken": 3} and finally "spoken": "this one"'

    assert extract_spoken(text) == "this one"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, how can I help?", "Hello, how can I help?"),
        ("  Line one\n  line two  ", "Line one line two"),
        ("First paragraph.\n\nSecond paragraph.", "First paragraph. Second paragraph."),
        # code fences are removed
        ("Sure thing.\n```python\nprint('x')\n```\nAnything else?", "Sure thing. Anything else?"),
        ("", ""),
        ("```\nonly code\n```", ""),
    ],
)
def test_plain_text_is_spoken_as_is(text: str, expected: str) -> None:
    assert extract_spoken(text) == expected


@pytest.mark.parametrize(
    "meta",
    [
        "Thinking Process: the caller greeted me.",
        "Reasoning: they want the hours.",
        "Analysis: a simple question.",
        "The user asked about hours, so I should answer briefly.",
        "The user is greeting me; I need to greet back.",
        "The user wants a table. I will book it.",
        "I'll keep the conversation flowing with a question.",
        "This is a natural continuation of the conversation.",
    ],
)
def test_leading_meta_paragraphs_are_dropped(meta: str) -> None:
    assert extract_spoken(f"{meta}\n\nWe open at nine.") == "We open at nine."


def test_several_leading_meta_paragraphs_are_dropped_but_never_the_last_one() -> None:
    text = "Reasoning: short.\n\nAnalysis: also short.\n\nAnalysis: the only thing left."

    assert extract_spoken(text) == "Analysis: the only thing left."


def test_meta_after_the_answer_is_kept() -> None:
    text = "We open at nine.\n\nReasoning: that is what the sign says."

    assert extract_spoken(text) == "We open at nine. Reasoning: that is what the sign says."


def test_the_user_without_intent_is_not_meta() -> None:
    text = "The user manual is on our website.\n\nAnything else?"

    assert extract_spoken(text) == "The user manual is on our website. Anything else?"


def test_inline_thinking_of_reasoning_models_is_skipped() -> None:
    text = '<think>The caller wants {"spoken": "wrong"} hours.</think>\n{"spoken": "Nine to six."}'

    assert extract_spoken(text) == "Nine to six."
    assert extract_spoken("<think>hmm</think>\n\nWe open at nine.") == "We open at nine."

"""The LLM responder client: an OpenAI-compatible chat model answers the caller.

docs/plugin-behaviour.md, "Auto-response".

No Django here. The service hands in the prompt, the earlier lines and the caller's latest
utterance; `reply` returns the words to speak, "" meaning stay silent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import httpx
import openai
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

from providers.errors import ProviderError, ProviderNotConfigured

if TYPE_CHECKING:
    import httpx2

DEFAULT_PROVIDER = "openai"
# History speakers are the transcript's: "bot" lines are ours, "user" lines the caller's.
BOT = "bot"

SPOKEN_CONTRACT = (
    'Reply only with JSON of the form {"spoken":"..."} holding exactly the words to say aloud '
    "to the caller. No markdown, no code fences, no planning or commentary. If there is "
    'nothing to say, reply {"spoken":""}.'
)
_GENERATED_PROMPT = (
    "You are a helpful voice assistant on a phone call. Keep replies to one or two short, "
    "conversational sentences. Be natural and friendly. The caller's words come from speech "
    "recognition and may contain mistakes. The caller's phone number is {caller}."
)
_HISTORY_NOTE = (
    "The conversation so far follows as chat messages: your earlier lines are the assistant "
    "turns, the caller's are the user turns."
)

_FENCED_JSON = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
_FENCED_ANY = re.compile(r"```.*?```", re.DOTALL)
# An unterminated string is accepted too: a reply cut off by the token limit.
_SPOKEN_FIELD = re.compile(r'"spoken"\s*:\s*"((?:[^"\\]|\\.)*)(?:"|$)', re.DOTALL)
# Reasoning models behind OpenAI-compatible servers inline their thinking; like the plugin's
# reasoning payloads, it is never spoken.
_THINKING = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL | re.IGNORECASE)
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_META_PREFIXES = ("thinking process", "reasoning:", "analysis:")
_META_INTENTS = ("i should", "i need to", "i will")
_META_PHRASES = (
    "keep the conversation flowing",
    "this is a natural continuation of the conversation",
)


class Responder:
    """One chat model behind the official `openai` SDK (any OpenAI-compatible endpoint)."""

    def __init__(
        self,
        *,
        model: str,
        api_key: str,
        base_url: str | None = None,
        timeout_s: float = 30.0,
        http: httpx.Client | None = None,
    ) -> None:
        provider, self.model = split_model(model)
        if provider != DEFAULT_PROVIDER and not base_url:
            raise ProviderNotConfigured(
                f'responseModel provider "{provider}" is not supported: use "openai/<model>" '
                "or set responseBaseUrl to an OpenAI-compatible endpoint"
            )
        if not api_key:
            raise ProviderNotConfigured("responseModel needs an API key (set OPENAI_API_KEY)")
        # Our own httpx client (not the SDK's default) so every HTTP seam is the same one.
        # The SDK annotates http_client as httpx2.Client but accepts a legacy httpx.Client
        # at runtime (openai._httpx2.is_legacy_httpx_sync_client), hence the cast.
        self._client = openai.OpenAI(
            api_key=api_key,
            base_url=base_url or None,
            timeout=timeout_s,
            max_retries=0,
            http_client=cast("httpx2.Client", http or httpx.Client(timeout=timeout_s)),
        )

    def reply(
        self, *, system_prompt: str, history: Sequence[tuple[str, str]], utterance: str
    ) -> str:
        """The words to say to `utterance`; "" = stay silent. Raises ProviderError."""
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": system_prompt},
            *chat_turns(history),
            {"role": "user", "content": utterance},
        ]
        try:
            # The SDK's own client, auth and error mapping, but not `chat.completions.create`:
            # it first walks every message through the SDK's type-driven transform (5–8 ms with
            # 40 earlier lines, on the reply's critical path; docs/performance.md, "Reply
            # latency"), and ours are plain dicts of strings already in wire shape.
            completion = self._client.post(
                "/chat/completions",
                body={"model": self.model, "messages": messages},
                cast_to=ChatCompletion,
                options={"security": {"bearer_auth": True}},
            )
        except openai.OpenAIError as exc:
            raise _provider_error(exc) from exc
        choices = completion.choices or []
        return extract_spoken(choices[0].message.content or "") if choices else ""


def split_model(model: str) -> tuple[str, str]:
    """Split "provider/model" at the first "/"; a bare model name uses openai."""
    provider, slash, name = model.strip().partition("/")
    if not slash:
        return DEFAULT_PROVIDER, provider
    if not provider or not name:
        raise ProviderNotConfigured(f'responseModel "{model}" must be "provider/model" or a model')
    return provider.lower(), name


def chat_turns(history: Sequence[tuple[str, str]]) -> list[ChatCompletionMessageParam]:
    """Transcript lines as chat turns; our lines are shown in the spoken-output JSON shape,
    so the model keeps answering in it."""
    return [
        {"role": "assistant", "content": json.dumps({"spoken": text}, ensure_ascii=False)}
        if speaker == BOT
        else {"role": "user", "content": text}
        for speaker, text in history
    ]


def build_system_prompt(
    *, custom: str | None, caller: str, history: Sequence[tuple[str, str]]
) -> str:
    """responseSystemPrompt or the generated voice prompt, then the spoken-output contract."""
    base = (custom or "").strip() or _GENERATED_PROMPT.format(caller=caller or "unknown")
    parts = [base, _HISTORY_NOTE] if history else [base]
    return "\n\n".join([*parts, SPOKEN_CONTRACT])


def extract_spoken(text: str) -> str:
    """The words to speak from a model reply; "" = silence.

    The plugin's extraction rules (docs/plugin-behaviour.md, "Auto-response").
    """
    text = _THINKING.sub("", text or "")
    spoken = _spoken_from_json(text)
    if spoken is not None:
        return _collapse(spoken)
    return _plain_text(text)


def _spoken_from_json(text: str) -> str | None:
    """A string `spoken` from the whole text, a fenced json block, or the outermost braces;
    else the inline `"spoken":"…"` field; None when there is none."""
    for candidate in _json_candidates(text):
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("spoken"), str):
            return data["spoken"]
    match = _SPOKEN_FIELD.search(text)
    return _unescape(match.group(1)) if match else None


def _json_candidates(text: str) -> list[str]:
    candidates = [text.strip()]
    fenced = _FENCED_JSON.search(text)
    if fenced:
        candidates.append(fenced.group(1).strip())
    first, last = text.find("{"), text.rfind("}")
    if 0 <= first < last:
        candidates.append(text[first : last + 1])
    return candidates


def _unescape(raw: str) -> str:
    try:
        return json.loads(f'"{raw}"')
    except ValueError:
        return raw.replace('\\"', '"')


def _plain_text(text: str) -> str:
    """No JSON: drop code fences and leading planning paragraphs, keep the rest."""
    paragraphs = [p.strip() for p in _PARAGRAPH_BREAK.split(_FENCED_ANY.sub("", text))]
    paragraphs = [p for p in paragraphs if p]
    while len(paragraphs) > 1 and _is_meta(paragraphs[0]):
        paragraphs.pop(0)
    return _collapse(" ".join(paragraphs))


def _is_meta(paragraph: str) -> bool:
    lowered = paragraph.lower()
    if lowered.startswith(_META_PREFIXES):
        return True
    if lowered.startswith("the user ") and any(i in lowered for i in _META_INTENTS):
        return True
    return any(phrase in lowered for phrase in _META_PHRASES)


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _provider_error(exc: openai.OpenAIError) -> ProviderError:
    """SDK errors as ProviderError; timeouts, connection errors, 429 and 5xx are retryable."""
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError("Response generation timed out", retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError(f"Responder unreachable: {exc}", retryable=True)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        return ProviderError(
            f"Responder HTTP {status}: {_message(exc)}",
            retryable=status == 429 or status >= 500,
            provider_code=str(status),
        )
    return ProviderError(f"Responder failed: {exc}")


def _message(exc: openai.APIStatusError) -> str:
    body: Any = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"][:300]
    return str(exc.message)[:300]

"""The gateway's own agent as responder: a signed webhook asked what to say to the caller.

docs/plugin-behaviour.md, "The gateway's agent as responder".

No Django here. The service hands in the request (the call, its transcript, the caller's
latest words); `ask` signs and POSTs it and returns what the agent chose: words to speak
("" = stay quiet) or an action (hang up, transfer). Anything else the gateway answers —
a timeout, a non-2xx status, a body outside the contract — is a ProviderError, so the
call stays up and quiet.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

import httpx

from providers.errors import ProviderError
from providers.text import has_control

SIGNATURE_HEADER = "X-Voicecall-Signature"
TIMESTAMP_HEADER = "X-Voicecall-Timestamp"


class TranscriptLine(TypedDict):
    speaker: str  # "bot" (ours) or "user" (the caller), as in the transcript API
    text: str
    at: str  # ISO 8601, UTC


# The contract's keys; `from` is a Python keyword, hence the functional form.
AgentRequest = TypedDict(
    "AgentRequest",
    {
        "callId": str,
        "direction": str,
        "from": str,
        "to": str,
        "transcript": list[TranscriptLine],
        "latest": str,
    },
)


@dataclass(frozen=True, slots=True)
class AgentAction:
    """What the agent asked for instead of words: hang up, or a cold transfer to `to`."""

    kind: Literal["end", "transfer"]
    to: str | None = None
    message: str | None = None  # said by the carrier before it dials (transfer only)


# Words to speak ("" = stay quiet), or an action.
AgentReply = str | AgentAction


def signature(secret: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of the raw body>`, the X-Voicecall-Signature value."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class AgentWebhook:
    """One gateway endpoint; its httpx client is kept, so replies reuse its connections."""

    def __init__(
        self,
        *,
        url: str,
        secret: str,
        timeout_s: float,
        http: httpx.Client | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self._secret = secret
        self._timeout = httpx.Timeout(timeout_s)
        self._http = http or httpx.Client(timeout=self._timeout)
        self._now = now

    def ask(self, request: AgentRequest) -> AgentReply:
        """POST the signed request; the agent's reply. Raises ProviderError."""
        timestamp = int(self._now())
        # The timestamp rides inside the signed body too: a replayed body cannot be
        # passed off as new by changing the header alone.
        body = json.dumps({**request, "timestamp": timestamp}, ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(self._secret, body),
            TIMESTAMP_HEADER: str(timestamp),
        }
        try:
            # The per-request timeout wins over an injected client's own.
            response = self._http.post(
                self.url, content=body, headers=headers, timeout=self._timeout
            )
        except httpx.TimeoutException as exc:
            raise ProviderError("Agent webhook timed out", retryable=True) from exc
        except httpx.HTTPError as exc:
            raise ProviderError(f"Agent webhook unreachable: {exc}", retryable=True) from exc
        if not response.is_success:
            raise ProviderError(
                f"Agent webhook HTTP {response.status_code}",
                retryable=response.status_code >= 500,
                provider_code=str(response.status_code),
            )
        return parse_reply(response.content)


def parse_reply(raw: bytes) -> AgentReply:
    """The agent's reply, strictly: exactly one of the documented shapes, or ProviderError.

    Strict because a reply we half-understood would be spoken or acted on wrongly: an
    unknown key (a typo, a newer contract) is refused rather than ignored.
    """
    try:
        data: Any = json.loads(raw)
    except ValueError:
        raise _refused("not JSON", raw) from None
    if not isinstance(data, dict):
        raise _refused("not a JSON object", raw)
    if set(data) == {"spoken"}:
        return _spoken(data["spoken"], raw)
    action = data.get("action")
    if action == "end" and set(data) == {"action"}:
        return AgentAction(kind="end")
    if action == "transfer" and {"action", "to"} <= set(data) <= {"action", "to", "message"}:
        return _transfer(data, raw)
    raise _refused("not one of the documented shapes", raw)


def _spoken(value: Any, raw: bytes) -> str:
    if not isinstance(value, str):
        raise _refused('"spoken" is not a string', raw)
    # Text for the transcript and the carrier: PostgreSQL refuses a NUL, no carrier says a
    # control character (docs/security.md).
    if has_control(value, allow_whitespace=True):
        raise _refused('"spoken" contains control characters', raw)
    return " ".join(value.split())


def _transfer(data: dict[str, Any], raw: bytes) -> AgentAction:
    to, message = data["to"], data.get("message")
    if not isinstance(to, str) or not (message is None or isinstance(message, str)):
        raise _refused('"to" and "message" must be strings', raw)
    # The number and the message are checked as an API transfer's are (the service).
    return AgentAction(kind="transfer", to=to, message=message or None)


def _refused(why: str, raw: bytes) -> ProviderError:
    # Its size, not its text: a reply holds words for the caller, and transcripts stay out
    # of the logs (docs/security.md, "Logs").
    return ProviderError(f"Agent webhook reply refused: {why} ({len(raw)} bytes)")

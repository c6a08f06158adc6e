"""The realtime-voice interface the call bridge talks to.

docs/plugin-behaviour.md, "Realtime voice".

A realtime session is one full-duplex speech-to-speech conversation with a vendor model:
caller audio goes in, model speech comes out, both as 8 kHz G.711 μ-law, so the carrier's
media stream can be wired straight through without transcoding.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable
from typing import Any, Protocol


class RealtimeHandler(Protocol):
    """The bridge's side. Plain synchronous callbacks (except on_tool_call), always called
    on the event loop that runs the session, never after RealtimeSession.close()."""

    def on_audio(self, ulaw: bytes, item_id: str, utterance_id: str | None) -> None:
        """Model speech, 8 kHz μ-law, any chunk size (the bridge frames and paces it).

        `item_id` names the model's output item the audio belongs to (what `truncate` takes);
        `utterance_id` is the one given to `say` when this response is saying it, else None.
        """

    def on_audio_done(self, item_id: str) -> None:
        """The item's audio is complete (no more `on_audio` for it)."""

    def on_clear(self) -> None:
        """The caller barged in: drop model audio queued towards the carrier."""

    def on_user_transcript(self, text: str) -> None:
        """A final transcript of one caller utterance."""

    def on_assistant_transcript(self, text: str, item_id: str) -> None:
        """The transcript of one model output item (it may arrive before its audio played)."""

    def on_tool_call(self, name: str, arguments: dict[str, Any]) -> Awaitable[dict[str, Any]]:
        """Run a function tool; the result is sent back to the model as its output."""
        ...

    def on_error(self, message: str) -> None:
        """A vendor error; the session may still be usable (on_closed says when it is not)."""

    def on_closed(self) -> None:
        """The service (or the network) ended the session. Called at most once."""


class RealtimeSession(ABC):
    """One call's conversation with a realtime speech-to-speech service."""

    @abstractmethod
    async def connect(
        self, *, instructions: str, greeting: str | None, tools: list[dict[str, Any]]
    ) -> None:
        """Open the connection and configure the session; with a greeting, ask the model to
        speak the opening turn itself (docs/plugin-behaviour.md, "Realtime voice"). Raises
        ProviderError on failure."""

    @abstractmethod
    async def send_audio(self, ulaw: bytes) -> None:
        """Queue caller audio (8 kHz μ-law); never waits on the network, drops and counts
        frames when the connection is down or not keeping up."""

    @abstractmethod
    async def say(self, text: str, *, utterance_id: str | None = None) -> None:
        """Have the model say `text` to the caller now (voicecall.speak on a realtime call);
        its audio reaches `on_audio` with `utterance_id`. Raises ProviderError when the
        session is not connected."""

    @abstractmethod
    async def truncate(self, item_id: str, played_ms: int) -> None:
        """The caller heard only the first `played_ms` of item `item_id`: cut the model's
        own record of it to that, so its context holds what was heard."""

    @abstractmethod
    async def close(self) -> None:
        """End the session for good: no further callbacks. Safe to call twice."""

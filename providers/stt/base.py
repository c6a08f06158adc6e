"""The realtime speech-to-text interface the media pipeline talks to.

docs/plugin-behaviour.md, "Speech-to-text".
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol


class SttCallbacks(Protocol):
    """Plain synchronous callbacks, always called on the event loop that runs the session."""

    def on_partial(self, text: str) -> None: ...

    def on_final(self, text: str) -> None: ...

    def on_speech_start(self) -> None: ...

    def on_speech_stop(self, silence_ms: int) -> None:
        """The recognizer decided the caller stopped; they did so `silence_ms` ago (the
        silence its VAD waits for before deciding)."""

    def on_error(self, message: str) -> None: ...


class SttSession(ABC):
    """One caller's audio stream to a realtime transcription service."""

    @abstractmethod
    async def connect(self) -> None:
        """Open the service connection; raises providers.errors.ProviderError on failure."""

    @abstractmethod
    async def send_audio(self, ulaw: bytes) -> None:
        """Queue 8 kHz μ-law audio; never waits on the network, drops (and counts) when down."""

    @abstractmethod
    async def close(self) -> None:
        """Stop for good: no reconnects, no further callbacks. Safe to call twice."""

    @property
    @abstractmethod
    def connected(self) -> bool:
        """True while audio sent now would reach the service."""

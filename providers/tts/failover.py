"""TTS failover: each utterance tries the configured providers in order, never silently.

`tts.provider` first, then each id of `tts.fallbacks`. A provider that fails before it
produced any audio hands the utterance to the next one, with the plugin's log line; one that
fails after audio went out is not retried elsewhere (the caller already heard part of it).
When no provider can say it, the utterance fails with `TTS failed: <last error>`, logged
once and counted (docs/plugin-behaviour.md, "TTS failover").
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing

from providers.errors import ProviderError
from providers.tts.base import TtsProvider

logger = logging.getLogger(__name__)

# The plugin's line, word for word (docs/plugin-behaviour.md, "TTS failover").
FALLBACK_LOG = "[voice-call] Telephony TTS fallback used from=%s to=%s attempts=%s"
FAILED_PREFIX = "TTS failed: "


class TtsFailed(ProviderError):
    """An utterance could not be synthesised: every provider failed before any audio, or
    one failed after audio went out. The message is `TTS failed: <last provider's error>`;
    `retryable` and `provider_code` are that error's."""

    def __init__(
        self, cause: ProviderError, *, attempts: Sequence[str], partial_audio: bool = False
    ) -> None:
        super().__init__(
            f"{FAILED_PREFIX}{cause}",
            retryable=cause.retryable,
            provider_code=cause.provider_code,
        )
        self.attempts = tuple(attempts)
        self.partial_audio = partial_audio


class FailoverTts:
    """The telephony TTS of a call: `stream(text)` yields 8 kHz μ-law like a single
    `TtsProvider`, trying `providers` in order for each utterance.

    `failures` counts failed utterances and `fallbacks` the switches to a later provider,
    for callers to report.
    """

    def __init__(self, providers: Sequence[TtsProvider]) -> None:
        if not providers:
            raise ValueError("FailoverTts needs at least one provider")
        self.providers: tuple[TtsProvider, ...] = tuple(providers)
        self.failures = 0
        self.fallbacks = 0
        # Told the name of each provider that failed an utterance, whether a later one
        # then said it or not: for the caller's error counts.
        self.on_provider_error: Callable[[str], object] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(provider.name for provider in self.providers)

    async def stream(self, text: str) -> AsyncGenerator[bytes, None]:
        """μ-law chunks from the first provider that produces audio; TtsFailed otherwise."""
        attempts: list[str] = []
        last: ProviderError | None = None
        for provider in self.providers:
            if last is not None:
                logger.warning(
                    'Telephony TTS provider "%s" failed before any audio: %s', attempts[-1], last
                )
                self.fallbacks += 1
                logger.warning(
                    FALLBACK_LOG,
                    attempts[-1],
                    provider.name,
                    " -> ".join([*attempts, provider.name]),
                )
            attempts.append(provider.name)
            produced = False
            try:
                # aclosing: a caller that stops early (barge-in) ends the provider's HTTP
                # stream now, through the provider's own aclosing.
                async with aclosing(provider.stream(text)) as chunks:
                    async for chunk in chunks:
                        produced = True
                        yield chunk
                return
            except ProviderError as exc:
                if self.on_provider_error is not None:
                    self.on_provider_error(provider.name)
                if produced:
                    raise self._failed(exc, attempts, partial_audio=True) from exc
                last = exc
        assert last is not None  # the loop ran at least once and did not return
        raise self._failed(last, attempts) from last

    def _failed(
        self, cause: ProviderError, attempts: Sequence[str], *, partial_audio: bool = False
    ) -> TtsFailed:
        """Count and log the failed utterance (once), and the error to raise for it."""
        self.failures += 1
        error = TtsFailed(cause, attempts=attempts, partial_audio=partial_audio)
        if partial_audio:
            logger.warning(
                "%s (after audio from %s; not retried on another provider)", error, attempts[-1]
            )
        else:
            logger.warning("%s (attempts=%s)", error, " -> ".join(attempts))
        return error

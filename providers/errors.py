"""Provider-side exceptions: each says whether retrying can help."""

from __future__ import annotations


class ProviderError(Exception):
    """A carrier API call failed; `retryable` says whether trying again can help."""

    def __init__(
        self, message: str, *, retryable: bool = False, provider_code: str | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.provider_code = provider_code


class ProviderNotConfigured(ProviderError):
    pass


class UnknownProvider(ProviderError):
    pass


class ProviderUnavailable(ProviderError):
    def __init__(self, message: str, *, provider_code: str | None = None) -> None:
        super().__init__(message, retryable=True, provider_code=provider_code)


class UnsupportedFeature(ProviderError):
    """The carrier cannot do this (e.g. pre-connect DTMF); refused before anything is dialled."""


class WebhookInvalid(ProviderError):
    """Carrier input we cannot parse; the webhook answers 400."""

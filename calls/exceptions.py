"""Domain errors: the message is the plugin's exact string; code/http_status drive the APIs.

docs/plugin-behaviour.md, "Error strings worth knowing".
"""

from __future__ import annotations


class CallError(Exception):
    """A request the services refused; `str(exc)` is what the user sees."""

    code = "UNAVAILABLE"
    http_status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(CallError):
    code = "INVALID_REQUEST"
    http_status = 400


class CallNotFound(CallError):
    code = "NOT_FOUND"
    http_status = 404

    def __init__(self, message: str = "Call not found") -> None:
        super().__init__(message)


class CallConflict(CallError):
    """The call is in a state where this cannot happen now (ended, busy with a turn)."""

    code = "CONFLICT"
    http_status = 409


class TranscriptTimeout(CallError):
    code = "TIMEOUT"
    http_status = 504


class CapacityReached(CallError):
    code = "UNAVAILABLE"
    http_status = 429


class SpeechFailed(CallError):
    """Words that were not spoken: no stream holds the call, or every TTS provider failed."""

    code = "UNAVAILABLE"
    http_status = 503


class SpeechTimeout(CallError):
    """A waiting `speak` heard nothing back in time; the words may still be playing."""

    code = "TIMEOUT"
    http_status = 504


class CarrierFailed(CallError):
    """The carrier API refused or failed; nothing was finalized unless the docs say so."""

    code = "UNAVAILABLE"
    http_status = 502


class ServiceDisabled(CallError):
    """`enabled: false`: the service places and drives no calls (docs/plugin-behaviour.md,
    "Disabled (`enabled: false`)")."""

    code = "UNAVAILABLE"
    http_status = 503
    MESSAGE = "Voice call disabled in plugin config"

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)


class MetricsUnavailable(CallError):
    """`/metrics` cannot be read (its multiprocess directory is missing): a 503 naming why."""

    code = "UNAVAILABLE"
    http_status = 503

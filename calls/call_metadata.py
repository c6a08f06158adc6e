"""What a call's `metadata` JSON may hold: one typed definition and one constant per key.

Metadata is for facts nobody queries by (they would be columns): what the call still owes
(its greeting, its pre-connect digits, speech waiting for a carrier fetch or for the carrier
to report it said), why it ended the way it did, and per-turn figures the status output
shows. Keys are camelCase, as in the plugin's call records and our JSON output.
"""

from __future__ import annotations

from typing import Final, Literal, NotRequired, TypedDict


class PendingSpeech(TypedDict):
    """Words waiting for the carrier to fetch a document (Plivo XML transfer)."""

    text: str
    listen: bool
    turnToken: str | None
    utteranceId: NotRequired[str]
    afterBeep: NotRequired[bool]


class UtteranceInFlight(TypedDict):
    """Words handed to the carrier whose completion it has not reported yet.

    The bot line is written when it does (docs/carriers.md, "What each carrier tells us
    about speech"); `hangUp`: the notify message, whose completion schedules the hang-up.
    """

    id: str
    text: str
    hangUp: NotRequired[bool]


class TransferRecord(TypedDict):
    """Where a cold transfer sends the call and what it says first; written before the
    carrier is asked, so its document fetch (Plivo) can be answered by any process."""

    to: str
    message: NotRequired[str]


class TurnAnswer(TypedDict):
    """The caller's own words answering a waiting `continue`, when the stored line was
    redacted; the waiter takes them and deletes them (docs/architecture.md, "Retention and
    redaction")."""

    turnToken: str
    text: str


class CallMetadata(TypedDict, total=False):
    # Asked for when the call was placed or arrived.
    mode: str
    # Owed to the call: the greeting or notify message not yet said, whether the carrier got
    # it with the dial (and says it itself), digits to send on answer, words awaiting a fetch.
    initialMessage: str
    initialMessageInline: bool
    dtmfSequence: str
    pendingSpeech: PendingSpeech
    # Carrier speech said but not yet reported finished, oldest first.
    utterancesInFlight: list[UtteranceInFlight]
    turnAnswer: TurnAnswer
    # What happened: carrier errors, a refused stream, a refused inbound caller.
    error: str
    dtmfError: str
    streamFailed: bool
    endReason: str
    rejectionReason: str
    transfer: TransferRecord
    screen: str
    hungUp: bool
    external: bool
    # Answering-machine detection asked for at the dial (`outbound.machineDetection`), and
    # the message to leave on a machine where it may have to be said again (Plivo).
    machineDetection: str
    voicemailMessage: str
    # The dialled number's route (config `numbers`), chosen once on arrival.
    numberRouteKey: str
    # Realtime calls with `realtime.idleHangupMs`: when (epoch ms) the call is hung up if
    # the caller says nothing before; a number, so the sweep can compare it in SQL.
    idleHangupAt: int
    # Turn figures shown by `status` and summarised by `latency`.
    turnCount: int
    lastTurnLatencyMs: int
    lastTurnListenWaitMs: int
    lastTurnCompletedAt: str
    lastAutoReplyLatencyMs: int


MetadataKey = Literal[
    "mode",
    "initialMessage",
    "initialMessageInline",
    "dtmfSequence",
    "pendingSpeech",
    "utterancesInFlight",
    "turnAnswer",
    "error",
    "dtmfError",
    "streamFailed",
    "endReason",
    "rejectionReason",
    "transfer",
    "screen",
    "hungUp",
    "external",
    "machineDetection",
    "voicemailMessage",
    "numberRouteKey",
    "idleHangupAt",
    "turnCount",
    "lastTurnLatencyMs",
    "lastTurnListenWaitMs",
    "lastTurnCompletedAt",
    "lastAutoReplyLatencyMs",
]

MODE: Final = "mode"
INITIAL_MESSAGE: Final = "initialMessage"
INITIAL_MESSAGE_INLINE: Final = "initialMessageInline"
DTMF_SEQUENCE: Final = "dtmfSequence"
PENDING_SPEECH: Final = "pendingSpeech"
UTTERANCES_IN_FLIGHT: Final = "utterancesInFlight"
TURN_ANSWER: Final = "turnAnswer"
ERROR: Final = "error"
DTMF_ERROR: Final = "dtmfError"
STREAM_FAILED: Final = "streamFailed"
END_REASON: Final = "endReason"
TRANSFER: Final = "transfer"
REJECTION_REASON: Final = "rejectionReason"
SCREEN: Final = "screen"
HUNG_UP: Final = "hungUp"
EXTERNAL: Final = "external"
MACHINE_DETECTION: Final = "machineDetection"
VOICEMAIL_MESSAGE: Final = "voicemailMessage"
ROUTE_KEY: Final = "numberRouteKey"
IDLE_HANGUP_AT: Final = "idleHangupAt"
TURN_COUNT: Final = "turnCount"
LAST_TURN_LATENCY_MS: Final = "lastTurnLatencyMs"
LAST_TURN_LISTEN_WAIT_MS: Final = "lastTurnListenWaitMs"
LAST_TURN_COMPLETED_AT: Final = "lastTurnCompletedAt"
LAST_AUTO_REPLY_LATENCY_MS: Final = "lastAutoReplyLatencyMs"

# A rejected inbound caller's rejectionReason.
INBOUND_POLICY: Final = "inbound-policy"

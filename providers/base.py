"""The carrier interface and the neutral value types that cross it (no Django here)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from providers.errors import ProviderError, WebhookInvalid
from providers.text import clean_text, has_control


class EventType(StrEnum):
    """The plugin's normalized event types (docs/plugin-behaviour.md, "Normalized events")."""

    INITIATED = "call.initiated"
    RINGING = "call.ringing"
    ANSWERED = "call.answered"
    ACTIVE = "call.active"
    SPEAKING = "call.speaking"
    SPEECH = "call.speech"
    SILENCE = "call.silence"
    DTMF = "call.dtmf"
    ENDED = "call.ended"
    ERROR = "call.error"
    # Ours, not the plugin's: the carrier finished saying an utterance of carrier speech
    # (no stream), or it was cut off (docs/carriers.md, "What each carrier tells us about
    # speech").
    SPOKEN = "call.spoken"
    # Ours: the carrier's answering-machine detection reached a verdict, or (on carriers
    # that can tell) the machine's greeting ended (docs/carriers.md, "Answering-machine
    # detection").
    MACHINE_DETECTION = "call.machine_detection"


class AnsweredBy(StrEnum):
    """Who answered an outbound call, in our words; each carrier's verdicts map to these."""

    HUMAN = "human"
    MACHINE = "machine"
    FAX = "fax"
    UNKNOWN = "unknown"


class MachineDetection(StrEnum):
    """`outbound.machineDetection`: what the carrier is asked to detect, and what we do."""

    OFF = "off"
    DETECT = "detect"
    HANGUP = "hangup"
    LEAVE_MESSAGE = "leaveMessage"


@dataclass(frozen=True, slots=True)
class NormalizedEvent:
    """One carrier event in our vocabulary; `call_id` is ours when the carrier echoed it back."""

    type: EventType
    id: str
    call_id: str | None = None
    provider_call_id: str | None = None
    timestamp: datetime | None = None
    dedupe_key: str | None = None
    turn_token: str | None = None
    direction: str | None = None  # "inbound" | "outbound" | None
    from_number: str | None = None
    to_number: str | None = None
    transcript: str = ""
    is_final: bool = True
    confidence: float | None = None
    text: str = ""
    digits: str = ""
    reason: str = "completed"
    error: str = ""
    retryable: bool = False
    # call.spoken: the utterance the carrier finished (None when it could not say which),
    # and whether it ended before the words did (the caller hung up, say).
    utterance_id: str | None = None
    interrupted: bool = False
    # Speech only, when a stream's recognizer told us: when the caller stopped talking and
    # when its VAD decided they had (turn records; docs/voice-path.md, "Turns").
    speech_stopped_at: datetime | None = None
    endpointed_at: datetime | None = None
    # call.machine_detection: the verdict (an AnsweredBy value), how long the carrier took
    # when it says so, and whether the machine's greeting has ended (the beep) with it.
    answered_by: str | None = None
    detection_ms: int | None = None
    greeting_ended: bool = False

    @property
    def key(self) -> str:
        return self.dedupe_key or self.id

    def payload(self) -> dict[str, Any]:
        """The JSON stored on the CallEvent row (only fields that carry information)."""
        data: dict[str, Any] = {}
        # camelCase keys, as everywhere in the API (the plugin's style).
        for name, key in (
            ("direction", "direction"),
            ("turn_token", "turnToken"),
            ("text", "text"),
            ("digits", "digits"),
        ):
            if getattr(self, name):
                data[key] = getattr(self, name)
        if self.type == EventType.SPEECH:
            data.update(transcript=self.transcript, isFinal=self.is_final)
            if self.confidence is not None:
                data["confidence"] = self.confidence
        if self.type == EventType.ENDED:
            data["reason"] = self.reason
        if self.type == EventType.ERROR:
            data.update(error=self.error, retryable=self.retryable)
        if self.type == EventType.SPOKEN:
            data.update(utteranceId=self.utterance_id, interrupted=self.interrupted)
        if self.type == EventType.MACHINE_DETECTION:
            data.update(answeredBy=self.answered_by, greetingEnded=self.greeting_ended)
            if self.detection_ms is not None:
                data["machineDetectionMs"] = self.detection_ms
        return data


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """What the carrier sent, stripped of Django, so adapters test without a request factory."""

    method: str
    url: str  # as received by this server (scheme://host[:port]/path?query)
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    remote_addr: str | None = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def query_value(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    reason: str = ""
    request_key: str | None = None  # the replay identity of a verified request


@dataclass(frozen=True, slots=True)
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain"


@dataclass(frozen=True, slots=True)
class Speech:
    """Words to say in a webhook reply (TwiML/XML carriers), optionally listening afterwards."""

    text: str | None
    listen: bool = False
    turn_token: str | None = None
    language: str | None = None
    # The voice for these words when the call has its own (a per-number route); else the
    # adapter's configured one.
    voice: str | None = None
    # The `speak` utterance these words are: the document reports when they were said
    # (a <Redirect> to our webhook after them) on carriers with `speech_done_signal`.
    utterance_id: str | None = None
    # A message left on an answering machine whose carrier cannot report the end of the
    # greeting: the document waits for the beep first where it can (Plivo <Wait beep>).
    after_beep: bool = False


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """Connect the call's audio to our media-stream endpoint with this per-call token."""

    url: str
    token: str


@dataclass(frozen=True, slots=True)
class Transfer:
    """Hand a live call to another number (cold transfer): say `message`, then dial `to_number`.

    `caller_id`: the number the transfer target sees (ours on the call), when it is E.164.
    `streaming`: a media stream holds the call; a carrier whose streams outlive the
    transfer (Telnyx, Plivo) stops it, so the caller's talk with the new party never
    reaches us (docs/carriers.md, "Cold transfer").
    """

    to_number: str
    message: str | None = None
    caller_id: str | None = None
    language: str | None = None
    streaming: bool = False


@dataclass(frozen=True, slots=True)
class ReplyContext:
    """What the services decided about a webhook, for the adapter to render its reply."""

    replay: bool = False
    call_id: str | None = None
    mode: str | None = None
    direction: str | None = None
    state: str | None = None
    known: bool = False  # the webhook belongs to a call we track
    rejected: bool = False
    accepted_inbound: bool = False
    # Set when the services chose to answer this very request with speech instead of a
    # separate REST command (avoids racing the carrier's own fetch; reference 21220).
    speech: Speech | None = None
    # Set when the reply should connect the call's audio to our media stream.
    stream: StreamPlan | None = None
    # Set when the caller should wait in the carrier's call-waiting queue (line busy).
    hold: bool = False
    # Set when a notify call's message was just heard: the reply pauses this many seconds
    # (notifyHangupDelaySec), then hangs up.
    hang_up_after: int | None = None
    # Set when this request is the carrier fetching the document of a cold transfer
    # (Plivo): the reply says the message and dials the new party.
    transfer: Transfer | None = None
    events: tuple[NormalizedEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class PlaceCall:
    call_id: str
    to_number: str
    from_number: str
    webhook_url: str
    mode: str
    message: str | None = None
    dtmf_sequence: str | None = None
    ring_timeout_s: int = 30
    voice: str | None = None
    language: str | None = None
    # The utterance id of `message` when a carrier that delivers it with the dial (Twilio
    # inline TwiML) should report when it was said (`speech_done_signal`).
    message_utterance_id: str | None = None
    # Set when the call should stream; carriers that start streams with the dial request
    # (Telnyx) send it there, the others connect the stream from their answer document.
    stream: StreamPlan | None = None
    # Answering-machine detection to ask the carrier for (docs/carriers.md,
    # "Answering-machine detection").
    machine_detection: MachineDetection = MachineDetection.OFF


@dataclass(frozen=True, slots=True)
class PlaceCallResult:
    provider_call_id: str
    status: str = "initiated"
    # True when the carrier got the notify message with the dial request itself (Twilio
    # inline TwiML): it must not be spoken again on answer.
    message_delivered: bool = False
    # True when the pre-connect DTMF went with the dial request (Twilio <Play digits>);
    # otherwise the services send it with send_dtmf as soon as the call is answered.
    dtmf_delivered: bool = False


@dataclass(frozen=True, slots=True)
class CallStatus:
    """A carrier's answer to "how is this call?" used by restart restore.

    docs/plugin-behaviour.md, "Restore after restart".
    """

    status: str
    is_terminal: bool
    is_unknown: bool = False
    end_reason: str | None = None
    detail: str = ""  # why the status is unknown

    @classmethod
    def unknown(cls, error: Exception) -> CallStatus:
        """The carrier could not be asked. Restore keeps the call and lets its timers
        decide, and says so once for all calls (docs/plugin-behaviour.md, "Restore after
        restart"), so the adapters do not log each one."""
        return cls("error", is_terminal=False, is_unknown=True, detail=str(error))


@dataclass(frozen=True, slots=True)
class CallTarget:
    """Everything an in-call command needs to address one live call."""

    call_id: str
    provider_call_id: str
    webhook_url: str = ""
    turn_token: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    # The stream `start_stream` connects (carriers that start streams by command), or the
    # one `send_dtmf` reconnects after the digits (dtmf_replaces_stream).
    stream: StreamPlan | None = None
    # Stable across retries of one owed command: a carrier that dedupes commands by an id
    # (Telnyx command_id) runs a command sent again after a crash only once.
    command_key: str | None = None
    # The `speak` utterance `play_text` says, for the carrier to name when it finished.
    utterance_id: str | None = None


class TelephonyProvider(ABC):
    """One carrier account. Stateless between calls: durable state lives in the database."""

    name: str = ""
    supports_preconnect_dtmf: bool = False
    #: A rejected inbound call is refused by the webhook reply itself (TwiML <Reject/>),
    #: so no REST hang-up is needed.
    rejects_in_reply: bool = False
    #: play_text makes the carrier fetch a document for the words (Plivo XML transfer);
    #: the services keep the words on the call row until that fetch arrives.
    speech_by_fetch: bool = False
    #: The carrier can park a caller in a call-waiting queue (Twilio <Enqueue>) and bring
    #: them back with `resume`.
    call_waiting: bool = False
    #: send_dtmf replaces the live document and so ends an attached stream (Twilio): the
    #: services pass the stream to reconnect after the digits as `target.stream`. The others
    #: send DTMF out of band and the stream stays.
    dtmf_replaces_stream: bool = False
    #: The carrier tells us when its own speech (play_text, speech in a reply, a dial-time
    #: message) finished, as `call.spoken` events naming the utterance; the services then
    #: write the bot line. Without it the line is written when the words are sent.
    speech_done_signal: bool = False
    #: Speech commands queue and play in the order sent (Telnyx speak): each completion
    #: finishes the oldest utterance in flight. Otherwise newer words replace the running
    #: document (Twilio, Plivo) and cut older ones off.
    speech_in_order: bool = False
    #: Answering-machine detection always ends in a verdict, human ones included (Twilio
    #: AnsweredBy, Telnyx call.machine.detection.ended), so a greeting may wait for it.
    #: Plivo documents its callback only for machines: its calls never wait.
    machine_verdict_always: bool = False
    #: A carrier that may report no verdict for a person (Plivo) holds a greeting at most
    #: this long after the answer; None: never held unless `machine_verdict_always`.
    machine_verdict_deadline_s: float | None = None
    #: The carrier reports the end of a machine's greeting (the beep) with or after its
    #: verdict; without it a left message waits for the beep in its own document.
    machine_greeting_end: bool = False
    #: Headers whose absence fails the pre-auth gate with 401 before the body is read.
    signature_headers: tuple[tuple[str, ...], ...] = ()

    @abstractmethod
    def place_call(self, request: PlaceCall) -> PlaceCallResult:
        """Dial; returns the carrier's call id. May do network I/O; never retries."""

    @abstractmethod
    def hang_up(self, target: CallTarget) -> None:
        """End the call at the carrier; an already-gone call is not an error."""

    @abstractmethod
    def play_text(self, target: CallTarget, text: str, *, listen_after: bool) -> None:
        """Speak text into the live call, optionally listening afterwards."""

    @abstractmethod
    def start_listening(self, target: CallTarget) -> None:
        """Ask the carrier to capture the caller's next utterance."""

    def stop_listening(self, target: CallTarget) -> None:
        """Stop capturing speech; most carriers stop on their own."""

    @abstractmethod
    def send_dtmf(self, target: CallTarget, digits: str) -> None:
        """Play DTMF digits into the live call (then connect `target.stream`, if set)."""

    def transfer(self, target: CallTarget, transfer: Transfer) -> None:
        """Cold-transfer the live call: the carrier says the message and dials the new party.

        Returns once the carrier accepted it; raises ProviderError when it refused. May do
        network I/O; never retries.
        """
        raise ProviderError(f"{self.name} cannot transfer calls")

    def transfer_fetch_call_id(self, request: WebhookRequest) -> str | None:
        """Our callId when this webhook fetches a cold transfer's document (Plivo)."""
        return None

    def can_speak_in_reply(self, request: WebhookRequest) -> bool:
        """True when this webhook's reply can carry speech (a TwiML/XML document fetch)."""
        return False

    def fetch_call_id(self, request: WebhookRequest) -> str | None:
        """Our callId when this webhook is the carrier fetching a document for a live call."""
        return None

    def answer_call(self, target: CallTarget) -> None:
        """Answer an accepted inbound call where the carrier needs an explicit command."""

    def start_stream(self, target: CallTarget) -> None:
        """Connect an answered call's audio to `target.stream` by command.

        Only for carriers whose answer command cannot carry the stream token (Telnyx); the
        others start streams from a reply document or the dial request and do nothing here.
        """

    @abstractmethod
    def get_call_status(self, provider_call_id: str) -> CallStatus:
        """Ask the carrier how the call is; network failures give is_unknown=True."""

    @abstractmethod
    def verify_webhook(self, request: WebhookRequest) -> VerifyResult:
        """Check the carrier's signature; a success carries the request's replay key."""

    def parse_webhook(self, request: WebhookRequest) -> list[NormalizedEvent]:
        """Normalized events of a verified webhook, control characters handled; WebhookInvalid.

        Every carrier goes through this one door (providers/text.py), so no carrier can hand
        the services a NUL byte or a lone surrogate.
        """
        return [_clean_event(event) for event in self.parse_events(request)]

    @abstractmethod
    def parse_events(self, request: WebhookRequest) -> list[NormalizedEvent]:
        """The carrier's own parsing of a verified webhook; raises WebhookInvalid on bad input."""

    @abstractmethod
    def render_reply(self, request: WebhookRequest, context: ReplyContext) -> Reply:
        """The HTTP reply the carrier expects for this webhook."""

    def explain_webhook(self, request: WebhookRequest) -> dict[str, Any]:
        """What verification sees for a captured request (webhook-debug); never a secret."""
        result = self.verify_webhook(request)
        return {"ok": result.ok, "reason": result.reason}

    def media_codec(self) -> Any:
        """A new codec for one media stream of this carrier (providers.media.MediaCodec),
        or None when the carrier does not stream audio to us."""
        return None

    def resume(self, target: CallTarget) -> None:
        """Bring a parked caller back to our webhook (their next fetch gets the stream)."""
        raise NotImplementedError(f"{self.name} has no call-waiting queue")

    def hold_music(self) -> Reply | None:
        """The wait document of a call-waiting queue; None when the carrier has none."""
        return None

    def readiness(self) -> list[tuple[str, bool, str]]:
        """Carrier-specific `voicecall setup` checks as (id, ok, message)."""
        return []

    def close(self) -> None:
        """Release HTTP clients and background work."""


# Identifiers and keys: one control character makes the whole event bad input (400).
_IDENTIFIER_FIELDS = (
    "id",
    "call_id",
    "provider_call_id",
    "dedupe_key",
    "turn_token",
    "utterance_id",
    "direction",
    "digits",
    "reason",
    "answered_by",
)
# Words: controls become spaces and whitespace collapses, as a listener would hear them.
_TEXT_FIELDS = ("transcript", "text", "error", "from_number", "to_number")


def _clean_event(event: NormalizedEvent) -> NormalizedEvent:
    """The event with clean text; WebhookInvalid when an identifier holds a control."""
    for name in _IDENTIFIER_FIELDS:
        value = getattr(event, name)
        if isinstance(value, str) and has_control(value):
            raise WebhookInvalid(f"control character in {name}")
    changes: dict[str, Any] = {}
    for name in _TEXT_FIELDS:
        value = getattr(event, name)
        if isinstance(value, str) and (cleaned := clean_text(value)) != value:
            changes[name] = cleaned
    return replace(event, **changes) if changes else event

"""Persistent call history, inbound policy and replay keys: data and row-local facts.

docs/design.md, "5. Data model".
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import cast

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from calls.call_metadata import CallMetadata
from calls.phone import E164_RE, mask_number
from calls.state import NON_TERMINAL, TERMINAL, CallState


class CallQuerySet(models.QuerySet["Call"]):
    def active(self) -> CallQuerySet:
        return self.filter(state__in=NON_TERMINAL)

    def finished(self) -> CallQuerySet:
        return self.filter(state__in=TERMINAL)


class Call(models.Model):
    class Direction(models.TextChoices):
        OUTBOUND = "outbound"
        INBOUND = "inbound"

    class Mode(models.TextChoices):
        NOTIFY = "notify"
        CONVERSATION = "conversation"

    # The Enum functional API (name, members) is valid at runtime, but django-stubs only types
    # the member-constructor overloads of TextChoices(...).
    State = models.TextChoices(  # type: ignore[call-overload]
        "State", [(s.name, s.value) for s in CallState]
    )

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    provider = models.CharField(max_length=20)
    provider_call_id = models.CharField(max_length=128, null=True, blank=True)
    direction = models.CharField(max_length=10, choices=Direction.choices)
    mode = models.CharField(max_length=14, choices=Mode.choices)
    state = models.CharField(max_length=12, choices=State.choices, default="initiated")
    from_number = models.CharField(max_length=32, blank=True)
    to_number = models.CharField(max_length=32, blank=True)
    session_key = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=12, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # The webhook URL handed to the carrier for this call, kept durably so that a
    # restarted process can still build <Say>/<Gather> callbacks (a plugin bug:
    # docs/plugin-behaviour.md, "Restore after restart").
    webhook_url = models.CharField(max_length=500, blank=True)
    # The current explicit turn: set while a `continue` waits for a transcript.
    turn_token = models.CharField(max_length=64, null=True, blank=True)
    turn_started_at = models.DateTimeField(null=True, blank=True)
    # Who holds the turn, for how long: a waiting `continue` renews a short lease while it
    # polls, so a process killed mid-turn frees it within seconds; a background operation
    # holds it to its deadline (docs/architecture.md, "Turns").
    turn_lease_until = models.DateTimeField(null=True, blank=True)
    # Durable deadlines enforced by the timer sweep
    # (docs/architecture.md, "Timers and the sweep").
    max_duration_at = models.DateTimeField(null=True, blank=True)
    ring_deadline_at = models.DateTimeField(null=True, blank=True)
    notify_hangup_at = models.DateTimeField(null=True, blank=True)
    transcript_deadline_at = models.DateTimeField(null=True, blank=True)
    # Set while one process owns the carrier hang-up, so concurrent ends share it.
    hangup_claimed_at = models.DateTimeField(null=True, blank=True)
    # Media stream: the per-call token the carrier presents (we put it in the stream
    # document), the stream currently attached, and the deadline after a disconnect
    # by which a reconnect must come before the call is ended (docs/plugin-behaviour.md,
    # "Playback on a stream").
    stream_token = models.CharField(max_length=64, blank=True)
    stream_id = models.CharField(max_length=128, blank=True)
    stream_lost_at = models.DateTimeField(null=True, blank=True)
    # An inbound caller parked in the carrier's call-waiting queue because another call's
    # stream held the line; the sweep brings them back when the line is free.
    waiting = models.BooleanField(default=False, db_index=True)
    # Answering-machine detection (config `outbound.machineDetection`): the carrier's
    # verdict (human, machine, fax, unknown) and how long it took to reach it.
    answered_by = models.CharField(max_length=8, blank=True)
    machine_detection_ms = models.PositiveIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CallQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "provider_call_id"],
                condition=Q(provider_call_id__isnull=False),
                name="uniq_provider_call_id",
            )
        ]
        indexes = [
            models.Index(fields=["state"]),
            models.Index(fields=["max_duration_at"]),
            models.Index(fields=["notify_hangup_at"]),
            models.Index(fields=["ring_deadline_at"]),
            models.Index(fields=["transcript_deadline_at"]),
        ]
        # The admin masks phone numbers for everyone else (docs/security.md, "Admin").
        permissions = [("view_numbers", "Can see full phone numbers")]

    def __str__(self) -> str:
        return str(self.public_id)

    @property
    def call_id(self) -> str:
        return str(self.public_id)

    @property
    def meta(self) -> CallMetadata:
        """The metadata as its typed definition (calls/call_metadata.py)."""
        return cast(CallMetadata, self.metadata or {})

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def duration(self) -> timedelta | None:
        if not self.answered_at:
            return None
        return (self.ended_at or timezone.now()) - self.answered_at


class CallEvent(models.Model):
    """A normalized event applied to a call; the dedupe key makes re-delivery a no-op."""

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=40)
    payload = models.JSONField(default=dict, blank=True)
    dedupe_key = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["call", "dedupe_key"], name="uniq_call_event_dedupe")
        ]

    def __str__(self) -> str:
        return f"{self.type} ({self.dedupe_key})"


class TranscriptEntry(models.Model):
    class Speaker(models.TextChoices):
        BOT = "bot"
        USER = "user"

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="transcript")
    speaker = models.CharField(max_length=4, choices=Speaker.choices)
    text = models.TextField()
    is_final = models.BooleanField(default=True)
    # The explicit turn this user line answered, if any (lets a waiting `continue`
    # on another process find its transcript).
    turn_token = models.CharField(max_length=64, null=True, blank=True)
    # A bot line the caller cut off: `text` holds only what was played before the barge-in,
    # cut at a word boundary (docs/voice-path.md).
    interrupted = models.BooleanField(default=False)
    # The `speak` utterance this bot line reports, so `wait` and the record agree.
    utterance_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name_plural = "transcript entries"

    def __str__(self) -> str:
        return f"{self.speaker}: {self.text[:40]}"


class Turn(models.Model):
    """One exchange of a call, with when each of its stages happened (docs/voice-path.md,
    "Turns"). Written as the stages happen; a later turn never rewrites an earlier one.

    A caller turn starts with the caller's words and ends with the bot's reply heard; a bot
    turn (a `continue` prompt) starts with our words and ends with the caller's answer.
    """

    class Initiator(models.TextChoices):
        CALLER = "caller"
        BOT = "bot"

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="turns")
    index = models.PositiveIntegerField()
    initiator = models.CharField(max_length=6, choices=Initiator.choices)
    # The caller's line that opened a caller turn (the responder answers it).
    caller_entry = models.ForeignKey(
        "TranscriptEntry", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The `speak` utterance that is the bot's side of this turn (links playback to it).
    reply_utterance_id = models.CharField(max_length=64, blank=True, db_index=True)
    caller_stopped_at = models.DateTimeField(null=True, blank=True)
    endpointed_at = models.DateTimeField(null=True, blank=True)
    transcript_at = models.DateTimeField(null=True, blank=True)
    reply_ready_at = models.DateTimeField(null=True, blank=True)
    first_audio_at = models.DateTimeField(null=True, blank=True)
    heard_at = models.DateTimeField(null=True, blank=True)
    interrupted = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["call", "index"]
        constraints = [models.UniqueConstraint(fields=["call", "index"], name="turn_index")]

    def __str__(self) -> str:
        return f"turn {self.index} ({self.initiator})"


class InboundPolicy(models.Model):
    """The admin's inbound policy and greeting; a single row. Blank = use the config."""

    class Policy(models.TextChoices):
        DISABLED = "disabled"
        ALLOWLIST = "allowlist"
        PAIRING = "pairing"
        OPEN = "open"

    policy = models.CharField(max_length=10, choices=Policy.choices, blank=True)
    greeting = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "inbound policy"
        verbose_name_plural = "inbound policy"

    def __str__(self) -> str:
        return f"Inbound policy: {self.policy or 'from config'}"


def validate_e164(value: str) -> None:
    if not E164_RE.match(value or ""):
        raise ValidationError("Expected E.164 format, e.g. +15550001234")


class AllowedNumber(models.Model):
    class Source(models.TextChoices):
        CONFIG = "config"
        ADMIN = "admin"

    number = models.CharField(max_length=16, validators=[validate_e164])
    label = models.CharField(max_length=100, blank=True)
    note = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    source = models.CharField(max_length=6, choices=Source.choices, default=Source.ADMIN)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["source", "number"]
        constraints = [
            models.UniqueConstraint(fields=["number", "source"], name="uniq_allowed_number")
        ]

    def __str__(self) -> str:
        # Masked: the admin shows this in titles, breadcrumbs and its action log to anyone
        # who may view the list (docs/security.md, "Admin").
        return f"{mask_number(self.number)} {self.label}".strip()

    def clean(self) -> None:
        self.number = (self.number or "").strip()
        validate_e164(self.number)


class ReplayKey(models.Model):
    """A verified webhook identity; its unique key recognises re-deliveries on any process."""

    key = models.CharField(max_length=200, unique=True)
    provider = models.CharField(max_length=20)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)
    # The first delivery's reply, repeated to a re-delivery: a carrier re-sends a fetch
    # when our answer never reached it, and an empty document would hang the call up.
    reply_status = models.PositiveSmallIntegerField(null=True, blank=True)
    reply_body = models.BinaryField(null=True, blank=True)
    reply_content_type = models.CharField(max_length=60, blank=True)

    def __str__(self) -> str:
        return self.key


class ApiToken(models.Model):
    """A bearer token for /api/; only its SHA-256 is stored."""

    name = models.CharField(max_length=100)
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_usable(self) -> bool:
        now = timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class ServiceLock(models.Model):
    """A named row to lock with SELECT … FOR UPDATE (admission control across processes)."""

    name = models.CharField(max_length=50, primary_key=True)

    def __str__(self) -> str:
        return self.name


class ContinueOperation(models.Model):
    """A background `continue` (voicecall.continue.start/result), durable across processes.

    Whichever process applies the caller's answer settles it (the transcript line carries
    its turn token), and the sweep fails it at its deadline or when the call ends; no
    thread holds its outcome, so a crash loses nothing.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        DONE = "done"
        FAILED = "failed"

    operation_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="operations")
    message = models.TextField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    result = models.JSONField(default=dict, blank=True)
    turn_token = models.CharField(max_length=64, blank=True, db_index=True)
    deadline_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "deadline_at"])]

    def __str__(self) -> str:
        return str(self.operation_id)


class CarrierCommand(models.Model):
    """A carrier REST command owed by an applied event: the outbox (docs/architecture.md).

    Written in the same transaction as the event that needs it, sent after that commits,
    and retried by the sweep until it is done or given up, so a crash between applying an
    event and telling the carrier loses nothing. One row per (call, kind): an event applied
    again can't owe the command twice.
    """

    class Kind(models.TextChoices):
        ANSWER = "answer"
        REJECT_HANG_UP = "reject.hangup"
        PRECONNECT_DTMF = "dtmf.preconnect"
        STREAM_START = "stream.start"
        GREETING = "greeting"

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="commands")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # Stable across retries; carriers that dedupe commands (Telnyx command_id) use it.
    key = models.UUIDField(default=uuid.uuid4, editable=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    due_at = models.DateTimeField(default=timezone.now)
    # Set while one process sends it; an expired lease means that process died.
    lease_until = models.DateTimeField(null=True, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["call", "kind"], name="uniq_call_command_kind")
        ]
        indexes = [models.Index(fields=["done_at", "failed_at", "due_at"])]

    def __str__(self) -> str:
        return f"{self.kind} ({self.call_id})"


class StreamLease(models.Model):
    """One open media-stream socket, counted against `streaming.maxConnections` across every
    process sharing the database (calls/services/stream_leases.py).

    The process holding the socket renews `expires_at` while it lives and deletes the row
    when the socket ends; a process killed without a word stops renewing, and its rows stop
    counting once they expire (docs/architecture.md, "Admission across processes").
    """

    # Which process holds it: host, pid and a random tag (a restarted pid is a new holder).
    holder = models.CharField(max_length=100, db_index=True)
    # The stream the socket carries once a call attached: a call whose stream's lease ran
    # out was held by a process that died without detaching it (calls/services/timers.py).
    stream_id = models.CharField(max_length=128, blank=True, db_index=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.holder} until {self.expires_at:%H:%M:%S}"

"""Explicit turns: `continue` (wait here) and `continue.start`/`.result` (a durable operation).

A turn claims the call's turn token; only caller speech stamped with it answers the turn.
A waiting `continue` holds the turn by a short lease it renews, so a process killed
mid-turn frees it within seconds. A `continue.start` operation is a row that holds the
turn to its deadline: whichever process applies the caller's answer settles it in the
same transaction as the transcript line (`operation_settle`), and the sweep fails it at
its deadline or when the call ends (`operations_sweep`) — no thread holds its outcome
(docs/architecture.md, "Turns").
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import close_old_connections, transaction

from calls import clock, metrics
from calls.call_metadata import (
    LAST_TURN_COMPLETED_AT,
    LAST_TURN_LATENCY_MS,
    LAST_TURN_LISTEN_WAIT_MS,
    TURN_ANSWER,
    TURN_COUNT,
    CallMetadata,
)
from calls.carrier import get_provider
from calls.config import get_config
from calls.exceptions import (
    CallConflict,
    CallError,
    CallNotFound,
    InvalidRequest,
    TranscriptTimeout,
)
from calls.models import Call, ContinueOperation, TranscriptEntry
from calls.selectors import call_find
from calls.services.actions import live_call, spoken_check
from calls.services.enabled import enabled_check
from calls.services.lifecycle import (
    call_target,
    call_transition,
    metadata_update,
)
from calls.services.redaction import redact_stored
from calls.services.speech import speak
from calls.services.turn_records import turn_prompted
from calls.state import NON_TERMINAL, TERMINAL, CallState
from providers.errors import ProviderError

logger = logging.getLogger(__name__)

TRANSCRIPT_POLL_SECONDS = 0.1


# How long a waiting `continue` holds its turn without renewing it (it renews every third
# of this while polling); a process killed mid-turn frees the turn within this.
TURN_LEASE = timedelta(seconds=10)

# Finished operations answer continue.result this long, then are pruned.
OPERATION_TTL = timedelta(hours=24)


Status = ContinueOperation.Status


@dataclass(frozen=True, slots=True)
class ContinueResult:
    transcript: str
    latency_ms: int
    listen_wait_ms: int


def call_continue(*, call_id: str, message: str) -> ContinueResult:
    """One explicit turn: speak, listen, wait for the caller's final transcript."""
    enabled_check()
    spoken_check(message)
    call = live_call(call_id)
    cfg = get_config()
    token = uuid.uuid4().hex
    started = clock.now()
    deadline = started + timedelta(milliseconds=cfg.transcript_timeout_ms)
    # A short lease, renewed while this process waits: if it dies, the turn frees itself
    # within TURN_LEASE instead of at the transcript deadline (minutes).
    turn_claim(
        call, token=token, started=started, deadline=deadline, lease_until=started + TURN_LEASE
    )
    try:
        return _run_turn(call, message, token=token, started=started, deadline=deadline)
    finally:
        turn_release(call.pk, token)


def turn_claim(
    call: Call, *, token: str, started: datetime, deadline: datetime, lease_until: datetime
) -> None:
    """Open an explicit turn on the call; CallConflict when it ended or a turn is open."""
    claimed = Call.objects.filter(
        pk=call.pk, turn_token__isnull=True, state__in=NON_TERMINAL
    ).update(
        turn_token=token,
        turn_started_at=started,
        transcript_deadline_at=deadline,
        turn_lease_until=lease_until,
    )
    if not claimed:
        call.refresh_from_db()
        raise CallConflict(
            "Call has ended" if call.is_terminal else "Already waiting for transcript"
        )
    call.turn_token = token


def _prompt(call: Call, message: str, token: str) -> None:
    """Say a `continue` prompt: it opens a bot turn (docs/voice-path.md, "Turns")."""
    utterance_id = uuid.uuid4().hex
    turn_prompted(call=call, utterance_id=utterance_id)
    speak(call, message, listen_after=True, turn_token=token, utterance_id=utterance_id)


def turn_release(call_pk: int, token: str) -> None:
    """Close the turn `token` if it is still the open one."""
    Call.objects.filter(pk=call_pk, turn_token=token).update(
        turn_token=None, turn_started_at=None, transcript_deadline_at=None, turn_lease_until=None
    )


def _run_turn(
    call: Call, message: str, *, token: str, started: datetime, deadline: datetime
) -> ContinueResult:
    # One carrier command says the prompt and listens: a separate listen command would
    # interrupt the prompt on carriers that transfer the call to a new document (Plivo).
    _prompt(call, message, token)
    call_transition(call=call, state=CallState.LISTENING)
    listen_started = clock.now()
    text = _wait_for_transcript(call, token=token, deadline=deadline)
    try:
        get_provider().stop_listening(call_target(call, turn_token=token))
    except ProviderError as exc:  # the turn has its transcript; a stuck listener is harmless
        metrics.provider_error(provider=call.provider, kind="stop_listening")
        logger.warning("call=%s stop listening failed: %s", call.public_id, exc)
    done = clock.now()
    result = ContinueResult(
        transcript=text,
        latency_ms=int((done - started).total_seconds() * 1000),
        listen_wait_ms=int((done - listen_started).total_seconds() * 1000),
    )
    turn_record(call, latency_ms=result.latency_ms, listen_wait_ms=result.listen_wait_ms, done=done)
    logger.info(
        "continueCall latency call=%s totalMs=%d listenWaitMs=%d",
        call.public_id,
        result.latency_ms,
        result.listen_wait_ms,
    )
    return result


def _wait_for_transcript(call: Call, *, token: str, deadline: datetime) -> str:
    """Poll the database: the transcript may be captured by any process.

    docs/design.md, "8. Runtime modes and scale".
    """
    entries = TranscriptEntry.objects.filter(
        call=call, speaker=TranscriptEntry.Speaker.USER, turn_token=token, is_final=True
    )
    renew_at = clock.now() + TURN_LEASE / 3
    while True:
        entry = entries.first()
        if entry is not None:
            return _answer_take(call, token) or entry.text
        state, end_reason = Call.objects.values_list("state", "end_reason").get(pk=call.pk)
        if state not in NON_TERMINAL:
            raise CallConflict(f"Call ended: {end_reason or state}")
        now = clock.now()
        if now >= deadline:
            ms = get_config().transcript_timeout_ms
            raise TranscriptTimeout(f"Timed out waiting for transcript after {ms}ms")
        if now >= renew_at:
            Call.objects.filter(pk=call.pk, turn_token=token).update(
                turn_lease_until=now + TURN_LEASE
            )
            renew_at = now + TURN_LEASE / 3
        clock.sleep(TRANSCRIPT_POLL_SECONDS)


def _answer_take(call: Call, token: str) -> str | None:
    """The caller's own words for turn `token` when the stored line is redacted; None when
    the line is the words. Taken once: they leave the call row."""
    answer = Call.objects.only("metadata").get(pk=call.pk).meta.get(TURN_ANSWER)
    if answer is None or answer["turnToken"] != token:
        return None
    metadata_update(call=call, delete=(TURN_ANSWER,))
    return answer["text"]


def turn_record(
    call: Call, *, latency_ms: int, listen_wait_ms: int | None = None, done: datetime | None = None
) -> None:
    """Count a completed explicit turn and keep its latency on the call."""
    done = done or clock.now()
    with transaction.atomic():
        row = Call.objects.select_for_update().only("metadata").get(pk=call.pk)
        turns = int(row.meta.get(TURN_COUNT, 0)) + 1
        values: CallMetadata = {
            TURN_COUNT: turns,
            LAST_TURN_LATENCY_MS: latency_ms,
            LAST_TURN_COMPLETED_AT: done.isoformat(),
        }
        if listen_wait_ms is not None:
            values[LAST_TURN_LISTEN_WAIT_MS] = listen_wait_ms
        metadata_update(call=call, set_=values)


def continue_start(*, call_id: str, message: str) -> ContinueOperation:
    """Claim the turn and record the operation; the prompt is said on a short thread.

    A turn that can't start (call ended, another turn open) is a failed operation, as the
    plugin reports it through continue.result.
    """
    enabled_check()
    spoken_check(message)
    call = call_find(call_id)
    if call is None:
        raise CallNotFound()
    token = uuid.uuid4().hex
    started = clock.now()
    deadline = started + timedelta(milliseconds=get_config().transcript_timeout_ms)
    try:
        with transaction.atomic():
            live_call(call.call_id)
            # The operation holds the turn to its deadline: no process renews it.
            turn_claim(call, token=token, started=started, deadline=deadline, lease_until=deadline)
            operation = ContinueOperation.objects.create(
                call=call,
                message=message,
                turn_token=token,
                deadline_at=deadline,
                created_at=started,
            )
    except CallError as exc:
        return ContinueOperation.objects.create(
            call=call,
            message=message,
            status=Status.FAILED,
            finished_at=started,
            result={"success": False, "error": exc.message},
            created_at=started,
        )
    threading.Thread(
        target=_say_prompt,
        args=(operation.pk, call.pk, message, token),
        name=f"continue-{operation.operation_id}",
        daemon=True,
    ).start()
    return operation


def _say_prompt(pk: int, call_pk: int, message: str, token: str) -> None:
    """Say the prompt and listen; a refusal fails the operation and frees the turn."""
    try:
        call = Call.objects.get(pk=call_pk)
        _prompt(call, message, token)
        call_transition(call=call, state=CallState.LISTENING)
    except CallError as exc:
        _settle(pk, Status.FAILED, {"success": False, "error": exc.message})
        turn_release(call_pk, token)
    finally:
        close_old_connections()


def operation_settle(*, call: Call, turn_token: str, transcript: str) -> bool:
    """The caller answered an operation's turn: done, turn freed (inside the event's unit)."""
    operation = ContinueOperation.objects.filter(
        call=call, turn_token=turn_token, status=Status.PENDING
    ).first()
    if operation is None:
        # A synchronous `continue` owns this turn and reads the line itself; a redacted
        # line would not be what the caller said, so the words wait beside it.
        if redact_stored(call=call, text=transcript) != transcript:
            metadata_update(
                call=call, set_={TURN_ANSWER: {"turnToken": turn_token, "text": transcript}}
            )
        return False
    if not _settle(operation.pk, Status.DONE, {"success": True, "transcript": transcript}):
        return False
    turn_release(call.pk, turn_token)
    call.turn_token = None
    turn_record(call, latency_ms=int((clock.now() - operation.created_at).total_seconds() * 1000))
    return True


def _settle(pk: int, status: str, result: dict[str, object]) -> bool:
    return (
        ContinueOperation.objects.filter(pk=pk, status=Status.PENDING).update(
            status=status, result=result, finished_at=clock.now()
        )
        == 1
    )


def operations_sweep(*, now: datetime | None = None) -> int:
    """Fail operations past their deadline or whose call ended; prune old finished ones."""
    now = now or clock.now()
    settled = 0
    timeout_ms = get_config().transcript_timeout_ms
    for operation in ContinueOperation.objects.filter(
        status=Status.PENDING, deadline_at__lte=now
    ).select_related("call"):
        if _settle(
            operation.pk,
            Status.FAILED,
            {"success": False, "error": f"Timed out waiting for transcript after {timeout_ms}ms"},
        ):
            turn_release(operation.call_id, operation.turn_token)
            settled += 1
    ended = ContinueOperation.objects.filter(
        call__state__in=TERMINAL, status=Status.PENDING
    ).select_related("call")
    for operation in ended:
        reason = operation.call.end_reason or operation.call.state
        if _settle(
            operation.pk, Status.FAILED, {"success": False, "error": f"Call ended: {reason}"}
        ):
            settled += 1
    ContinueOperation.objects.exclude(status=Status.PENDING).filter(
        finished_at__lte=now - OPERATION_TTL
    ).delete()
    return settled


def continue_result(*, operation_id: str | None) -> ContinueOperation:
    if not operation_id:
        raise InvalidRequest("operationId required")
    try:
        key = uuid.UUID(str(operation_id))
    except ValueError:
        raise CallNotFound("Operation not found") from None
    operation = ContinueOperation.objects.filter(operation_id=key).first()
    if operation is None:
        raise CallNotFound("Operation not found")
    return operation

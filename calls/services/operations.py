"""Background `continue` turns (voicecall.continue.start / .result), durable across processes.

`continue.start` claims the call's turn and records the operation with the turn's token
and deadline, then says the prompt. From there nothing waits in memory: whichever process
applies the caller's answer settles the operation in the same transaction that writes the
transcript line (`operation_settle`), and the sweep fails it at its deadline or when the
call ends (`operations_sweep`). A process killed mid-turn therefore loses nothing: the
answer that arrives on another process, or after a restart, still completes it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import datetime, timedelta

from django.db import close_old_connections, transaction

from calls import clock
from calls.config import get_config
from calls.exceptions import CallError, CallNotFound, InvalidRequest
from calls.models import Call, ContinueOperation
from calls.selectors import call_find
from calls.services.lifecycle import call_transition
from calls.services.outbound import (
    live_call,
    text_check,
    turn_claim,
    turn_record,
    turn_release,
)
from calls.services.speech import speak
from calls.state import TERMINAL, CallState

logger = logging.getLogger(__name__)

# Finished operations answer continue.result this long, then are pruned.
OPERATION_TTL = timedelta(hours=24)

Status = ContinueOperation.Status


def continue_start(*, call_id: str, message: str) -> ContinueOperation:
    """Claim the turn and record the operation; the prompt is said on a short thread.

    A turn that can't start (call ended, another turn open) is a failed operation, as the
    plugin reports it through continue.result.
    """
    text_check("message", message)
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
        speak(call, message, listen_after=True, turn_token=token)
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
        return False  # a synchronous `continue` owns this turn and reads the line itself
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

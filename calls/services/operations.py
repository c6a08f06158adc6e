"""Background `continue` turns (voicecall.continue.start / .result)."""
from __future__ import annotations

import threading
import uuid

from django.db import close_old_connections

from calls import clock
from calls.exceptions import CallError, CallNotFound, InvalidRequest
from calls.models import ContinueOperation
from calls.selectors import call_find
from calls.services.outbound import call_continue, text_check


def continue_start(*, call_id: str, message: str) -> ContinueOperation:
    """Record the operation and run the turn on a thread of this process."""
    text_check("message", message)
    call = call_find(call_id)
    if call is None:
        raise CallNotFound()
    operation = ContinueOperation.objects.create(call=call, message=message)
    thread = threading.Thread(target=_run, args=(operation.pk, call.call_id, message),
                              name=f"continue-{operation.operation_id}", daemon=True)
    thread.start()
    return operation


def _run(pk: int, call_id: str, message: str) -> None:
    try:
        result = call_continue(call_id=call_id, message=message)
        outcome = {"success": True, "transcript": result.transcript}
        status = ContinueOperation.Status.DONE
    except CallError as exc:
        outcome = {"success": False, "error": exc.message}
        status = ContinueOperation.Status.FAILED
    finally:
        close_old_connections()
    ContinueOperation.objects.filter(pk=pk).update(status=status, result=outcome,
                                                   finished_at=clock.now())
    close_old_connections()


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

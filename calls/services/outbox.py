"""The outbox: carrier commands owed by applied events, sent after commit, retried until done.

Applying a carrier event and recording it are one transaction (`outbox_unit`): the replay
key, the event row, the state change and the transcript line commit together or not at
all, so a crash in the middle leaves nothing and the carrier's redelivery is applied as
new. A REST command the event needs can't join that transaction (it is I/O, and holding
a transaction open across it would stall every other writer), so the transaction only
writes a CarrierCommand row; once it commits, this process sends it, and if the process
dies first, the timer sweep sends it when the row's lease has expired. "Applied once"
comes from the transaction, "never lost" from the row (docs/architecture.md,
"Applying a carrier event: one transaction, then the outbox").
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F, Q

from calls import clock, metrics
from calls.exceptions import CallError
from calls.faults import crash_point
from calls.models import Call, CarrierCommand
from calls.services.carrier_commands import COMMANDS
from providers.errors import ProviderError

logger = logging.getLogger(__name__)

# A sender holds its command this long; a process that died mid-send frees it by then.
LEASE = timedelta(seconds=30)
# Retries back off 1, 2, 4 … seconds, never more than this apart.
MAX_BACKOFF = timedelta(seconds=16)

# Ids owed inside the current unit, sent once it commits; None outside a unit.
_owed: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "voicecall_owed_commands", default=None
)


@contextmanager
def outbox_unit() -> Iterator[None]:
    """One atomic unit of event application; commands it owes are sent after commit.

    Nested units join the outermost one, without a savepoint of their own (a round trip
    each way on every webhook: docs/performance.md, "Webhook path"). An exception rolls
    everything back and sends nothing; code that catches one inside a unit cannot go on
    using it (Django refuses further queries until the unit ends).
    """
    if _owed.get() is not None:
        with transaction.atomic(savepoint=False):
            yield
        return
    owed: list[int] = []
    token = _owed.set(owed)
    try:
        with transaction.atomic():
            yield
    finally:
        _owed.reset(token)
    crash_point("outbox.committed")
    for pk in owed:
        command_send(pk)


def command_owe(
    call: Call,
    kind: str,
    *,
    retry_now: bool = False,
    due_at: datetime | None = None,
    again: bool = False,
) -> None:
    """Record that `kind` must be sent for `call` (once per call and kind).

    `retry_now` (a re-delivered event asking again) makes a waiting or given-up command
    due at once, as the carrier's retry is a good moment to try again. `due_at` defers a
    new command (the sweep sends it then); `again` revives one already done, for a second
    time it is truly owed (a message left on a machine after the greeting went out).
    """
    now = clock.now()
    try:
        with transaction.atomic():
            command = CarrierCommand.objects.create(
                call=call, kind=kind, due_at=due_at or now, created_at=now
            )
    except IntegrityError:
        if not (retry_now or again):
            return
        existing = CarrierCommand.objects.filter(call=call, kind=kind)
        if not again:
            existing = existing.filter(done_at__isnull=True)
        revived = existing.update(failed_at=None, done_at=None, due_at=now, attempts=0)
        if not revived:
            return
        command = CarrierCommand.objects.get(call=call, kind=kind)
    owed = _owed.get()
    if owed is not None:
        owed.append(command.pk)
    else:
        command_send(command.pk)


def command_send(pk: int) -> bool:
    """Claim and send one due command; True when it is done (or had nothing left to do)."""
    now = clock.now()
    claimed = CarrierCommand.objects.filter(
        Q(lease_until__isnull=True) | Q(lease_until__lte=now),
        pk=pk,
        done_at__isnull=True,
        failed_at__isnull=True,
        due_at__lte=now,
    ).update(lease_until=now + LEASE, attempts=F("attempts") + 1)
    if not claimed:
        return False  # done, given up, not due, or another process is sending it
    command = CarrierCommand.objects.select_related("call").get(pk=pk)
    spec = COMMANDS[command.kind]
    try:
        spec.send(command.call, str(command.key))
    except (ProviderError, CallError) as exc:
        if isinstance(exc, ProviderError):  # a CallError was counted where it was raised
            metrics.provider_error(provider=command.call.provider, kind=command.kind)
        _failed(command, exc)
        return False
    CarrierCommand.objects.filter(pk=pk).update(done_at=clock.now(), lease_until=None)
    return True


def _failed(command: CarrierCommand, exc: Exception) -> None:
    spec = COMMANDS[command.kind]
    cause = exc.__cause__ if isinstance(exc, CallError) else exc
    retryable = spec.retry_any or bool(getattr(cause, "retryable", False))
    error = str(exc)[:500]
    now = clock.now()
    if retryable and command.attempts < spec.attempts:
        backoff = min(timedelta(seconds=2 ** (command.attempts - 1)), MAX_BACKOFF)
        CarrierCommand.objects.filter(pk=command.pk).update(
            due_at=now + backoff, lease_until=None, last_error=error
        )
        logger.info(
            "call=%s %s failed (attempt %d, retrying): %s",
            command.call.public_id,
            command.kind,
            command.attempts,
            error,
        )
        return
    CarrierCommand.objects.filter(pk=command.pk).update(
        failed_at=now, lease_until=None, last_error=error
    )
    for kind in spec.give_up(command.call, error):
        command_owe(command.call, kind)


def commands_sweep(*, now: datetime | None = None) -> int:
    """Send every due command whose sender is gone or which waits for a retry; the count sent."""
    now = now or clock.now()
    due = CarrierCommand.objects.filter(
        Q(lease_until__isnull=True) | Q(lease_until__lte=now),
        done_at__isnull=True,
        failed_at__isnull=True,
        due_at__lte=now,
    ).values_list("pk", flat=True)
    return sum(command_send(pk) for pk in list(due[:100]))


def commands_prune(*, before: datetime) -> int:
    """Forget finished commands of calls that ended before `before`."""
    deleted, _ = CarrierCommand.objects.filter(
        Q(done_at__isnull=False) | Q(failed_at__isnull=False), call__ended_at__lt=before
    ).delete()
    return deleted

"""Cold transfer: hand a live call to another number; our leg ends `transferred`.

The call counts as transferred once the carrier accepted the transfer (its REST answer, or
for Plivo its fetch of the transfer document, whichever comes first); a refusal leaves the
call as it was. Later callbacks for our leg find it ended and change nothing
(docs/carriers.md, "Cold transfer").
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime

from django.db import IntegrityError, transaction

from calls import clock, metrics
from calls.call_metadata import TRANSFER, TransferRecord
from calls.carrier import get_provider
from calls.config import get_config
from calls.exceptions import CallConflict, CarrierFailed, InvalidRequest
from calls.models import Call, CallEvent
from calls.phone import is_e164, mask_number
from calls.selectors import call_find
from calls.services.actions import hang_up_claim, hang_up_release, live_call, spoken_check
from calls.services.dialling import destination_check
from calls.services.enabled import enabled_check
from calls.services.lifecycle import call_finalize, call_target, metadata_update
from calls.state import CallState
from providers.base import Transfer
from providers.common import preferred_language
from providers.errors import ProviderError

logger = logging.getLogger(__name__)


def call_transfer(*, call_id: str, to: str, message: str | None = None) -> Call:
    """Hand the live call to `to`, after saying `message`; returns the transferred call.

    `to` passes the checks of a new call (E.164, `outbound.allowTo`) before anything is
    sent. Unknown: CallNotFound; ended or not connected: CallConflict; the carrier refusing:
    CarrierFailed, and the call goes on as before. An end or another transfer of the same
    call in progress holds its hang-up claim: this one is refused rather than raced.
    """
    enabled_check()
    spoken_check(message)
    to = (to or "").strip()
    if not to:
        raise InvalidRequest("to required")
    destination_check(to)
    call = live_call(call_id)
    claimed_at = _claim(call)
    record: TransferRecord = {"to": to}
    if message:
        record["message"] = message
    # On the row before the carrier is asked: Plivo fetches the document at once, maybe
    # from another process, maybe before its REST answer reaches us.
    metadata_update(call=call, set_={TRANSFER: record})
    try:
        get_provider().transfer(call_target(call), transfer_for(call, record))
    except ProviderError as exc:
        metrics.provider_error(provider=call.provider, kind="transfer")
        return _refused(call, claimed_at, exc)
    call_transferred(call)
    logger.info("call=%s transferred to %s", call.public_id, mask_number(to))
    call.refresh_from_db()
    return call


def _claim(call: Call) -> datetime:
    """The call's hang-up claim: ending our leg by transfer and by hang-up exclude each other."""
    claimed_at = hang_up_claim(call)
    if claimed_at is None:
        call.refresh_from_db()
        raise CallConflict("Call has ended" if call.is_terminal else "Call is being ended")
    return claimed_at


def _refused(call: Call, claimed_at: datetime, exc: ProviderError) -> Call:
    call.refresh_from_db()
    if call.state == CallState.TRANSFERRED:
        return call  # the carrier fetched the transfer document meanwhile: it took it
    if not exc.retryable:
        # Refused for sure: no document fetch will come. After a timeout or a 5xx the
        # carrier may still act on it, and its fetch must find what to dial.
        metadata_update(call=call, delete=(TRANSFER,))
    hang_up_release(call, claimed_at)
    logger.warning("call=%s transfer refused by the carrier: %s", call.public_id, exc)
    raise CarrierFailed(str(exc)) from exc


def transfer_for(call: Call, record: TransferRecord) -> Transfer:
    """What the carrier needs: the target, the words, and our number as the caller id."""
    ours = call.to_number if call.direction == Call.Direction.INBOUND else call.from_number
    return Transfer(
        to_number=record["to"],
        message=record.get("message") or None,
        caller_id=ours if is_e164(ours) else None,
        language=preferred_language(get_config().tts),
        streaming=bool(call.stream_id),
    )


def call_transferred(call: Call) -> bool:
    """End our leg `transferred` (once), with the target on the event timeline."""
    if not call_finalize(call=call, reason=CallState.TRANSFERRED):
        return False
    record = call.meta.get(TRANSFER)
    payload = {"to": record["to"], "message": record.get("message")} if record else {}
    # The message is kept here, not in the transcript: our leg ends as the carrier starts
    # saying it, and nothing reports whether the caller heard it.
    with contextlib.suppress(IntegrityError), transaction.atomic():
        CallEvent.objects.create(
            call=call,
            type="call.transferred",
            created_at=call.ended_at or clock.now(),
            payload=payload,
            dedupe_key="voicecall:transferred",
        )
    return True


def transfer_document(call_id: str | None) -> Transfer | None:
    """The transfer a carrier's document fetch asks for (Plivo), or None.

    The fetch is the carrier acting on the transfer, so the call is transferred from now
    on even if the REST answer has not reached us yet, or never does.
    """
    call = call_find(call_id)
    if call is None:
        return None
    record = call.meta.get(TRANSFER)
    if not record:
        return None
    call_transferred(call)
    return transfer_for(call, record)

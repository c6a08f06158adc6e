"""Placing an outbound call: the guards of docs/plugin-behaviour.md, "Notify calls", in
order, admission under maxConcurrentCalls across processes, then the carrier's dial.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.db import IntegrityError, transaction

from calls import clock, metrics
from calls.call_metadata import (
    DTMF_SEQUENCE,
    ERROR,
    INITIAL_MESSAGE,
    INITIAL_MESSAGE_INLINE,
    MACHINE_DETECTION,
    VOICEMAIL_MESSAGE,
)
from calls.carrier import call_webhook_url, get_provider, webhook_url
from calls.config import get_config
from calls.exceptions import (
    CallError,
    CapacityReached,
    CarrierFailed,
    InvalidRequest,
)
from calls.models import Call
from calls.phone import E164_ERROR, is_e164, mask_number
from calls.selectors import capacity_lock
from calls.services.actions import DTMF_ERROR, DTMF_RE, spoken_check, text_check
from calls.services.enabled import enabled_check
from calls.services.lifecycle import (
    call_finalize,
    metadata_update,
)
from calls.services.live import live_publish
from calls.services.machine_detection import call_mode, greeting_waits, mode_for_dial
from calls.services.sessions import agent_id, session_key_for, session_key_normalize
from calls.services.speech import utterance_in_flight_add, utterance_in_flight_drop
from calls.services.stream_plans import stream_plan
from calls.state import CallState
from providers.base import MachineDetection, PlaceCall
from providers.errors import ProviderError

logger = logging.getLogger(__name__)


def call_initiate(
    *,
    to: str | None,
    message: str | None = None,
    mode: str | None = None,
    session_key: str | None = None,
    dtmf_sequence: str | None = None,
) -> Call:
    """Record and dial an outbound call; the plugin's guards and errors, in order.

    docs/plugin-behaviour.md, "Placing a call".
    """
    enabled_check()
    cfg = get_config()
    spoken_check(message)
    text_check("sessionKey", session_key)
    to = (to or cfg.to_number or "").strip()
    mode = mode or cfg.default_mode
    if dtmf_sequence is not None and not DTMF_RE.match(dtmf_sequence):
        raise InvalidRequest(DTMF_ERROR)
    if dtmf_sequence and mode != Call.Mode.CONVERSATION:
        raise InvalidRequest("dtmfSequence requires conversation mode")
    if mode not in Call.Mode.values:
        raise InvalidRequest('mode must be "notify" or "conversation"')
    if not to:
        raise InvalidRequest("to required")
    destination_check(to)
    if session_key is not None:
        session_key = session_key_normalize(session_key, agent=agent_id())
    provider = get_provider()
    if dtmf_sequence and not provider.supports_preconnect_dtmf:
        raise InvalidRequest(f"{provider.name} does not support pre-connect DTMF")
    url = webhook_url(cfg)
    if not url:
        raise CallError("Webhook URL not configured")
    from_number = cfg.from_number or ("+15550000000" if cfg.provider == "mock" else None)
    if not from_number:
        raise CallError("fromNumber not configured")
    call = _admit(
        to=to,
        from_number=from_number,
        mode=mode,
        message=message,
        session_key=session_key,
        url=url,
        dtmf_sequence=dtmf_sequence,
    )
    _dial(call, message=message, dtmf_sequence=dtmf_sequence)
    return call


def destination_check(to: str) -> None:
    """A number we may dial: E.164, and inside `outbound.allowTo` when that is set.

    The same guard for a new call and a cold transfer's target: an agent talked into
    dialling premium or foreign numbers must not get there either way.
    """
    if not is_e164(to):
        raise InvalidRequest(f"to: {E164_ERROR}")
    allow_to = get_config().allow_to
    if allow_to and not any(to == entry or to.startswith(entry) for entry in allow_to):
        raise InvalidRequest(f"Destination {to} is not allowed by outbound.allowTo")


def _admit(
    *,
    to: str,
    from_number: str,
    mode: str,
    message: str | None,
    session_key: str | None,
    url: str,
    dtmf_sequence: str | None,
) -> Call:
    """Count and insert under one lock, so N processes can't exceed maxConcurrentCalls."""
    cfg = get_config()
    with transaction.atomic():
        capacity_lock()
        if Call.objects.active().count() >= cfg.max_concurrent_calls:
            raise CapacityReached(f"Maximum concurrent calls ({cfg.max_concurrent_calls}) reached")
        metadata: dict[str, object] = {"mode": mode}
        if message:
            metadata[INITIAL_MESSAGE] = message
        if dtmf_sequence:
            metadata[DTMF_SEQUENCE] = dtmf_sequence
        metadata.update(_machine_detection_metadata(message))
        now = clock.now()
        public_id = uuid.uuid4()
        call = Call.objects.create(
            public_id=public_id,
            provider=cfg.provider or "",  # unset only in a disabled config
            direction=Call.Direction.OUTBOUND,
            mode=mode,
            state=CallState.INITIATED,
            from_number=from_number,
            to_number=to,
            session_key=session_key
            or session_key_for(call_id=public_id, other_party=to, agent=agent_id()),
            metadata=metadata,
            started_at=now,
            ring_deadline_at=now + timedelta(milliseconds=cfg.ring_timeout_ms),
        )
        live_publish(call_id=call.call_id)
        return call


def _machine_detection_metadata(message: str | None) -> dict[str, object]:
    """The detection this call asks for, kept on the row for its whole life; with
    `leaveMessage`, the message to leave on a machine ("" when there is none)."""
    mode = mode_for_dial()
    if mode == MachineDetection.OFF:
        return {}
    metadata: dict[str, object] = {MACHINE_DETECTION: mode.value}
    if mode == MachineDetection.LEAVE_MESSAGE:
        metadata[VOICEMAIL_MESSAGE] = message or ""
    return metadata


def _dial(call: Call, *, message: str | None, dtmf_sequence: str | None) -> None:
    cfg = get_config()
    url = call_webhook_url(call.public_id, cfg)
    Call.objects.filter(pk=call.pk).update(webhook_url=url)
    call.webhook_url = url
    # Only conversations stream: a notify message is spoken by the carrier, and a stream
    # attaching too would race it for the same message
    # (docs/design.md, "9. Media streams and the voice pipeline").
    conversation = call.mode == Call.Mode.CONVERSATION
    provider = get_provider()
    # A notify message the carrier may take with the dial (Twilio inline TwiML) is in
    # flight from now: its report may come before the answer does.
    utterance_id = None
    if greeting_waits(call):
        # Held for the answering-machine verdict: never delivered with the dial.
        message = None
    if message and not conversation and provider.speech_done_signal:
        utterance_id = uuid.uuid4().hex
        utterance_in_flight_add(call, utterance_id, message, hang_up=True)
    request = PlaceCall(
        call_id=call.call_id,
        to_number=call.to_number,
        from_number=call.from_number,
        webhook_url=url,
        mode=call.mode,
        message=message,
        dtmf_sequence=dtmf_sequence,
        ring_timeout_s=max(1, cfg.ring_timeout_ms // 1000),
        message_utterance_id=utterance_id,
        stream=stream_plan(call) if conversation else None,
        machine_detection=call_mode(call),
    )
    try:
        result = provider.place_call(request)
    except ProviderError as exc:
        metrics.provider_error(provider=call.provider, kind="dial")
        call_finalize(call=call, reason=CallState.FAILED)
        metadata_update(call=call, set_={ERROR: str(exc)[:500]})
        raise CarrierFailed(str(exc)) from exc
    try:
        Call.objects.filter(pk=call.pk, provider_call_id__isnull=True).update(
            provider_call_id=result.provider_call_id
        )
    except IntegrityError as exc:  # the carrier reused an id we already hold
        call_finalize(call=call, reason=CallState.ERROR)
        raise CarrierFailed("Carrier returned a call id that is already in use") from exc
    call.provider_call_id = result.provider_call_id
    if result.message_delivered:
        metadata_update(call=call, set_={INITIAL_MESSAGE_INLINE: True})
    elif utterance_id:
        utterance_in_flight_drop(call, utterance_id)  # it is said on answer instead
    if result.dtmf_delivered:
        metadata_update(call=call, delete=(DTMF_SEQUENCE,))
    logger.info(
        "call=%s provider=%s dialled %s", call.public_id, call.provider, mask_number(call.to_number)
    )

"""Placing calls and driving live ones: initiate, speak, continue, DTMF, end."""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction

from calls import clock
from calls.config import get_config
from calls.exceptions import (
    CallConflict,
    CallError,
    CallNotFound,
    CapacityReached,
    CarrierFailed,
    InvalidRequest,
    TranscriptTimeout,
)
from calls.models import Call, TranscriptEntry
from calls.phone import E164_ERROR, is_e164, mask_number
from calls.runtime import call_webhook_url, get_provider, webhook_url
from calls.selectors import call_find, capacity_lock
from calls.services.lifecycle import (
    call_finalize,
    call_target,
    call_transition,
    metadata_update,
)
from calls.services.sessions import agent_id, session_key_for, session_key_normalize
from calls.services.speech import speak
from calls.services.stream_plans import stream_plan
from calls.state import NON_TERMINAL, CallState
from providers.base import PlaceCall
from providers.errors import ProviderError
from providers.text import has_control

logger = logging.getLogger(__name__)

DTMF_RE = re.compile(r"^[0-9*#,wWpP]+$")
DTMF_ERROR = "digits may only contain digits, *, #, comma, w, p"
TRANSCRIPT_POLL_SECONDS = 0.1
# How long a waiting `continue` holds its turn without renewing it (it renews every third
# of this while polling); a process killed mid-turn frees the turn within this.
TURN_LEASE = timedelta(seconds=10)
# A hang-up claim older than this is considered abandoned by a dead process.
HANGUP_CLAIM_TTL = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class ContinueResult:
    transcript: str
    latency_ms: int
    listen_wait_ms: int


def text_check(name: str, value: str | None) -> None:
    """API text may hold tabs and newlines, never NUL, other controls or lone surrogates.

    Refused rather than cleaned: the caller should learn that their text was not what they
    meant, and PostgreSQL would refuse a NUL on the way in (docs/security.md).
    """
    if value and has_control(value, allow_whitespace=True):
        raise InvalidRequest(f"{name} contains control characters")


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
    cfg = get_config()
    text_check("message", message)
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
    if not is_e164(to):
        raise InvalidRequest(f"to: {E164_ERROR}")
    _check_allowed_destination(to, cfg.allow_to)
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


def _check_allowed_destination(to: str, allow_to: tuple[str, ...]) -> None:
    # Guard against an agent being talked into dialling premium or foreign numbers.
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
            metadata["initialMessage"] = message
        if dtmf_sequence:
            metadata["dtmfSequence"] = dtmf_sequence
        now = clock.now()
        public_id = uuid.uuid4()
        return Call.objects.create(
            public_id=public_id,
            provider=cfg.provider,
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


def _dial(call: Call, *, message: str | None, dtmf_sequence: str | None) -> None:
    cfg = get_config()
    url = call_webhook_url(call.public_id, cfg)
    Call.objects.filter(pk=call.pk).update(webhook_url=url)
    call.webhook_url = url
    # Only conversations stream: a notify message is spoken by the carrier, and a stream
    # attaching too would race it for the same message
    # (docs/design.md, "9. Media streams and the voice pipeline").
    conversation = call.mode == Call.Mode.CONVERSATION
    request = PlaceCall(
        call_id=call.call_id,
        to_number=call.to_number,
        from_number=call.from_number,
        webhook_url=url,
        mode=call.mode,
        message=message,
        dtmf_sequence=dtmf_sequence,
        ring_timeout_s=max(1, cfg.ring_timeout_ms // 1000),
        stream=stream_plan(call) if conversation else None,
    )
    try:
        result = get_provider().place_call(request)
    except ProviderError as exc:
        call_finalize(call=call, reason=CallState.FAILED)
        metadata_update(call=call, set_={"error": str(exc)[:500]})
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
        metadata_update(call=call, set_={"initialMessageInline": True})
    if result.dtmf_delivered:
        metadata_update(call=call, delete=("dtmfSequence",))
    logger.info(
        "call=%s provider=%s dialled %s", call.public_id, call.provider, mask_number(call.to_number)
    )


def live_call(call_id: str) -> Call:
    """The guards of speak/continue/dtmf (docs/plugin-behaviour.md, "Explicit turns")."""
    call = call_find(call_id)
    if call is None:
        raise CallNotFound()
    if call.is_terminal:
        raise CallConflict("Call has ended")
    if not call.provider_call_id:
        raise CallConflict("Call not connected")
    return call


def call_speak(*, call_id: str, message: str, listen_after: bool = False) -> Call:
    """Speak into a live call; on failure the call goes back to listening."""
    text_check("message", message)
    call = live_call(call_id)
    speak(call, message, listen_after=listen_after)
    return call


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


def turn_release(call_pk: int, token: str) -> None:
    """Close the turn `token` if it is still the open one."""
    Call.objects.filter(pk=call_pk, turn_token=token).update(
        turn_token=None, turn_started_at=None, transcript_deadline_at=None, turn_lease_until=None
    )


def call_continue(*, call_id: str, message: str) -> ContinueResult:
    """One explicit turn: speak, listen, wait for the caller's final transcript."""
    text_check("message", message)
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


def _run_turn(
    call: Call, message: str, *, token: str, started: datetime, deadline: datetime
) -> ContinueResult:
    # One carrier command says the prompt and listens: a separate listen command would
    # interrupt the prompt on carriers that transfer the call to a new document (Plivo).
    speak(call, message, listen_after=True, turn_token=token)
    call_transition(call=call, state=CallState.LISTENING)
    listen_started = clock.now()
    text = _wait_for_transcript(call, token=token, deadline=deadline)
    try:
        get_provider().stop_listening(call_target(call, turn_token=token))
    except ProviderError as exc:  # the turn has its transcript; a stuck listener is harmless
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
            return entry.text
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


def turn_record(
    call: Call, *, latency_ms: int, listen_wait_ms: int | None = None, done: datetime | None = None
) -> None:
    """Count a completed explicit turn and keep its latency on the call."""
    done = done or clock.now()
    with transaction.atomic():
        row = Call.objects.select_for_update().only("metadata").get(pk=call.pk)
        turns = int((row.metadata or {}).get("turnCount", 0)) + 1
        values: dict[str, object] = {
            "turnCount": turns,
            "lastTurnLatencyMs": latency_ms,
            "lastTurnCompletedAt": done.isoformat(),
        }
        if listen_wait_ms is not None:
            values["lastTurnListenWaitMs"] = listen_wait_ms
        metadata_update(call=call, set_=values)


def call_send_dtmf(*, call_id: str, digits: str) -> Call:
    """Play DTMF into a live call."""
    if not digits or not DTMF_RE.match(digits):
        raise InvalidRequest(DTMF_ERROR)
    call = live_call(call_id)
    try:
        get_provider().send_dtmf(call_target(call), digits)
    except ProviderError as exc:
        raise CarrierFailed(str(exc)) from exc
    return call


def call_end(*, call_id: str, reason: str = CallState.HANGUP_BOT) -> Call:
    """Hang up; already-ended is success; a failed carrier hang-up does not finalize."""
    call = call_find(call_id)
    if call is None:
        raise CallNotFound()
    if call.is_terminal:
        return call
    if not call.provider_call_id:
        raise CallConflict("Call not connected")
    return call_hang_up(call=call, reason=reason)


def call_hang_up(*, call: Call, reason: str) -> Call:
    """Claim the hang-up (one per call across processes), ask the carrier, then finalize."""
    now = clock.now()
    claimed = (
        Call.objects.filter(pk=call.pk, state__in=NON_TERMINAL)
        .exclude(hangup_claimed_at__gt=now - HANGUP_CLAIM_TTL)
        .update(hangup_claimed_at=now)
    )
    if not claimed:
        return _await_other_hang_up(call)
    try:
        get_provider().hang_up(call_target(call))
    except ProviderError as exc:
        Call.objects.filter(pk=call.pk, hangup_claimed_at=now).update(hangup_claimed_at=None)
        raise CarrierFailed(str(exc)) from exc
    # If the carrier's own terminal event landed meanwhile, its reason and time win.
    call_finalize(call=call, reason=reason)
    call.refresh_from_db()
    return call


def _await_other_hang_up(call: Call) -> Call:
    """Another request owns the hang-up: share its outcome instead of hanging up twice."""
    give_up = clock.now() + timedelta(seconds=10)
    while clock.now() < give_up:
        call.refresh_from_db()
        if call.is_terminal or call.hangup_claimed_at is None:
            break
        clock.sleep(0.1)
    if not call.is_terminal:
        raise CarrierFailed("Hang-up did not complete")
    return call

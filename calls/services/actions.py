"""In-call actions on any live call, inbound or outbound: speak, DTMF, hang up.

Each checks the call is live and connected first (docs/plugin-behaviour.md, "Explicit turns"),
then asks the carrier; a carrier refusal is CarrierFailed and changes nothing else.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta

from calls import clock, metrics
from calls.carrier import get_provider
from calls.config import get_config
from calls.exceptions import (
    CallConflict,
    CallNotFound,
    CarrierFailed,
    InvalidRequest,
    SpeechFailed,
)
from calls.models import Call
from calls.selectors import call_find
from calls.services.enabled import enabled_check
from calls.services.lifecycle import (
    call_finalize,
    call_target,
)
from calls.services.speech import Spoken, speak
from calls.services.stream_commands import NO_STREAM
from calls.services.stream_plans import stream_plan
from calls.state import NON_TERMINAL, CallState
from providers.errors import ProviderError
from providers.text import has_control

logger = logging.getLogger(__name__)

DTMF_RE = re.compile(r"^[0-9*#,wWpP]+$")


DTMF_ERROR = "digits may only contain digits, *, #, comma, w, p"


# A hang-up claim older than this is considered abandoned by a dead process.
HANGUP_CLAIM_TTL = timedelta(seconds=30)


def text_check(name: str, value: str | None) -> None:
    """API text may hold tabs and newlines, never NUL, other controls or lone surrogates.

    Refused rather than cleaned: the caller should learn that their text was not what they
    meant, and PostgreSQL would refuse a NUL on the way in (docs/security.md).
    """
    if value and has_control(value, allow_whitespace=True):
        raise InvalidRequest(f"{name} contains control characters")


def spoken_check(message: str | None) -> None:
    """Words asked to be said to the caller: text_check, and at most tts.maxTextLength.

    Refused rather than cut: the asker learns at once that the words would not all be said
    (automatic replies, which nobody asked for word by word, are cut: `spoken_bound`).
    """
    text_check("message", message)
    limit = get_config().tts_config.max_text_length
    if message and limit is not None and len(message) > limit:
        raise InvalidRequest(f"message is longer than tts.maxTextLength ({limit} characters)")


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


def call_speak(
    *,
    call_id: str,
    message: str,
    listen_after: bool = False,
    wait: bool = False,
    carrier_speech: bool = True,
) -> Spoken:
    """Speak into a live call; on failure the call goes back to listening.

    `wait`: on a stream, return once the words were heard or cut off (docs/voice-path.md).
    `carrier_speech` False (the plugin's `allowTwimlFallback: false`): only a media stream
    may say the words; a call no stream holds fails with `No media stream for call` instead
    of the carrier's own speech.
    """
    enabled_check()
    spoken_check(message)
    call = live_call(call_id)
    if not carrier_speech and not call.stream_id:
        raise SpeechFailed(NO_STREAM)
    return speak(call, message, listen_after=listen_after, wait=wait)


def call_send_dtmf(*, call_id: str, digits: str) -> Call:
    """Play DTMF into a live call; a streaming call keeps streaming.

    Where the digits replace the carrier's live document and so end the stream (Twilio),
    the call reconnects to a new stream with a fresh token right after them; the call, its
    transcript and an open turn carry on (docs/plugin-behaviour.md, "DTMF on a stream").
    """
    enabled_check()
    if not digits or not DTMF_RE.match(digits):
        raise InvalidRequest(DTMF_ERROR)
    call = live_call(call_id)
    provider = get_provider()
    plan = (
        stream_plan(call, replacing=True)
        if provider.dtmf_replaces_stream and call.stream_id
        else None
    )
    try:
        provider.send_dtmf(call_target(call, stream=plan), digits)
    except ProviderError as exc:
        metrics.provider_error(provider=call.provider, kind="dtmf")
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
    now = hang_up_claim(call)
    if now is None:
        return _await_other_hang_up(call)
    try:
        get_provider().hang_up(call_target(call))
    except ProviderError as exc:
        metrics.provider_error(provider=call.provider, kind="hangup")
        hang_up_release(call, now)
        raise CarrierFailed(str(exc)) from exc
    # If the carrier's own terminal event landed meanwhile, its reason and time win.
    call_finalize(call=call, reason=reason)
    call.refresh_from_db()
    return call


def hang_up_claim(call: Call) -> datetime | None:
    """Claim the right to end our leg (hang-up or transfer), one owner across processes.

    The claim's time, or None while another request holds it or once the call has ended;
    a claim older than HANGUP_CLAIM_TTL was left by a dead process and is taken over.
    """
    now = clock.now()
    claimed = (
        Call.objects.filter(pk=call.pk, state__in=NON_TERMINAL)
        .exclude(hangup_claimed_at__gt=now - HANGUP_CLAIM_TTL)
        .update(hangup_claimed_at=now)
    )
    return now if claimed else None


def hang_up_release(call: Call, claimed_at: datetime) -> None:
    """Give the claim back: the carrier refused, the call goes on."""
    Call.objects.filter(pk=call.pk, hangup_claimed_at=claimed_at).update(hangup_claimed_at=None)


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

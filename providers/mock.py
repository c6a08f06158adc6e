"""The `mock` carrier: no network to any carrier; the plugin's JSON webhooks.

docs/carriers.md, "Mock carrier".

With `mock.simulate` on, it behaves like a remote carrier: it calls our own webhook URL
back over HTTP (ringing, answered, scripted caller replies, hang-up), so notify,
conversation and inbound flows run offline through the same pipeline as real carriers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from providers import base
from providers.common import json_finite_number
from providers.errors import WebhookInvalid

logger = logging.getLogger(__name__)

_EVENT_TYPES = {t.value: t for t in base.EventType}
_TERMINAL_HINTS = ("stale", "ended", "completed")
# The simulated carrier reports its words said (call.spoken) this soon after taking them:
# it plays no audio, and a moment lets the request that spoke commit first.
SPOKEN_DELAY_MS = 300
# The simulated answering-machine verdict comes this long after the answer, by the dialled
# number's last two digits.
MACHINE_DETECTION_DELAY_MS = 800
_MOCK_VERDICTS = {"99": base.AnsweredBy.MACHINE, "98": base.AnsweredBy.FAX}
# A simulated callback still to post: (delay in ms, event type, its fields).
Then = tuple[int, str, dict[str, Any]]
# How long the simulated caller talks to the party a call was transferred to.
TRANSFERRED_TALK_MS = 5000
# The simulated carrier confirms our answer command (call.answered) this soon.
ANSWER_DELAY_MS = 200
# A report the service refused for load (429, 5xx) is tried again, after 0.1, 0.2, 0.4, 0.8
# and then every 1 s, each wait up to half again as long so that reports refused together
# do not come back together (`MockProvider._post`): 5.5–8 s in all.
DELIVERY_ATTEMPTS = 9
RETRY_FIRST_DELAY_S = 0.1
RETRY_MAX_DELAY_S = 1.0


class MockProvider(base.TelephonyProvider):
    name = "mock"
    supports_preconnect_dtmf = True
    speech_in_order = True
    # The simulated carrier always reports a verdict, a machine's at its beep.
    machine_verdict_always = True
    machine_greeting_end = True

    def __init__(self, *, settings: Mapping[str, Any] | None = None) -> None:
        self._settings = dict(settings or {})
        self._simulate = bool(self._settings.get("simulate", False))
        # Simulating, it reports its words said like a real carrier (call.spoken); without
        # simulation nothing calls back, so the bot line is written when the words are sent.
        self.speech_done_signal = self._simulate
        self._replies_sent: dict[str, int] = {}
        self._lock = threading.Lock()
        self._timers: set[threading.Timer] = set()
        # The simulated caller's "I'll hang up if nobody talks to me" timer, per call.
        self._idle: dict[str, threading.Timer] = {}
        self.sent: list[tuple[str, dict[str, Any]]] = []  # what we "sent" the carrier (tests)

    # -- call control -----------------------------------------------------------------
    def place_call(self, request: base.PlaceCall) -> base.PlaceCallResult:
        provider_call_id = f"mock-{request.call_id}"
        self._record("place_call", to=request.to_number, mode=request.mode)
        if self._simulate:
            # Answered is posted only after ringing was delivered, as a carrier reports in
            # order: two independent timers could race under load.
            answered: Then = (self._ms("answerDelayMs", 1500), "call.answered", {})
            if request.machine_detection != base.MachineDetection.OFF:
                answered[2]["then"] = self._verdict(request)
            ring = self._ms("ringDelayMs", 500)
            self._later(ring, request.webhook_url, provider_call_id, "call.ringing", then=answered)
        return base.PlaceCallResult(provider_call_id=provider_call_id)

    def _verdict(self, request: base.PlaceCall) -> Then:
        """The simulated answering-machine verdict, posted after the answer: a number ending
        in 99 reaches a machine, in 98 a fax, any other a person (docs/carriers.md,
        "Answering-machine detection"). Like Twilio's DetectMessageEnd, a machine is
        reported at the end of its greeting when a message is to be left."""
        delay = self._ms("machineDetectionDelayMs", MACHINE_DETECTION_DELAY_MS)
        verdict = _MOCK_VERDICTS.get(request.to_number[-2:], base.AnsweredBy.HUMAN)
        leave = request.machine_detection == base.MachineDetection.LEAVE_MESSAGE
        fields = {
            "answeredBy": verdict.value,
            "greetingEnded": leave and verdict == base.AnsweredBy.MACHINE,
            "machineDetectionMs": delay,
        }
        return (delay, base.EventType.MACHINE_DETECTION.value, fields)

    def hang_up(self, target: base.CallTarget) -> None:
        self._record("hang_up", provider_call_id=target.provider_call_id)
        if self._simulate:
            # A real carrier reports the end afterwards; it must change nothing.
            self._later(
                200, target.webhook_url, target.provider_call_id, "call.ended", reason="completed"
            )

    def play_text(self, target: base.CallTarget, text: str, *, listen_after: bool) -> None:
        self._record("play_text", text=text, listen_after=listen_after)
        if self._simulate:
            self._cancel_idle(target.provider_call_id)
            if target.utterance_id:
                self._later(
                    SPOKEN_DELAY_MS,
                    target.webhook_url,
                    target.provider_call_id,
                    "call.spoken",
                    utteranceId=target.utterance_id,
                )
        if listen_after:
            self.start_listening(target)

    def start_listening(self, target: base.CallTarget) -> None:
        self._record("start_listening", turn_token=target.turn_token)
        if self._simulate:
            self._cancel_idle(target.provider_call_id)
            self._schedule_reply(target)

    def send_dtmf(self, target: base.CallTarget, digits: str) -> None:
        self._record("send_dtmf", digits=digits)

    def transfer(self, target: base.CallTarget, transfer: base.Transfer) -> None:
        self._record(
            "transfer",
            to=transfer.to_number,
            message=transfer.message,
            caller_id=transfer.caller_id,
            streaming=transfer.streaming,
        )
        if self._simulate:
            # The caller now talks to the new party: no more scripted replies to us, and
            # like a real carrier our leg's end is reported later, changing nothing.
            self._cancel_idle(target.provider_call_id)
            self._later(
                TRANSFERRED_TALK_MS,
                target.webhook_url,
                target.provider_call_id,
                "call.ended",
                reason="completed",
            )

    def answer_call(self, target: base.CallTarget) -> None:
        # Recorded so tests can see an answer owed by command (the outbox) go out once.
        self._record("answer_call", provider_call_id=target.provider_call_id)
        if self._simulate:
            # As Telnyx confirms its answer command: the call is answered once the carrier
            # says so, and the greeting follows that event.
            self._later(
                ANSWER_DELAY_MS, target.webhook_url, target.provider_call_id, "call.answered"
            )

    def get_call_status(self, provider_call_id: str) -> base.CallStatus:
        if any(hint in provider_call_id for hint in _TERMINAL_HINTS):
            return base.CallStatus(status="completed", is_terminal=True, end_reason="completed")
        return base.CallStatus(status="in-progress", is_terminal=False)

    # -- webhooks -----------------------------------------------------------------------
    def verify_webhook(self, request: base.WebhookRequest) -> base.VerifyResult:
        # No signature exists for mock; a stable key still lets replays be recognised.
        digest = hashlib.sha256(request.body).hexdigest()
        return base.VerifyResult(ok=True, request_key=f"mock:req:{digest}")

    def parse_events(self, request: base.WebhookRequest) -> list[base.NormalizedEvent]:
        try:
            data = json.loads(request.body or b"null")
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise WebhookInvalid("Invalid JSON body") from exc
        if not isinstance(data, dict):
            raise WebhookInvalid("Body must be a JSON object with `event` or `events`")
        items = data.get("events") if "events" in data else [data.get("event")]
        if not isinstance(items, list):
            raise WebhookInvalid("`events` must be a list")
        return [_parse_item(item) for item in items]

    def render_reply(self, request: base.WebhookRequest, context: base.ReplyContext) -> base.Reply:
        body = {"ok": True, "replay": context.replay, "callId": context.call_id}
        if context.rejected:
            body["rejected"] = True
        return base.Reply(
            status=200, body=json.dumps(body).encode(), content_type="application/json"
        )

    def close(self) -> None:
        with self._lock:
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()

    # -- simulation ---------------------------------------------------------------------
    def _schedule_reply(self, target: base.CallTarget) -> None:
        replies = list(self._settings.get("callerReplies") or [])
        with self._lock:
            index = self._replies_sent.get(target.provider_call_id, 0)
            self._replies_sent[target.provider_call_id] = index + 1
        if not replies:
            return
        delay = self._ms("replyDelayMs", 1200)
        text = replies[min(index, len(replies) - 1)]
        self._later(
            delay,
            target.webhook_url,
            target.provider_call_id,
            "call.speech",
            transcript=text,
            isFinal=True,
            turnToken=target.turn_token,
        )
        hang_after = int(self._settings.get("callerHangupAfterReplies") or 0)
        if hang_after and index + 1 >= hang_after:
            self._later(
                delay + 1500,
                target.webhook_url,
                target.provider_call_id,
                "call.ended",
                reason="hangup-user",
            )
            return
        idle = self._ms("callerIdleHangupMs", 10000)
        if idle:
            # Like a person: nobody speaks to them again after their answer, they hang up.
            timer = self._later(
                delay + idle,
                target.webhook_url,
                target.provider_call_id,
                "call.ended",
                reason="hangup-user",
            )
            with self._lock:
                self._idle[target.provider_call_id] = timer

    def _later(
        self,
        delay_ms: int,
        url: str,
        provider_call_id: str,
        type_: str,
        then: Then | None = None,
        **fields: Any,
    ) -> threading.Timer:
        """Post `type_` after `delay_ms`; then, once delivered, `then` = (delay, type,
        fields), whose fields may hold a `then` of their own."""
        event = {
            "type": type_,
            "callId": provider_call_id,
            "providerCallId": provider_call_id,
            "id": str(uuid.uuid4()),
            **{k: v for k, v in fields.items() if v is not None},
        }

        def deliver() -> None:
            self._post(url, event)
            if then is not None:
                self._later(then[0], url, provider_call_id, then[1], **then[2])

        timer = threading.Timer(delay_ms / 1000, deliver)
        timer.daemon = True
        with self._lock:
            self._timers.add(timer)
        timer.start()
        return timer

    def _cancel_idle(self, provider_call_id: str) -> None:
        with self._lock:
            timer = self._idle.pop(provider_call_id, None)
        if timer is not None:
            timer.cancel()

    def _post(self, url: str, event: dict[str, Any]) -> None:
        """Deliver one simulated report; a 429 or 5xx is tried again, a little later.

        Every simulated report comes from 127.0.0.1, so a busy local service refuses some
        with its per-peer in-flight limit (8, `calls/web/gate.py`). Dropped, a `call.spoken`
        left its words in flight and a `speak` with `wait` waiting for the full two minutes.
        """
        delay = RETRY_FIRST_DELAY_S
        for attempt in range(1, DELIVERY_ATTEMPTS + 1):
            try:
                response = httpx.post(url, json={"event": event}, timeout=10)
            except httpx.HTTPError as exc:  # the simulated carrier just logs, like a real one
                logger.warning("mock carrier could not deliver %s: %s", event["type"], exc)
                return
            status = response.status_code
            if status < 300:
                return
            if (status != 429 and status < 500) or attempt == DELIVERY_ATTEMPTS:
                logger.warning(
                    "mock carrier gave up on %s after %d attempt(s): %d %s",
                    event["type"],
                    attempt,
                    status,
                    response.text[:200],
                )
                return
            time.sleep(delay * (1 + random.random() / 2))
            delay = min(delay * 2, RETRY_MAX_DELAY_S)

    def _ms(self, key: str, default: int) -> int:
        return int(self._settings.get(key, default))

    def _record(self, op: str, **fields: Any) -> None:
        self.sent.append((op, fields))


def _parse_item(item: Any) -> base.NormalizedEvent:
    if not isinstance(item, dict):
        raise WebhookInvalid("Each event must be a JSON object")
    type_ = _EVENT_TYPES.get(str(item.get("type")))
    if type_ is None:
        raise WebhookInvalid(f"Unknown event type: {item.get('type')!r}")
    call_id = item.get("callId")
    if not isinstance(call_id, str) or not call_id:
        raise WebhookInvalid("Each event needs a callId")
    direction = item.get("direction")
    _check_types(item)
    # Explicit falsy values are kept, as in the plugin; absent ones take the defaults.
    return base.NormalizedEvent(
        type=type_,
        id=str(item.get("id") or uuid.uuid4()),
        call_id=call_id,
        # Addressed by our callId (a UUID) the event names no carrier id of its own.
        provider_call_id=item.get("providerCallId") or (None if _is_uuid(call_id) else call_id),
        timestamp=_timestamp(item.get("timestamp")),
        # An event is identified by dedupeKey || id (docs/plugin-behaviour.md,
        # "Normalized events").
        dedupe_key=item.get("dedupeKey") or item.get("id"),
        turn_token=item.get("turnToken"),
        direction=direction if direction in ("inbound", "outbound") else None,
        from_number=item.get("from"),
        to_number=item.get("to"),
        transcript=str(item.get("transcript", "")),
        is_final=bool(item.get("isFinal", True)),
        confidence=item.get("confidence"),
        text=str(item.get("text", "")),
        digits=str(item.get("digits", "")),
        reason=str(item.get("reason", "completed")),
        error=str(item.get("error", "unknown error")),
        retryable=bool(item.get("retryable", False)),
        utterance_id=item.get("utteranceId"),
        interrupted=bool(item.get("interrupted", False)),
        answered_by=item.get("answeredBy"),
        greeting_ended=bool(item.get("greetingEnded", False)),
        detection_ms=item.get("machineDetectionMs"),
    )


# Fields that must be strings when present: they become ids, keys and numbers, and a JSON
# true or 42 there would fail deep in the services instead of here (400).
_STRING_FIELDS = (
    "id",
    "providerCallId",
    "dedupeKey",
    "turnToken",
    "utteranceId",
    "from",
    "to",
    "answeredBy",
)


def _check_types(item: dict[str, Any]) -> None:
    for name in _STRING_FIELDS:
        value = item.get(name)
        if value is not None and not isinstance(value, str):
            raise WebhookInvalid(f"{name} must be a string")
    confidence = item.get("confidence")
    if confidence is not None and json_finite_number(confidence) is None:
        raise WebhookInvalid("confidence must be a finite number")
    answered_by = item.get("answeredBy")
    if item.get("type") == base.EventType.MACHINE_DETECTION and answered_by not in set(
        base.AnsweredBy
    ):
        raise WebhookInvalid("answeredBy must be human, machine, fax or unknown")
    waited = item.get("machineDetectionMs")
    if waited is not None and (type(waited) is not int or not 0 <= waited < 2**31):
        raise WebhookInvalid("machineDetectionMs must be a non-negative integer")


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _timestamp(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value / 1000, tz=UTC)
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError) as exc:
        raise WebhookInvalid(f"Invalid timestamp: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

"""The Twilio carrier: Programmable Voice REST 2010-04-01, TwiML replies, signed webhooks."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from twilio.twiml.voice_response import VoiceResponse

from providers import base
from providers.common import call_webhook_url, preferred_voice, required_block_values, with_query
from providers.errors import ProviderError
from providers.http import CarrierHttp
from providers.twilio import signature, twiml, webhooks
from providers.twilio.client import TwilioApiError, TwilioRest, config_value
from providers.twilio.media import TwilioMediaCodec
from providers.webhook_security import signature_check, webhook_url_check

logger = logging.getLogger(__name__)

STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]
# Error 21220 "Invalid call state for this operation": a live-TwiML update raced the call
# into (or out of) progress — typically right after answer. Twilio accepts it moments later.
CALL_STATE_RACE = "21220"
RACE_RETRY_DELAYS = (0.25, 0.75)
MISSING_WEBHOOK = "Missing webhook URL for this call (provider state not initialized)"
_LIVE_STATUSES = frozenset({"queued", "initiated", "ringing", "in-progress"})


class TwilioProvider(base.TelephonyProvider):
    name = "twilio"
    supports_preconnect_dtmf = True
    rejects_in_reply = True
    call_waiting = True
    dtmf_replaces_stream = True
    # A <Redirect> after each <Say> reports the words said; new TwiML replaces the old.
    speech_done_signal = True
    # Async AMD always posts AnsweredBy (`unknown` at MachineDetectionTimeout); with
    # DetectMessageEnd a machine's verdict comes at the end of its greeting.
    machine_verdict_always = True
    machine_greeting_end = True
    signature_headers = (("x-twilio-signature",),)

    def __init__(
        self,
        *,
        settings: Mapping[str, Any],
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = dict(settings)
        credentials = required_block_values(
            settings, "twilio", ("accountSid", "authToken"), carrier="Twilio"
        )
        self._http = CarrierHttp(http)
        self._sleep = sleep
        self._rest = TwilioRest(
            account_sid=credentials["accountSid"],
            auth_token=credentials["authToken"],
            http=self._http.client,
            region=config_value(settings, "region") or None,
            api_base_url=config_value(settings, "apiBaseUrl") or None,
        )

    # -- call control -----------------------------------------------------------------------
    def place_call(self, request: base.PlaceCall) -> base.PlaceCallResult:
        fields: dict[str, Any] = {
            "to": request.to_number,
            "from_": request.from_number,
            "status_callback": with_query(request.webhook_url, type="status"),
            "status_callback_method": "POST",
            "status_callback_event": list(STATUS_EVENTS),
            "timeout": request.ring_timeout_s,
        }
        fields.update(webhooks.machine_detection_fields(request))
        inline = self._dial_twiml(request)
        if inline is not None:
            fields["twiml"] = inline
        else:
            fields.update(url=request.webhook_url, method="POST")
        sid, status = self._rest.create_call(**fields)
        delivered = inline is not None and request.mode == "notify"
        return base.PlaceCallResult(
            provider_call_id=sid,
            status="queued" if status == "queued" else "initiated",
            message_delivered=delivered,
        )

    def _dial_twiml(self, request: base.PlaceCall) -> str | None:
        """Inline TwiML for notify (message + hang-up) and pre-connect DTMF; else None (Url)."""
        if request.mode == "notify" and request.message:
            spoken = None
            if request.message_utterance_id:
                spoken = webhooks.spoken_action(
                    request.webhook_url,
                    call_id=None,  # the call's webhook URL carries it
                    utterance_id=request.message_utterance_id,
                    listen=False,
                    turn_token=None,
                )
            document = twiml.notify(
                request.message,
                voice=self._voice(request.voice),
                language=request.language,
                spoken_url=spoken,
            )
        elif request.dtmf_sequence:
            document = twiml.play_digits(request.dtmf_sequence, redirect_url=request.webhook_url)
        else:
            return None
        text = twiml.render(document, declaration=False)
        if len(text) > twiml.MAX_INLINE_TWIML:
            if request.dtmf_sequence and request.mode != "notify":
                raise ProviderError("Pre-connect DTMF TwiML exceeds Twilio's 4000-character limit")
            # Too long to travel inline: the message is spoken on answer instead.
            return None
        return text

    def hang_up(self, target: base.CallTarget) -> None:
        try:
            self._rest.update_call(target.provider_call_id, status="completed")
        except TwilioApiError as exc:
            if not exc.call_gone:  # 20404: the call is already gone, which is what we wanted
                raise

    def play_text(self, target: base.CallTarget, text: str, *, listen_after: bool) -> None:
        language = _language(target)
        if target.utterance_id:
            # <Say> then <Redirect>: Twilio fetches it once the words were said, and our
            # reply to that fetch listens, listen_after or not, as the <Gather> below does
            # (docs/carriers.md, "What each carrier tells us about speech").
            url = webhooks.spoken_action(
                self._webhook(target),
                call_id=None,  # the call's webhook URL carries it
                utterance_id=target.utterance_id,
                listen=True,
                turn_token=target.turn_token,
                language=language,
            )
            document = twiml.say_then_report(
                text, voice=self._voice(_voice(target)), language=language, spoken_url=url
            )
        else:
            # Always end with a Gather, listening or not: after a lone <Say> the document
            # runs out and Twilio hangs up the call. The Gather keeps it open and brings
            # whatever the caller says next to us (the plugin uses
            # <Gather><Say>.</Say></Gather>; docs/carriers.md, "Twilio: TwiML replies").
            document = twiml.say_then_listen(
                text,
                voice=self._voice(_voice(target)),
                language=language,
                action=self._action(target, language),
            )
        self._update_twiml(target, document)

    def start_listening(self, target: base.CallTarget) -> None:
        language = _language(target)
        self._update_twiml(
            target, twiml.listen(action=self._action(target, language), language=language)
        )

    def send_dtmf(self, target: base.CallTarget, digits: str) -> None:
        # New TwiML ends the <Connect><Stream> running now (plugin issue #139066), so a
        # streaming call goes straight back to a new stream with its own token after the
        # digits (docs/plugin-behaviour.md, "DTMF on a stream"); otherwise our webhook
        # decides what comes next.
        if target.stream is not None:
            document = twiml.connect_stream(
                target.stream.url, token=target.stream.token, digits=digits
            )
        else:
            document = twiml.play_digits(digits, redirect_url=self._webhook(target))
        self._update_twiml(target, document)

    def transfer(self, target: base.CallTarget, transfer: base.Transfer) -> None:
        # New TwiML replaces the running document at once; a <Connect><Stream> ends with it
        # (the stream closes by itself: docs/carriers.md, "Cold transfer").
        document = twiml.transfer(
            transfer.to_number,
            message=transfer.message,
            voice=self._voice(None),
            language=transfer.language,
            caller_id=transfer.caller_id,
        )
        self._update_twiml(target, document)

    def get_call_status(self, provider_call_id: str) -> base.CallStatus:
        try:
            status = self._rest.fetch_status(provider_call_id)
        except TwilioApiError as exc:
            if exc.call_gone:
                return base.CallStatus("not-found", is_terminal=True, end_reason="completed")
            return base.CallStatus.unknown(exc)
        except ProviderError as exc:
            return base.CallStatus.unknown(exc)
        if status in webhooks.END_REASONS:
            return base.CallStatus(
                status, is_terminal=True, end_reason=webhooks.END_REASONS[status]
            )
        return base.CallStatus(
            status or "unknown", is_terminal=False, is_unknown=status not in _LIVE_STATUSES
        )

    def can_speak_in_reply(self, request: base.WebhookRequest) -> bool:
        return webhooks.is_twiml_fetch(request)

    # -- webhooks ---------------------------------------------------------------------------
    def verify_webhook(self, request: base.WebhookRequest) -> base.VerifyResult:
        return signature.verify(request, self._settings)

    def parse_events(self, request: base.WebhookRequest) -> list[base.NormalizedEvent]:
        return webhooks.parse_events(request)

    def render_reply(self, request: base.WebhookRequest, context: base.ReplyContext) -> base.Reply:
        return webhooks.render(request, context, self._settings)

    def resume(self, target: base.CallTarget) -> None:
        # Changing a queued call's Url takes it out of the <Enqueue> queue and fetches it.
        self._rest.update_call(target.provider_call_id, url=self._webhook(target), method="POST")

    def media_codec(self) -> TwilioMediaCodec:
        return TwilioMediaCodec()

    def hold_music(self) -> base.Reply:
        return base.Reply(body=twiml.hold_music().encode(), content_type="text/xml")

    def explain_webhook(self, request: base.WebhookRequest) -> dict[str, Any]:
        return signature.explain(request, self._settings)

    def readiness(self) -> list[tuple[str, bool, str]]:
        sid = str(config_value(self._settings, "accountSid"))
        public = str(self._settings.get("publicUrl") or "")
        skip = bool(self._settings.get("skipSignatureVerification"))
        return [
            (
                "twilio-account",
                sid.startswith("AC") and len(sid) == 34,
                f"accountSid {sid[:6]}… "
                + (
                    "looks right"
                    if sid.startswith("AC") and len(sid) == 34
                    else "should be AC followed by 32 hex digits"
                ),
            ),
            signature_check("twilio", skip=skip, verified="webhook signatures are verified"),
            webhook_url_check(
                "twilio",
                public,
                ok=f"Twilio will call {public}",
                fix="set publicUrl to the https:// URL Twilio should call (it is signed as given)",
            ),
            ("twilio-api", True, f"REST API origin {self._rest.origin}"),
        ]

    def close(self) -> None:
        self._http.close()

    # -- helpers ----------------------------------------------------------------------------
    def _update_twiml(self, target: base.CallTarget, document: VoiceResponse) -> None:
        """Replace the live call's TwiML, retrying the 21220 answer race twice."""
        text = twiml.render(document, declaration=False)
        for delay in (*RACE_RETRY_DELAYS, None):
            try:
                self._rest.update_call(target.provider_call_id, twiml=text)
                return
            except TwilioApiError as exc:
                if exc.provider_code != CALL_STATE_RACE or delay is None:
                    raise
                logger.info("twilio 21220 on call update; retrying in %.2fs", delay)
                self._sleep(delay)

    def _webhook(self, target: base.CallTarget) -> str:
        return call_webhook_url(target, self._settings, missing=MISSING_WEBHOOK)

    def _action(self, target: base.CallTarget, language: str | None) -> str:
        return webhooks.gather_action(
            self._webhook(target), call_id=None, turn_token=target.turn_token, language=language
        )

    def _voice(self, requested: str | None) -> str:
        return twiml.say_voice(requested or preferred_voice(self._settings.get("tts")))


def _voice(target: base.CallTarget) -> str | None:
    """The call's own voice (a per-number route), when the services chose one."""
    value = target.extra.get("voice") if target.extra else None
    return str(value) if value else None


def _language(target: base.CallTarget) -> str | None:
    value = target.extra.get("language") if target.extra else None
    return str(value) if value else None

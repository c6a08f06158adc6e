"""The Telnyx carrier: Call Control v2 REST commands and Ed25519-signed JSON webhooks.

Telnyx ignores webhook response bodies: everything, including answering an inbound call,
is a REST command (docs/carriers.md, "Telnyx: commands"). Webhooks name our call through
`client_state`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from providers import base
from providers.common import required_block_values
from providers.errors import ProviderError, ProviderNotConfigured
from providers.http import CarrierHttp
from providers.telnyx import clientstate, commands, signature, webhooks
from providers.telnyx.client import TelnyxApiError, TelnyxRest, config_value
from providers.telnyx.media import TelnyxMediaCodec
from providers.webhook_security import SKIPPED_SIGNATURES, skip_key, webhook_url_check

logger = logging.getLogger(__name__)


class TelnyxProvider(base.TelephonyProvider):
    name = "telnyx"
    # Telnyx can't take digits with the dial; the services send them with send_dtmf on answer.
    supports_preconnect_dtmf = True
    rejects_in_reply = False
    speech_by_fetch = False
    # call.speak.ended reports each speak; speak commands queue and play in order.
    speech_done_signal = True
    speech_in_order = True
    # call.machine.detection.ended comes for people too; `greeting_end` adds
    # call.machine.greeting.ended at a machine's beep.
    machine_verdict_always = True
    machine_greeting_end = True
    signature_headers = ((signature.SIGNATURE_HEADER, signature.TIMESTAMP_HEADER),)

    def __init__(
        self,
        *,
        settings: Mapping[str, Any],
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = dict(settings)
        credentials = required_block_values(
            settings, "telnyx", ("apiKey", "connectionId"), carrier="Telnyx"
        )
        self._connection_id = credentials["connectionId"]
        self._skip_verification = bool(settings.get("skipSignatureVerification"))
        self._public_key = self._load_public_key()
        self._clock = clock
        self._http = CarrierHttp(http)
        self._rest = TelnyxRest(
            api_key=credentials["apiKey"],
            http=self._http.client,
            api_base_url=config_value(settings, "apiBaseUrl") or None,
        )

    def _load_public_key(self) -> Ed25519PublicKey | None:
        """Bad configuration fails at startup; a missing key fails each webhook closed."""
        text = config_value(self._settings, "publicKey")
        if not text or self._skip_verification:
            return None
        try:
            return signature.load_public_key(text)
        except ValueError as exc:
            raise ProviderNotConfigured(f"telnyx.publicKey is invalid: {exc}") from exc

    # -- call control -----------------------------------------------------------------------
    def place_call(self, request: base.PlaceCall) -> base.PlaceCallResult:
        data = self._rest.dial(commands.dial(request, connection_id=self._connection_id))
        call_control_id = data.get("call_control_id")
        if not isinstance(call_control_id, str) or not call_control_id:
            raise ProviderError("Telnyx API error: dial response has no call_control_id")
        return base.PlaceCallResult(provider_call_id=call_control_id)

    def hang_up(self, target: base.CallTarget) -> None:
        self._command_unless_gone(target, "hangup", {})

    def answer_call(self, target: base.CallTarget) -> None:
        # An inbound leg stays parked until answered (plugin issue #58231). No webhook_url
        # override: the app-level URL reached us already, and the local fallback URL would
        # not.
        self._rest.command(
            target.provider_call_id,
            "answer",
            {"client_state": clientstate.encode(target.call_id)},
            command_id=target.command_key,
        )

    def start_stream(self, target: base.CallTarget) -> None:
        # The answer command has no stream token field (ActionAnswerParams: stream_url and
        # codecs only), so an inbound call's stream starts on call.answered with
        # streaming_start, which takes stream_auth_token and custom_parameters.
        self._rest.command(
            target.provider_call_id,
            "streaming_start",
            commands.streaming_start(target),
            command_id=target.command_key,
        )

    def play_text(self, target: base.CallTarget, text: str, *, listen_after: bool) -> None:
        # speak + transcription_start rather than gather_using_speak: gather collects DTMF
        # only (`call.gather.ended.digits`); speech needs transcription
        # (docs/carriers.md, "Telnyx: commands").
        chosen = target.extra.get("voice") if target.extra else None
        voice = commands.preferred_voice(self._settings.get("tts"), chosen=chosen)
        body = commands.speak(target, text, voice=voice, language=commands.language(target))
        self._rest.command(target.provider_call_id, "speak", body, command_id=target.command_key)
        if listen_after:
            self._start_transcription(target, tolerate_running=True)

    def start_listening(self, target: base.CallTarget) -> None:
        self._start_transcription(target, tolerate_running=False)

    def _start_transcription(self, target: base.CallTarget, *, tolerate_running: bool) -> None:
        # Turn tokens ride in client_state (the plugin has none for Telnyx): the
        # `call.transcription` webhooks then name the turn they answer, so a late result
        # of an earlier turn can't complete the current one (docs/plugin-behaviour.md,
        # "Normalized events").
        body = commands.transcription_start(target, language=commands.language(target))
        try:
            self._rest.command(target.provider_call_id, "transcription_start", body)
        except TelnyxApiError as exc:
            # After a greeting that listens, transcription is still running when the next
            # turn speaks. The speak above already moved client_state to the new turn, so
            # the running transcription reports for it; the refusal is harmless.
            if not tolerate_running or exc.status != 422 or exc.call_gone:
                raise
            logger.info("telnyx transcription_start refused (already transcribing?): %s", exc)

    def stop_listening(self, target: base.CallTarget) -> None:
        # The turn's transcript is already in hand when the services stop listening; a
        # failure here must not turn that success into an error, so it is only logged.
        body = {"client_state": clientstate.encode(target.call_id)}
        try:
            self._command_unless_gone(target, "transcription_stop", body)
        except ProviderError as exc:
            logger.warning("telnyx transcription_stop failed: %s", exc)

    def send_dtmf(self, target: base.CallTarget, digits: str) -> None:
        self._rest.command(
            target.provider_call_id,
            "send_dtmf",
            {"digits": commands.dtmf_digits(digits)},
            command_id=target.command_key,
        )

    def transfer(self, target: base.CallTarget, transfer: base.Transfer) -> None:
        # `transfer` has no words of its own (its audio_url plays to the new party), so the
        # message is a `speak` first: commands run in order, and the caller hears it while
        # the new party rings (docs/carriers.md, "Cold transfer").
        if transfer.message:
            voice = commands.preferred_voice(self._settings.get("tts"))
            language = transfer.language or commands.DEFAULT_LANGUAGE
            body = commands.speak(target, transfer.message, voice=voice, language=language)
            self._rest.command(target.provider_call_id, "speak", body)
        body = commands.transfer(target, transfer)
        self._rest.command(target.provider_call_id, "transfer", body)
        if transfer.streaming:
            self._stop_streaming(target)

    def _stop_streaming(self, target: base.CallTarget) -> None:
        """A stream forks our leg's audio for as long as the leg lives, and the leg lives on
        bridged to the new party: stop it, or their conversation would reach us. The transfer
        already happened, so a failure here is logged, not raised."""
        body = {"client_state": clientstate.encode(target.call_id)}
        try:
            self._command_unless_gone(target, "streaming_stop", body)
        except ProviderError as exc:
            logger.warning("telnyx streaming_stop after a transfer failed: %s", exc)

    def _command_unless_gone(
        self, target: base.CallTarget, action: str, body: Mapping[str, Any]
    ) -> None:
        try:
            self._rest.command(target.provider_call_id, action, body, command_id=target.command_key)
        except TelnyxApiError as exc:
            if not exc.call_gone:  # 404 / 90018 "call has already ended": nothing to stop
                raise

    def get_call_status(self, provider_call_id: str) -> base.CallStatus:
        try:
            data = self._rest.get_call(provider_call_id)
        except TelnyxApiError as exc:
            if exc.status == 404:
                return base.CallStatus("not-found", is_terminal=True, end_reason="completed")
            return base.CallStatus.unknown(exc)
        except ProviderError as exc:
            return base.CallStatus.unknown(exc)
        alive = data.get("is_alive")
        if alive is True:
            return base.CallStatus("in-progress", is_terminal=False)
        if alive is False:
            return base.CallStatus("completed", is_terminal=True, end_reason="completed")
        return base.CallStatus("unknown", is_terminal=False, is_unknown=True)

    # -- webhooks ---------------------------------------------------------------------------
    def verify_webhook(self, request: base.WebhookRequest) -> base.VerifyResult:
        if self._skip_verification:
            return base.VerifyResult(True, request_key=skip_key(self.name, request))
        return signature.verify(request, self._public_key, now=self._clock())

    def parse_events(self, request: base.WebhookRequest) -> list[base.NormalizedEvent]:
        return webhooks.parse_events(request.body)

    def can_speak_in_reply(self, request: base.WebhookRequest) -> bool:
        return False  # Telnyx ignores response bodies; speech is always a command

    def render_reply(self, request: base.WebhookRequest, context: base.ReplyContext) -> base.Reply:
        return base.Reply(status=200, body=b"OK", content_type="text/plain")

    def media_codec(self) -> TelnyxMediaCodec:
        return TelnyxMediaCodec()

    def readiness(self) -> list[tuple[str, bool, str]]:
        skip = self._skip_verification
        public = str(self._settings.get("publicUrl") or "")
        return [
            ("telnyx-connection", True, f"connection {self._connection_id}"),
            (
                "telnyx-signatures",
                self._public_key is not None and not skip,
                "webhooks verified with the configured Ed25519 public key"
                if not skip and self._public_key is not None
                else SKIPPED_SIGNATURES
                if skip
                else "telnyx.publicKey is missing: every webhook will be refused",
            ),
            webhook_url_check(
                "telnyx",
                public,
                ok=f"calls are placed with webhook_url {public}",
                fix="set publicUrl to the https:// URL Telnyx should call",
            ),
        ]

    def close(self) -> None:
        self._http.close()

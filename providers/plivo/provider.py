"""The Plivo carrier: Voice API v1 REST, Plivo XML replies, V3/V2-signed webhooks.

docs/carriers.md, "Plivo: REST calls", "Plivo: XML" and "Plivo: webhooks".

Speech works by document fetch (`speech_by_fetch`): the services keep the words on the call
row and `play_text` only transfers the A leg to our `flow=xml-speak` URL; when Plivo fetches
it, the words come back to `render_reply` as `context.speech`, and the document reports them
said with a `<Redirect>` to `flow=spoken` after the `<Speak>` (`speech_done_signal`). With
streaming on, a fetch for a live call with nothing to say gets `<Stream>` instead
(`context.stream`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx

from providers import base
from providers.common import call_webhook_url, required_block_values, with_query
from providers.errors import ProviderError
from providers.http import CarrierHttp
from providers.plivo import signature, webhooks
from providers.plivo.client import PlivoApiError, PlivoRest, config_value
from providers.plivo.media import PlivoMediaCodec
from providers.webhook_security import signature_check, webhook_url_check

logger = logging.getLogger(__name__)

MISSING_WEBHOOK = "Missing webhook URL for this call (provider state missing)"
MISSING_CALL_UUID = "Missing Plivo CallUUID for {op}"
NOT_LIVE = (
    "Plivo has no live call {id} for {op}: not answered yet (still its request UUID) "
    "or already over"
)
DEFAULT_RING_TIMEOUT_S = 30
_LIVE_STATUSES = frozenset({"queued", "ringing", "in-progress", "early-media"})
# Our DTMF alphabet (digits * # , w p) -> Plivo's: `w` waits 0.5 s and `W` 1 s (Make a call,
# `send_digits`: plivo.com/docs/voice/api/call/make-a-call). A comma is the usual half-second
# pause; `p` a longer one.
_DTMF_PAUSES = str.maketrans({",": "w", "p": "W", "P": "W"})


class PlivoProvider(base.TelephonyProvider):
    name = "plivo"
    supports_preconnect_dtmf = True
    rejects_in_reply = True
    speech_by_fetch = True
    # A <Redirect> after each <Speak> reports the words said; a transfer replaces the old.
    speech_done_signal = True
    # Its machine-detection callback is documented for machines only: a greeting waits for
    # it no longer than the detection time (machine_detection_time) and a second more.
    machine_verdict_deadline_s = (webhooks.MACHINE_DETECTION_MS + 1000) / 1000
    signature_headers = (
        ("x-plivo-signature-v3", "x-plivo-signature-v3-nonce"),
        ("x-plivo-signature-v2", "x-plivo-signature-v2-nonce"),
    )

    def __init__(self, *, settings: Mapping[str, Any], http: httpx.Client | None = None) -> None:
        self._settings = dict(settings)
        credentials = required_block_values(
            settings, "plivo", ("authId", "authToken"), carrier="Plivo"
        )
        self._auth_token = credentials["authToken"]
        self._http = CarrierHttp(http)
        self._rest = PlivoRest(
            auth_id=credentials["authId"],
            auth_token=self._auth_token,
            http=self._http.client,
            api_base_url=config_value(settings, "apiBaseUrl") or None,
        )

    # -- call control -----------------------------------------------------------------------
    def place_call(self, request: base.PlaceCall) -> base.PlaceCallResult:
        ring_s = self._ring_timeout_s(request)
        fields: dict[str, Any] = {
            "from": dial_number(request.from_number),
            "to": dial_number(request.to_number),
            "answer_url": with_query(request.webhook_url, flow=webhooks.ANSWER),
            "answer_method": "POST",
            "hangup_url": with_query(request.webhook_url, flow=webhooks.HANGUP),
            "hangup_method": "POST",
            "hangup_on_ring": ring_s,
            "ring_timeout": ring_s,
        }
        fields.update(webhooks.machine_detection_fields(request))
        if request.dtmf_sequence:
            # Plivo plays `send_digits` itself once the call connects: the pre-connect
            # digits travel with the dial request and cannot be lost on the way.
            fields["send_digits"] = plivo_digits(request.dtmf_sequence)
        body = self._rest.create_call(fields)
        return base.PlaceCallResult(
            provider_call_id=_request_uuid(body), dtmf_delivered=bool(request.dtmf_sequence)
        )

    def hang_up(self, target: base.CallTarget) -> None:
        call_id = target.provider_call_id
        if not call_id:
            return
        try:
            self._rest.hang_up_call(call_id)
            return
        except PlivoApiError as exc:
            if not exc.call_gone:
                raise
        # No such call: the id may still be the request UUID of a call not answered yet.
        try:
            self._rest.cancel_request(call_id)
        except PlivoApiError as exc:
            if not exc.call_gone:  # neither exists any more: the call is already gone
                raise

    def play_text(self, target: base.CallTarget, text: str, *, listen_after: bool) -> None:
        # The words (and whether to listen after them) wait on the call row; the services
        # hand them to render_reply when Plivo fetches this URL.
        self._transfer(target, "speak", with_query(self._webhook(target), flow=webhooks.XML_SPEAK))

    def start_listening(self, target: base.CallTarget) -> None:
        url = with_query(
            self._webhook(target), flow=webhooks.XML_LISTEN, turnToken=target.turn_token
        )
        self._transfer(target, "listen", url)

    def send_dtmf(self, target: base.CallTarget, digits: str) -> None:
        call_uuid = self._call_uuid(target, "send_dtmf")
        try:
            self._rest.send_digits(call_uuid, plivo_digits(digits))
        except PlivoApiError as exc:
            raise _not_live(exc, call_uuid, "send_dtmf") from exc

    def transfer(self, target: base.CallTarget, transfer: base.Transfer) -> None:
        # The document (message + <Dial>) is fetched from our webhook, signed like every
        # callback; what to dial waits on the call row, so any process can answer the fetch.
        url = with_query(self._webhook(target), flow=webhooks.XML_TRANSFER)
        self._transfer(target, "transfer", url)
        if transfer.streaming:
            self._stop_streams(target)

    def _stop_streams(self, target: base.CallTarget) -> None:
        """Whether a `<Stream keepCallAlive>` ends when a transfer replaces its document is
        unconfirmed: stop it, so the caller's talk with the new party never reaches us. The
        transfer already happened, so a failure is logged, not raised."""
        try:
            self._rest.stop_streams(target.provider_call_id)
        except ProviderError as exc:
            # 404: no stream left to stop (Plivo ended it with the old document).
            if not (isinstance(exc, PlivoApiError) and exc.call_gone):
                logger.warning("plivo stream stop after a transfer failed: %s", exc)

    def transfer_fetch_call_id(self, request: base.WebhookRequest) -> str | None:
        return webhooks.transfer_fetch_call_id(request)

    def get_call_status(self, provider_call_id: str) -> base.CallStatus:
        try:
            return self._status(provider_call_id)
        except ProviderError as exc:
            return base.CallStatus.unknown(exc)

    def can_speak_in_reply(self, request: base.WebhookRequest) -> bool:
        return webhooks.is_document_fetch(request)

    def fetch_call_id(self, request: base.WebhookRequest) -> str | None:
        return webhooks.fetch_call_id(request)

    # -- webhooks ---------------------------------------------------------------------------
    def verify_webhook(self, request: base.WebhookRequest) -> base.VerifyResult:
        return signature.verify(request, self._settings, self._auth_token)

    def parse_events(self, request: base.WebhookRequest) -> list[base.NormalizedEvent]:
        return webhooks.parse_events(request)

    def render_reply(self, request: base.WebhookRequest, context: base.ReplyContext) -> base.Reply:
        return webhooks.render(request, context, self._settings)

    def media_codec(self) -> PlivoMediaCodec:
        return PlivoMediaCodec()

    def readiness(self) -> list[tuple[str, bool, str]]:
        skip = bool(self._settings.get("skipSignatureVerification"))
        public = str(self._settings.get("publicUrl") or "")
        return [
            signature_check(
                "plivo", skip=skip, verified="webhooks verified (X-Plivo-Signature-V3, V2 fallback)"
            ),
            webhook_url_check(
                "plivo",
                public,
                ok=f"answer/hangup URLs and later fetches use {public}",
                fix="set publicUrl: Plivo's follow-up URLs must never come from a spoofable Host",
            ),
        ]

    def close(self) -> None:
        self._http.close()

    # -- helpers ----------------------------------------------------------------------------
    def _status(self, provider_call_id: str) -> base.CallStatus:
        try:
            body = self._rest.live_call(provider_call_id)
        except PlivoApiError as exc:
            if not exc.call_gone:
                raise
            return self._queued_or_gone(provider_call_id)
        return status_of(str(body.get("call_status") or ""))

    def _queued_or_gone(self, provider_call_id: str) -> base.CallStatus:
        try:
            self._rest.queued_call(provider_call_id)
        except PlivoApiError as exc:
            if not exc.call_gone:
                raise
            # Neither live nor queued: the call is over (404 is terminal, as in the plugin).
            return base.CallStatus("not-found", is_terminal=True, end_reason="completed")
        return base.CallStatus("queued", is_terminal=False)

    def _transfer(self, target: base.CallTarget, op: str, url: str) -> None:
        call_uuid = self._call_uuid(target, op)
        try:
            self._rest.transfer_aleg(call_uuid, url=url)
        except PlivoApiError as exc:
            raise _not_live(exc, call_uuid, op) from exc

    def _call_uuid(self, target: base.CallTarget, op: str) -> str:
        if not target.provider_call_id:
            raise ProviderError(MISSING_CALL_UUID.format(op=op))
        return target.provider_call_id

    def _webhook(self, target: base.CallTarget) -> str:
        return call_webhook_url(target, self._settings, missing=MISSING_WEBHOOK)

    def _ring_timeout_s(self, request: base.PlaceCall) -> int:
        ring_ms = self._settings.get("ringTimeoutMs")
        if isinstance(ring_ms, int | float) and ring_ms > 0:
            return max(1, int(ring_ms) // 1000)
        return max(1, request.ring_timeout_s or DEFAULT_RING_TIMEOUT_S)


def status_of(status: str) -> base.CallStatus:
    """A Plivo `call_status` as our CallStatus (docs/plugin-behaviour.md, "End reasons")."""
    status = status.strip().lower()
    if status in webhooks.END_REASONS:
        return base.CallStatus(status, is_terminal=True, end_reason=webhooks.END_REASONS[status])
    return base.CallStatus(
        status or "unknown", is_terminal=False, is_unknown=status not in _LIVE_STATUSES
    )


def dial_number(value: str) -> str:
    """SIP URIs as given; otherwise only digits and "+" (docs/carriers.md, "Plivo: REST calls")."""
    value = value.strip()
    if value.lower().startswith("sip:"):
        return value
    return "".join(ch for ch in value if ch in "0123456789+")


def plivo_digits(digits: str) -> str:
    return digits.translate(_DTMF_PAUSES)


def _request_uuid(body: Mapping[str, Any]) -> str:
    """`request_uuid` is a string, or a list when several numbers were dialled at once."""
    value = body.get("request_uuid")
    if isinstance(value, list):
        value = next((item for item in value if isinstance(item, str) and item), None)
    if not isinstance(value, str) or not value:
        raise ProviderError("Plivo call create returned no request_uuid")
    return value


def _not_live(exc: PlivoApiError, call_uuid: str, op: str) -> ProviderError:
    if exc.call_gone:
        return ProviderError(NOT_LIVE.format(id=call_uuid, op=op), provider_code="404")
    return exc
